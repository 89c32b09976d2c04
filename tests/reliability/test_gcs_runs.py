"""``train.py --workdir gs://...`` as processes, against a Cloud Storage API on 127.0.0.1.

The emulator (`gcs` fixture, tests/conftest.py) serves the bucket; every ``train.py`` runs as
a subprocess pointed at it. One bucket workdir is killed (``kill -9`` between checkpoints and
while a checkpoint is written: on a bucket Orbax writes the step in place and marks it done
with ``commit_success.txt`` last), stopped by SIGTERM (exit 143), finished, then started again
(nothing written) and with a changed trained key (refused); its parameters must equal a local
uninterrupted run's bit for bit. A second trainer on a bucket workdir that a first one holds
is refused in one line.
"""

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxconv import data
from jaxconv.runs import restore_params
from jaxconv.training.preemption import PREEMPTED_EXIT_CODE
from tests.reliability import subprocess_runs

ROOT = subprocess_runs.ROOT
DRIVER = os.path.join("tests", "reliability", "fault_driver.py")
TIMEOUT = subprocess_runs.TIMEOUT


def _command(workdir, data_dir, *extra, fault=None, steps=40):
    program = [DRIVER, f"--fault_at={fault}"] if fault else ["train.py"]
    return [sys.executable, *program, "--config", "configs/default.py", "--workdir",
            str(workdir), f"--config.data_dir={data_dir}", f"--config.num_train_steps={steps}",
            "--config.checkpoint_every_steps=5", "--config.log_every_steps=5",
            "--config.progress_bar=False", "--config.write_plots=False",
            "--config.model_kwargs.hidden=(16,)", "--config.model_kwargs.dropout=0.5", *extra]


def _env(gcs, cache_dir):
    return subprocess_runs.env(cache_dir, **gcs.env)


_run = subprocess_runs.run


def _objects(prefix):
    """{``gs://`` path: generation} under `prefix`, from the server."""
    from google.cloud import storage

    bucket, _, name = prefix.split("://", 1)[1].partition("/")
    return {f"gs://{bucket}/{b.name}": b.generation
            for b in storage.Client().list_blobs(bucket, prefix=name + "/")}


def _steps(objects, workdir):
    """Checkpoint steps with Orbax's commit marker, and those without (unfinished)."""
    root = f"{workdir}/checkpoints/"
    steps = {p[len(root):].split("/")[0] for p in objects if p.startswith(root)}
    done = {s for s in steps if f"{root}{s}/commit_success.txt" in objects}
    return sorted(map(int, done)), sorted(map(int, steps - done))


@pytest.mark.slow
def test_bucket_run_killed_stopped_and_resumed_bit_exact(gcs, gcs_dir, tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    env = _env(gcs, tmp_path / "jax_cache")
    reference = tmp_path / "reference"
    rc, out = _run(_command(reference, data_dir), env)
    assert rc == 0, out[-3000:]

    # kill -9 between checkpoints, then just after save(10) returned (written in the background).
    rc, out = _run(_command(gcs_dir, data_dir, fault="step@7"), env)
    assert rc == -signal.SIGKILL, out[-3000:]
    rc, out = _run(_command(gcs_dir, data_dir, fault="save@10"), env)
    assert rc == -signal.SIGKILL, out[-3000:]
    assert _steps(_objects(gcs_dir), gcs_dir)[0] == [5]  # 10 is not committed.
    # SIGTERM at step 23: checkpoint 23 written, exit 143 (the unfinished 10 removed first).
    rc, out = _run(_command(gcs_dir, data_dir, fault="step@23:TERM"), env)
    assert rc == PREEMPTED_EXIT_CODE, out[-3000:]
    assert "steps 5..40" in out and "saved the checkpoint of step 23" in out
    done, unfinished = _steps(_objects(gcs_dir), gcs_dir)
    assert done[-1] == 23 and unfinished == []
    rc, out = _run(_command(gcs_dir, data_dir), env)
    assert rc == 0, out[-3000:]
    assert "Traceback" not in out
    expected = jax.tree_util.tree_leaves_with_path(restore_params(reference))
    got = jax.tree_util.tree_leaves_with_path(restore_params(gcs_dir))
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (path, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))

    # Finished: the same command writes nothing; a changed trained key is refused.
    before = _objects(gcs_dir)
    rc, out = _run(_command(gcs_dir, data_dir), env)
    assert rc == 0 and "holds this run" in out, out[-3000:]
    assert _objects(gcs_dir) == before
    rc, out = _run(_command(gcs_dir, data_dir, "--config.optimizer.learning_rate=0.5"), env)
    assert rc == 2 and "another config" in out, out[-3000:]
    assert _objects(gcs_dir) == before


@pytest.mark.slow
def test_second_trainer_on_a_bucket_workdir_is_refused(gcs, gcs_dir, tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    env = _env(gcs, tmp_path / "jax_cache")
    first = subprocess.Popen(_command(gcs_dir, data_dir, steps=100000), env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while f"{gcs_dir}/run.json" not in _objects(gcs_dir):  # Locked, then recorded.
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        rc, out = _run(_command(gcs_dir, data_dir, steps=100000), env)
        lines = [line for line in out.splitlines() if line.startswith("error:")]
        assert rc == 1, out[-3000:]
        assert len(lines) == 1 and "is in use by another trainer (pid" in lines[0], out[-3000:]
        assert f"{gcs_dir}/train.lock" in lines[0]
    finally:
        first.send_signal(signal.SIGTERM)
        out = first.communicate(timeout=TIMEOUT)[0]
    assert first.returncode == PREEMPTED_EXIT_CODE, out[-3000:]
    assert f"{gcs_dir}/train.lock" not in _objects(gcs_dir)
