"""A second Ctrl-C aborts at once, with one line; the run resumes from what was committed.

The first SIGINT (sent by ``fault_driver.py`` at step 3) makes the trainer save step 3; the
second arrives while that save is in flight (right after ``save`` returned) and ends the
process at once with status 130 and one ``error:`` line, no traceback. Running the same
command again finishes the run. (A single Ctrl-C, saved like SIGTERM and resumed bit-exactly,
is part of ``test_kill_resume.py``.)
"""

import os
import subprocess
import sys

import pytest

from jaxconv import data
from jaxconv.runs import complete_steps
from jaxconv.training.preemption import INTERRUPTED_EXIT_CODE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(workdir, data_dir, fault=None):
    program = [os.path.join("tests", "reliability", "fault_driver.py"),
               f"--fault_at={fault}"] if fault else ["train.py"]
    return [sys.executable, *program, "--config", "configs/default.py", "--workdir",
            str(workdir), f"--config.data_dir={data_dir}", "--config.num_train_steps=6",
            "--config.checkpoint_every_steps=2", "--config.log_every_steps=1",
            "--config.batch_size=20", "--config.progress_bar=False",
            "--config.write_plots=False"]


def run(argv, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once(tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    workdir = tmp_path / "run"
    rc, out = run(command(workdir, data_dir, "step@3:INT,save@3:INT"), tmp_path)
    assert rc == INTERRUPTED_EXIT_CODE, out[-3000:]
    assert ("error: second Ctrl-C: aborted without waiting for the checkpoint write; the "
            "newest complete checkpoint is kept") in out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    committed = complete_steps(workdir / "checkpoints")
    assert committed[-1] in (2, 3), committed

    rc, out = run(command(workdir, data_dir), tmp_path)
    assert rc == 0, out[-3000:]
    assert f"steps {committed[-1]}..6" in out
