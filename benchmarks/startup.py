"""Start-up latency of the command-line tools, with an empty and with a filled compilation cache.

    python benchmarks/startup.py                          # runs/default (trained if missing)
    python benchmarks/startup.py --workdir /tmp/runs/default --repeats 5
    python benchmarks/startup.py --repo /path/to/old/checkout --repo .   # two trees, interleaved

Cases, each a fresh process, timed from the outside (wall seconds and the child's CPU seconds):
  - ``predict``: ``python -m jaxconv.predict --workdir W one.png`` (a PNG of the run's image shape);
  - ``plots``: ``python -m jaxconv.plots --workdir W`` (the five figures);
  - ``import``: ``python -c "import jaxconv.layers"`` (no compilation: cold = warm);
  - ``train``: ``train.py`` on a fresh workdir, ``--config.num_train_steps`` steps (default 20), no
    plots, no bar; its ``metrics.json`` ``compile_seconds`` (the first step) is reported too.

Modes: ``cold`` runs with ``JAXCONV_COMPILATION_CACHE`` set to a new empty directory every time;
``warm`` with a directory one unmeasured run of the same case filled first (a rerun). A tree
without the compilation cache ignores the variable: there, cold and warm both compile.
Each repeat runs every case in both modes (and every ``--repo`` tree) in turn, interleaved, so
they see the same machine load; the table gives the median and the range over the repeats.
The header's load average says how busy the machine was; the CPU seconds move less with the
load than the wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
from PIL import Image

CASES = ("predict", "plots", "import", "train")
MODES = ("cold", "warm")
CACHE_ENV = "JAXCONV_COMPILATION_CACHE"  # jaxconv.runtime.compile_cache's variable.


def _run(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Runs `argv` to completion; returns (wall seconds, CPU seconds of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _train_argv(workdir: Path, steps: int | None) -> list[str]:
    argv = [sys.executable, "train.py", "--config", "configs/default.py", "--workdir",
            str(workdir), "--config.progress_bar=False"]
    if steps is not None:
        argv += [f"--config.num_train_steps={steps}", "--config.write_plots=False"]
    return argv


def _write_png(workdir: Path, path: Path) -> None:
    """A deterministic gradient image of the run's image shape (what the model takes)."""
    height, width, channels = json.loads((workdir / "run.json").read_text())["dataset"][
        "image_shape"]
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 255 // max(height + width - 2, 1)
    image = np.repeat(ramp[..., None], channels, axis=-1).astype(np.uint8)
    Image.fromarray(image[..., 0] if channels == 1 else image).save(path)


class Bench:
    """One case's command, run in the tree `repo` with a given compilation cache."""

    def __init__(self, repo: Path, workdir: Path, scratch: Path, train_steps: int):
        self.repo, self.workdir, self.scratch = repo, workdir, scratch
        self.train_steps = train_steps
        self.png = scratch / "one.png"
        self.compile_seconds: dict[str, list[float]] = {m: [] for m in MODES}
        self._count = 0

    def argv(self, case: str) -> list[str]:
        if case == "predict":
            return [sys.executable, "-m", "jaxconv.predict", "--workdir", str(self.workdir),
                    str(self.png)]
        if case == "plots":
            return [sys.executable, "-m", "jaxconv.plots", "--workdir", str(self.workdir)]
        if case == "import":
            return [sys.executable, "-c", "import jaxconv.layers"]
        self._count += 1
        return _train_argv(self.scratch / f"train{self._count}", self.train_steps)

    def env(self, cache_dir: Path) -> dict[str, str]:
        env = dict(os.environ, **{CACHE_ENV: str(cache_dir)})
        env.pop("JAX_COMPILATION_CACHE_DIR", None)  # Would win over the variable.
        return env

    def run(self, case: str, mode: str, cache_dir: Path, record: bool = True) -> tuple:
        argv = self.argv(case)
        wall, cpu = _run(argv, cwd=self.repo, env=self.env(cache_dir))
        if case == "train" and record:
            metrics = json.loads((Path(argv[5]) / "metrics.json").read_text())
            self.compile_seconds[mode].append(metrics["compile_seconds"])
        return wall, cpu


