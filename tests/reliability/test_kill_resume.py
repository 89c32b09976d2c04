"""kill -9 anywhere, SIGTERM and Ctrl-C: ``train.py`` restarted with the same command ends
bit-exact.

One workdir is interrupted seven times (five SIGKILLs, a SIGTERM, a SIGINT) at points chosen
through the loop's hooks (``fault_driver.py``: ``train.py`` with a `jaxconv.training.Hooks`
that signals its own process there, ``--fault_at=save@10``) or from outside (the test polls
for Orbax's temporary directory and kills mid-write), each time restarted with the same
flags, and must end with parameters bit-identical to an uninterrupted run. 40 steps, a
checkpoint every 5, dropout and the random distortions on. The subprocesses share a
persistent compilation cache so that each restart takes seconds.
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
from jaxconv.training.preemption import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE
from tests.reliability import subprocess_runs

ROOT = subprocess_runs.ROOT
DRIVER = os.path.join("tests", "reliability", "fault_driver.py")
TMP_SUFFIX = ".orbax-checkpoint-tmp"
TIMEOUT = subprocess_runs.TIMEOUT


def _command(workdir, data_dir, fault=None):
    """train.py's command line, or (`fault`) the fault driver's with the same flags."""
    program = [DRIVER, f"--fault_at={fault}"] if fault else ["train.py"]
    return [sys.executable, *program, "--config", "configs/default.py", "--workdir",
            str(workdir), f"--config.data_dir={data_dir}", "--config.num_train_steps=40",
            "--config.checkpoint_every_steps=5", "--config.log_every_steps=5",
            "--config.progress_bar=False", "--config.write_plots=False",
            "--config.model_kwargs.hidden=(16,)", "--config.model_kwargs.dropout=0.5"]


def _env(cache_dir):
    return subprocess_runs.env(cache_dir)


_run = subprocess_runs.run


def _kill_when_writing(command, env, checkpoints, step):
    """Starts `command`, SIGKILLs it as soon as ``<step>.orbax-checkpoint-tmp`` appears."""
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tmp = os.path.join(checkpoints, f"{step}{TMP_SUFFIX}")
    deadline = time.monotonic() + TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if os.path.exists(tmp):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    out = proc.communicate(timeout=TIMEOUT)[0]
    return proc.returncode, out


def _committed(checkpoints):
    return sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())


@pytest.mark.slow
def test_killed_anywhere_and_preempted_resumes_bit_exact(tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    cache = tmp_path / "jax_cache"
    reference, workdir = tmp_path / "reference", tmp_path / "run"
    checkpoints = str(workdir / "checkpoints")
    rc, out = _run(_command(reference, data_dir), _env(cache))
    assert rc == 0, out[-3000:]
    command = _command(workdir, data_dir)
    env = _env(cache)

    def faulted(fault):
        return _run(_command(workdir, data_dir, fault), env)

    # 1. Mid-run, between checkpoints (step 5's write may still be in flight).
    rc, out = faulted("step@7")
    assert rc == -signal.SIGKILL, out[-3000:]
    assert _committed(checkpoints) in ([], [5])
    # 2. Just after save(10) returned: its files are being written in the background.
    rc, out = faulted("save@10")
    assert rc == -signal.SIGKILL, out[-3000:]
    assert os.path.isdir(os.path.join(checkpoints, f"10{TMP_SUFFIX}"))
    assert _committed(checkpoints) == [5]
    # 3. Just after restoring step 5, before any step.
    rc, out = faulted("start@5")
    assert rc == -signal.SIGKILL, out[-3000:]
    assert "steps 5..40" in out
    # 4. SIGTERM at step 23 (not a checkpoint step): checkpoint 23 written, exit 143.
    rc, out = faulted("step@23:TERM")
    assert rc == PREEMPTED_EXIT_CODE, out[-3000:]
    assert "stopped: SIGTERM received: saved the checkpoint of step 23" in out
    assert _committed(checkpoints)[-1] == 23
    # 4b. Ctrl-C (SIGINT) at step 27: handled like SIGTERM, exit 130.
    rc, out = faulted("step@27:INT")
    assert rc == INTERRUPTED_EXIT_CODE, out[-3000:]
    assert "stopped: SIGINT (Ctrl-C) received: saved the checkpoint of step 27" in out
    assert "Traceback" not in out
    assert _committed(checkpoints)[-1] == 27
    # 5. From outside, while Orbax writes step 30 (the unfinished write was cleaned up).
    rc, out = _kill_when_writing(command, env, checkpoints, 30)
    assert rc == -signal.SIGKILL, out[-3000:]
    assert "steps 27..40" in out
    # 6. After the last step, while the last checkpoint is written, before the evaluation.
    rc, out = faulted("end@40")
    assert rc == -signal.SIGKILL, out[-3000:]
    assert not os.path.exists(workdir / "metrics.json")

    rc, out = _run(command, env)
    assert rc == 0, out[-3000:]
    assert "Traceback" not in out
    assert not any(TMP_SUFFIX in d for d in os.listdir(checkpoints))
    expected = jax.tree_util.tree_leaves_with_path(restore_params(reference))
    got = jax.tree_util.tree_leaves_with_path(restore_params(workdir))
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (path, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
