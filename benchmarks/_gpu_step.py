"""Accelerator train-step benchmark: jaxconv float32 / bfloat16 vs torch eager, channels_last, AMP.

Run by ``benchmarks/gpu.sh`` (which documents the defaults); by hand, from the repository root::

    python benchmarks/_gpu_step.py --device=gpu --batch=256
    python benchmarks/_gpu_step.py --device=cpu --models=lenet5 --batch=8 --rounds=1  # dry run

One interleaved run: every variant lives in its own worker process (`_gpu_workers`), set up
in parallel (compile, warm-up, peak memory) under one deadline (``--setup_seconds``: a worker
still compiling then is stopped and its rows say so), then the parent asks the workers in
turn, round after round and in a rotating order, to time chunks of steps, so every variant
sees the same conditions; the table gives medians. torch.compile kinds get one process per
model, so a slow compile costs only its own rows. Workers that fail report why; the others
still run. Prints a markdown table (ms/step, images/s, ratios, peak memory) and the goal line
(AlexNet: jaxconv bfloat16 vs torch AMP channels_last).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

import _common
import _models
from _gpu_workers import batch_size, jax_dtype_name, jax_worker, torch_tokens, torch_worker

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
REQUEST_SECONDS = 120  # A timing request that takes longer means a hung worker.


def _parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="gpu")
    p.add_argument("--models", default="lenet5,stagenet_cifar,stagenet_cifar_lcn,alexnet",
                   help=f"from {sorted(_models.SPECS)}")
    p.add_argument("--jax", default="f32,bf16,f32+det", help="jax variants (comma-separated)")
    p.add_argument("--torch", default="eager,channels_last,amp,amp+channels_last",
                   help="torch kinds sharing one process; '' = none")
    p.add_argument("--torch_compile", default="",
                   help="torch kinds with 'compile', one process per model; '' = none")
    p.add_argument("--batch", type=int, default=256, help="0: each model's own batch size")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--reps", type=int, default=2, help="timed chunks per round and variant")
    p.add_argument("--chunk_seconds", type=float, default=0.25)
    p.add_argument("--setup_seconds", type=float, default=300,
                   help="deadline for every worker's setup (compiles), from the start")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Worker:
    """A `_common.serve` child whose replies are read by a thread, so waits can time out."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], models: list[str],
                 rows: list[str]):
        self.name, self.models, self.rows = name, models, rows
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     cwd=str(_common.REPO_ROOT))
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("@@"):
                self._replies.put(json.loads(line[2:]))
            else:
                sys.stderr.write(f"[{self.name}] {line}")
        self._replies.put(None)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict:
        """The next reply. Raises TimeoutError (none within `timeout`) or RuntimeError (exit)."""
        try:
            reply = self._replies.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            raise TimeoutError(f"no reply within {max(timeout, 0):.0f} s") from None
        if reply is None:
            raise RuntimeError(f"exited (rc={self.proc.wait()})")
        return reply

    def request(self, message: dict, timeout: float = REQUEST_SECONDS) -> dict:
        self.send(message)
        return self.receive(timeout)

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            try:
                if kill:
                    self.proc.kill()
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def _start_workers(args, models) -> list[Worker]:
    """One process per jax variant, one for the torch kinds, one per model for compile kinds."""
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.device == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    me = [sys.executable, os.path.abspath(__file__), f"--device={args.device}",
          f"--batch={args.batch}", f"--chunk_seconds={args.chunk_seconds}"]
    workers = []
    for variant in [v for v in args.jax.split(",") if v]:
        jax_dtype_name(variant)  # Checks the tokens before any process starts.
        wenv = dict(env)
        if "det" in variant.split("+"):
            wenv["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {DETERMINISTIC_FLAG}".strip()
        workers.append(Worker(f"jax:{variant}", me + ["--worker=jax", f"--variant={variant}"],
                              wenv, models, [f"jax:{variant}"]))
    groups = [([k for k in args.torch.split(",") if k], models)]
    compile_kinds = [k for k in args.torch_compile.split(",") if k]
    groups += [(compile_kinds, [m]) for m in models] if compile_kinds else []
    for kinds, group_models in groups:
        for kind in kinds:
            torch_tokens(kind)
        if kinds:
            name = "torch" if group_models is models else f"torch:{group_models[0]}"
            workers.append(Worker(name, me + ["--worker=torch", f"--variant={','.join(kinds)}"],
                                  env, group_models, [f"torch:{k}" for k in kinds]))
    return workers


def _rows(w: Worker, reply: dict) -> dict[str, dict]:
    """``{row: setup figures}`` from one setup reply of worker `w`."""
    if "error" in reply:
        return {row: reply for row in w.rows}
    if w.name.startswith("jax"):
        return {w.rows[0]: reply}
    return {f"torch:{kind}": dict(r, max_logit_diff=reply["max_logit_diff"])
            for kind, r in reply["kinds"].items()}


def _setup_all(workers, deadline: float):
    """Sets every worker's models up in parallel; ``(info, setups, notes)``."""
    info, setups, notes = {}, {}, []
    for w in workers:
        w.send({"cmd": "info"})
        for model in w.models:
            w.send({"cmd": "setup", "model": model})
    for w in workers:
        try:
            w.receive(deadline - time.monotonic())  # ready
            info[w.name] = w.receive(deadline - time.monotonic())
            for model in w.models:
                for row, r in _rows(w, w.receive(deadline - time.monotonic())).items():
                    setups[(model, row)] = r
                    if "error" in r:
                        notes.append(f"{model} {row}: {r['error']}")
        except (TimeoutError, RuntimeError) as e:
            notes.append(f"{w.name}: {e}; its models not set up by then are skipped")
            for model in w.models:
                for row in w.rows:
                    setups.setdefault((model, row), {"error": "not set up (see notes)"})
            w.close(kill=True)
    return info, setups, notes


def _measure(args, workers, models, setups):
    owner = {(m, row): w for w in workers for m in w.models for row in w.rows}
    timed = [k for k, s in setups.items() if "error" not in s and owner[k].proc.poll() is None]
    times = {k: [] for k in timed}
    for r in range(args.rounds):
        for model in models:
            keys = [k for k in timed if k[0] == model]
            keys = keys[r % len(keys):] + keys[:r % len(keys)] if keys else keys
            for key in keys:
                try:
                    reply = owner[key].request({"cmd": "time", "model": model, "reps": args.reps,
                                                "variant": key[1].split(":", 1)[1]})
                except (TimeoutError, RuntimeError) as e:
                    reply = {"error": f"{owner[key].name}: {e}"}
                if "error" in reply:
                    print(f"{key} timing failed: {reply['error']}", file=sys.stderr)
                    continue
                times[key].extend(reply["step_s"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    return times


def _mib(n) -> str:
    return f"{n / 2**20:.0f}" if n else "-"


def _report(args, models, setups, times) -> None:
    rows, summary = [], []
    for model in models:
        batch = batch_size(args, model)
        med = {row: _common.median(t) for (m, row), t in times.items() if m == model and t}
        eager, amp_cl = med.get("torch:eager"), med.get("torch:amp+channels_last")
        fwd = next((s["fwd_flops"] for (m, _), s in setups.items()
                    if m == model and "fwd_flops" in s), None)
        for (m, row), s in sorted(setups.items()):
            if m != model:
                continue
            sec = med.get(row)
            cells = [f"{sec * 1e3:.2f}", f"{batch / sec:.0f}",
                     f"{3 * fwd * batch / sec / 1e12:.2f}" if fwd else "-",
                     f"{eager / sec:.2f}x" if eager else "-",
                     f"{amp_cl / sec:.2f}x" if amp_cl else "-"] if sec else ["-"] * 5
            rows.append([model, batch, row, *cells, _mib(s.get("peak_bytes")),
                         f"{s['compile_s']:.1f}" if "compile_s" in s else
                         s.get("error", "no timing")[:40]])
        jax_bf16 = min((v for r, v in med.items() if r.startswith("jax:bf16")), default=None)
        if jax_bf16 and amp_cl:
            ratio = amp_cl / jax_bf16
            goal = f"; goal >= 1: {'met' if ratio >= 1 else 'NOT met'}" \
                if model == "alexnet" else ""
            summary.append(f"{model}: jax bf16 {batch / jax_bf16:.0f} img/s vs torch "
                           f"amp+channels_last {batch / amp_cl:.0f} img/s -> {ratio:.2f}x{goal}")
        diff = next((s["max_logit_diff"] for (m, _), s in setups.items()
                     if m == model and s.get("max_logit_diff") is not None), None)
        if diff is not None:
            summary.append(f"{model}: max |logit jax - torch| = {diff:.2e} (float32, same "
                           f"weights)")
    header = ["model", "batch", "variant", "ms/step", "img/s", "TFLOP/s", "vs torch eager",
              "vs torch amp+cl", "peak MiB", "compile s"]
    print(_common.format_table(header, rows))
    print()
    print("\n".join(summary))


def main(argv=None):
    args = _parse(argv)
    if args.worker == "jax":
        return jax_worker(args)
    if args.worker == "torch":
        return torch_worker(args)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in _models.SPECS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; valid: {sorted(_models.SPECS)}")
    t0 = time.monotonic()
    workers = _start_workers(args, models)
    try:
        info, setups, notes = _setup_all(workers, t0 + args.setup_seconds)
        print(_common.machine_header({
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "workers": "; ".join(f"{k}: {v}" for k, v in info.items()),
            "timing": f"{args.rounds} interleaved rounds x {args.reps} chunks of "
                      f"~{args.chunk_seconds}s, median; compile + 2 warm-up steps excluded; "
                      f"setup {time.monotonic() - t0:.0f} s",
        }), flush=True)
        times = _measure(args, workers, models, setups)
        for w in workers:
            if w.name.startswith("jax") and w.proc.poll() is None:
                peak = w.request({"cmd": "memory"}).get("process_peak_bytes")
                notes.append(f"{w.name}: device peak over the whole process {_mib(peak)} MiB")
    finally:
        for w in workers:
            w.close()
    print()
    _report(args, models, setups, times)
    if notes:
        print("\n" + "\n".join(notes))
    print(f"total {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
