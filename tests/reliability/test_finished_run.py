"""A finished run, run again with the same command: "complete", status 0, nothing rewritten.

``train.py`` trains 4 steps and draws its figures; the same command again prints that the run
is complete (step, test accuracy, where the metrics are) and exits 0 without rewriting
``metrics.json`` (its timing stays the first run's), ``run.json`` or the plots.
"""

import json
import os
import subprocess
import sys

import pytest

from jaxconv import data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _snapshot(workdir):
    """``{relative path: (mtime_ns, bytes)}`` of the run's record and figures."""
    paths = ["metrics.json", "run.json"] + [os.path.join("plots", p) for p in
                                            sorted(os.listdir(workdir / "plots"))]
    return {p: (os.stat(workdir / p).st_mtime_ns, (workdir / p).read_bytes()) for p in paths}


@pytest.mark.slow
def test_finished_run_is_reported_not_redone(tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    workdir = tmp_path / "run"
    command = [sys.executable, "train.py", "--config", "configs/default.py", "--workdir",
               str(workdir), f"--config.data_dir={data_dir}", "--config.num_train_steps=4",
               "--config.batch_size=20", "--config.progress_bar=False"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote 5 plots" in first.stdout
    before = _snapshot(workdir)
    metrics = json.loads(before["metrics.json"][1])

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == (
        f"{workdir} holds this run, complete: step 4, test accuracy "
        f"{100 * metrics['test_accuracy']:.2f}%; metrics in {workdir}/metrics.json. Nothing to "
        f"do (raise config.num_train_steps to train on, or use a new --workdir)\n")
    assert again.stderr == ""
    assert _snapshot(workdir) == before
