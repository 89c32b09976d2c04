"""One trainer per workdir: a second one stops at once, naming the holder, touching nothing.

A helper process holds a workdir's `WorkdirLock` (as a running trainer does). Another lock
on it fails naming the holder's pid and host; once the holder is killed with SIGKILL the
lock is free again (the kernel releases ``flock`` locks with the process: never stale).
``train.py`` on the held workdir exits with status 1 and one ``error:`` line, without
deleting the holder's unfinished checkpoint write or writing ``run.json``. Each process of
a multi-process run locks its own file (``tests/test_training_multiprocess.py`` trains two
processes in one workdir).
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from jaxconv.training import workdir as workdir_lib
from jaxconv.training.workdir import WorkdirBusyError, WorkdirLock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOLD = """
import sys, time
from jaxconv.training.workdir import WorkdirLock
lock = WorkdirLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """A process holding ``tmp_path/run``'s lock until it is killed."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc, str(workdir)
    proc.kill()
    proc.wait()


def test_second_lock_names_the_holder_and_kill_9_frees_it(holder):
    proc, workdir = holder
    with pytest.raises(WorkdirBusyError, match=(
            rf"^{workdir} is in use by another trainer \(pid {proc.pid} on host "
            rf"{socket.gethostname()}, started \d{{4}}-\d\d-\d\dT.*; lock {workdir}/train.lock"
            r"\): wait for it to finish or stop it, or use another --workdir$")):
        WorkdirLock(workdir).acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with WorkdirLock(workdir) as lock:
        with open(lock.path) as f:
            assert f.read().startswith(f"pid {os.getpid()} on host ")


def test_each_process_of_a_run_has_its_own_lock_file(tmp_path):
    assert workdir_lib.lock_path(str(tmp_path), 0) == str(tmp_path / "train.lock")
    assert workdir_lib.lock_path(str(tmp_path), 1) == str(tmp_path / "train.lock.1")
    with WorkdirLock(str(tmp_path), 0), WorkdirLock(str(tmp_path), 1):
        with pytest.raises(WorkdirBusyError):
            WorkdirLock(str(tmp_path), 1).acquire()  # Another open file: the lock holds.


@pytest.mark.slow
def test_second_trainer_stops_before_touching_anything(holder, tmp_path):
    proc, workdir = holder
    unfinished = os.path.join(workdir, "checkpoints", "170.orbax-checkpoint-tmp")
    os.makedirs(unfinished)  # The holder's checkpoint write in progress.
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "train.py", "--config", "configs/default.py", "--workdir", workdir,
         f"--config.data_dir={tmp_path / 'tfds'}", "--config.num_train_steps=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=""))
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {workdir} is in use by another trainer (pid {proc.pid} on host "
        f"{socket.gethostname()}, started {_started(workdir)}; lock {workdir}/train.lock): "
        f"wait for it to finish or stop it, or use another --workdir"], result.stderr
    assert result.stdout == ""
    assert os.path.isdir(unfinished)
    assert sorted(os.listdir(workdir)) == ["checkpoints", "train.lock"]
    assert not os.path.exists(tmp_path / "tfds")  # Not even the dataset was prepared.
    assert elapsed < 60, elapsed  # Start-up (imports) only: no dataset, no compile.


def _started(workdir):
    with open(os.path.join(workdir, "train.lock")) as f:
        return f.read().strip().rsplit("started ", 1)[1]
