"""The whole record survives interruptions at random moments: kill -9 (and a few SIGTERM /
Ctrl-C) anywhere in ``train.py``'s run, then the same command until it exits 0, gives the
record an uninterrupted run gives.

A trial picks a phase by the line ``train.py`` prints when it enters it (the run's header:
restore and first step; a mid-run evaluation: steps and checkpoint writes; the final test
accuracy: ``metrics.json`` written, plots being drawn), then a random delay after it, and
signals the process. Each workdir is interrupted several times in a row (the next
interruption lands in whatever the resumed run is doing), then run to the end. Compared with
an uninterrupted run: ``metrics.json`` (every figure but the timings), its ``history``
record by record, the plots written, the parameters bit for bit; and the timings add up
(``wall_seconds`` is the sum of the listed segments).
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from jaxconv import data
from jaxconv.runs import restore_params
from tests.reliability import subprocess_runs

ROOT = subprocess_runs.ROOT
TIMEOUT = subprocess_runs.TIMEOUT
TIMING_KEYS = {"wall_seconds", "images_per_second", "compile_seconds", "segments"}
# Lines train.py prints as it enters a phase (a regular expression's worth of text each).
PHASES = ("steps ", "step 10: test loss", "step 30: test loss", "test accuracy", "wrote ")
WORKDIRS, INTERRUPTIONS = 4, 5  # 20 interruptions.
# 130/143: stopped by SIGINT/SIGTERM after saving; -2: a Ctrl-C after the last line, while
# Python exits (it then ends by SIGINT, as a shell expects: status 130 there).
EXIT_CODES = (0, 130, 143, -signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT)


def _command(workdir, data_dir):
    return [sys.executable, "train.py", "--config", "configs/default.py", "--workdir",
            str(workdir), f"--config.data_dir={data_dir}", "--config.num_train_steps=40",
            "--config.checkpoint_every_steps=5", "--config.log_every_steps=5",
            "--config.eval_every_steps=10", "--config.progress_bar=False",
            "--config.model_kwargs.hidden=(16,)", "--config.model_kwargs.dropout=0.5"]


def _env(cache_dir):
    return subprocess_runs.env(cache_dir)


_run = subprocess_runs.run


def _interrupt(command, env, phase, delay, sig):
    """Runs `command`; `delay` seconds after a stdout line starting with `phase` (or any
    line containing it), sends `sig`. Returns (exit code, output, whether it was sent)."""
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines, sent = [], threading.Event()

    def fire():
        if proc.poll() is None:
            proc.send_signal(sig)
            sent.set()

    timer = None
    for line in proc.stdout:
        lines.append(line)
        if timer is None and (line.startswith(phase) or phase in line):
            timer = threading.Timer(delay, fire)
            timer.start()
    proc.wait(timeout=TIMEOUT)
    if timer is not None:
        timer.cancel()
    return proc.returncode, "".join(lines), sent.is_set()


def _record(workdir):
    metrics = json.loads((workdir / "metrics.json").read_text())
    figures = {k: v for k, v in metrics.items() if k not in TIMING_KEYS | {"history"}}
    history = [{k: v for k, v in r.items() if not k.endswith("per_second")}
               for r in metrics["history"]]
    return metrics, figures, history


@pytest.mark.slow
def test_record_after_random_interruptions_equals_an_uninterrupted_run(tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    env = _env(tmp_path / "jax_cache")
    reference = tmp_path / "reference"
    rc, out = _run(_command(reference, data_dir), env)
    assert rc == 0, out[-3000:]
    _, ref_figures, ref_history = _record(reference)
    ref_plots = sorted(os.listdir(reference / "plots"))
    ref_params = jax.tree_util.tree_leaves_with_path(restore_params(reference))
    rng = random.Random(20261205)
    log = []
    for w in range(WORKDIRS):
        workdir = tmp_path / f"run{w}"
        command = _command(workdir, data_dir)
        for _ in range(INTERRUPTIONS):
            phase = rng.choice(PHASES)
            delay = rng.uniform(0.0, 1.0)
            sig = rng.choice([signal.SIGKILL] * 4 + [signal.SIGTERM, signal.SIGINT])
            rc, out, sent = _interrupt(command, env, phase, delay, sig)
            log.append((w, phase, round(delay, 2), sig.name, rc, sent))
            assert "Traceback" not in out, (log[-1], out[-3000:])
            assert rc in EXIT_CODES, (log[-1], out[-3000:])
        rc, out = _run(command, env)
        assert rc == 0 and "Traceback" not in out, (log, out[-3000:])
        metrics, figures, history = _record(workdir)
        assert figures == ref_figures, log
        assert history == ref_history, log
        assert sorted(os.listdir(workdir / "plots")) == ref_plots, log
        assert metrics["wall_seconds"] == pytest.approx(
            sum(s["wall_seconds"] for s in metrics["segments"]))
        got = jax.tree_util.tree_leaves_with_path(restore_params(workdir))
        for (path, a), (_, b) in zip(got, ref_params):
            np.testing.assert_array_equal(a, b, err_msg=f"{jax.tree_util.keystr(path)} {log}")
        rc, out = _run(command, env)  # Complete now: nothing to do, nothing written.
        assert rc == 0 and "complete" in out, out[-2000:]
    sent = sum(entry[-1] for entry in log)
    # Many trials did interrupt something (a delay can outlast what is left of the run; the
    # share depends on the machine's speed: 9 of 20 on a quiet 2-core Zen 4 with delays up
    # to 1.5 s).
    assert sent >= len(log) // 3, log