def _summary(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"
            if values else "")


def _measure(benches: list[Bench], cases: list[str], repeats: int) -> dict:
    """{(tree, case, mode): [(wall, cpu), ...]}; each repeat runs every case, tree and mode."""
    warm_dirs = {}
    for t, bench in enumerate(benches):  # One cache per tree and case: "warm" runs are reruns.
        for case in cases:
            warm_dirs[t, case] = bench.scratch / f"warm-{t}-{case}"
            bench.run(case, "warm", warm_dirs[t, case], record=False)
    times = {(t, c, m): [] for t in range(len(benches)) for c in cases for m in MODES}
    for r in range(repeats):
        for case in cases:
            for t, bench in enumerate(benches):
                for mode in MODES if (r + t) % 2 == 0 else MODES[::-1]:
                    cache = (Path(tempfile.mkdtemp(prefix="cold-", dir=bench.scratch))
                             if mode == "cold" else warm_dirs[t, case])
                    times[t, case, mode].append(bench.run(case, mode, cache))
                    if mode == "cold":
                        shutil.rmtree(cache, ignore_errors=True)
        print(f"repeat {r + 1}/{repeats} done, load avg {os.getloadavg()[0]:.2f}",
              file=sys.stderr, flush=True)
    return times


def _table(times: dict, benches: list[Bench], cases: list[str]) -> str:
    rows = []
    for case in cases:
        for t, bench in enumerate(benches):
            row = [case, f"{t + 1}: {bench.repo.name}"]
            for mode in MODES:
                row += [_summary([w for w, _ in times[t, case, mode]]),
                        _summary([c for _, c in times[t, case, mode]])]
            compiles = bench.compile_seconds if case == "train" else {m: [] for m in MODES}
            rows.append(row + [_summary(compiles["cold"]), _summary(compiles["warm"])])
    header = ["case", "tree", "cold wall s", "cold CPU s", "warm wall s", "warm CPU s",
              "train compile s, cold", "train compile s, warm"]
    return _common.format_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, action="append",
                        help="a checkout whose code runs (repeatable; default: this one)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/default"),
                        help="a finished run of configs/default.py (trained here if missing)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES), help=f"subset of {CASES}")
    parser.add_argument("--train_steps", type=int, default=20,
                        help="steps of the train case (its compile time is the point)")
    args = parser.parse_args()
    repos = [r.resolve() for r in args.repo or [_common.REPO_ROOT]]
    workdir = args.workdir.resolve()
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases {sorted(unknown)}; valid: {CASES}")
    trees = {f"tree {i + 1}": f"{r} ({_git_head(r)})" for i, r in enumerate(repos)}
    print(_common.machine_header({**trees, "workdir": str(workdir)}), flush=True)
    if not (workdir / "metrics.json").is_file():
        print(f"training {workdir} first ...", file=sys.stderr, flush=True)
        _run(_train_argv(workdir, None), cwd=repos[-1], env=dict(os.environ))
    with tempfile.TemporaryDirectory(prefix="jaxconv-startup-") as scratch:
        benches = []
        for i, repo in enumerate(repos):
            (Path(scratch) / str(i)).mkdir()
            benches.append(Bench(repo, workdir, Path(scratch) / str(i), args.train_steps))
            _write_png(workdir, benches[-1].png)
        times = _measure(benches, cases, args.repeats)
    print(f"\nmedian (min–max) of {args.repeats} repeats; load avg at the end "
          f"{os.getloadavg()[0]:.2f}")
    print(_table(times, benches, cases))


def _git_head(repo: Path) -> str:
    """``<commit>`` or ``<commit> + uncommitted changes`` (or "not a git checkout")."""
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "-uno"],
                           capture_output=True, text=True).stdout.strip()
    return (f"{head} + uncommitted changes" if dirty else head) or "not a git checkout"


if __name__ == "__main__":
    main()
