"""The training workdir as a resource: usable, held by one trainer, not silently full.

A workdir is a local directory or a bucket path (``gs://bucket/run``); every file goes
through `jaxconv.run_files`, and the lock has one interface with two mechanisms.

- `open_workdir` creates the workdir and checks that it can be written, turning the ways it
  cannot (a path under a regular file, a read-only filesystem, no permission) into one
  `WorkdirError` naming the path and the reason. A bucket path has nothing to create; the
  lock's first write finds a missing bucket, missing credentials or permissions, or no
  network, in one line within seconds.
- `WorkdirLock` makes a run exclusive: locally an ``fcntl.flock`` on ``workdir/train.lock``
  (one file per process of a multi-process run: ``train.lock`` for process 0,
  ``train.lock.<i>`` for process ``i``); in a bucket the lock object of the same name
  (`jaxconv.training.bucket_lock`: created with a generation precondition, refreshed while
  held, taken over with a warning once stale). Either is held from before the trainer
  touches anything until it returns. A second
  trainer fails at once with `WorkdirBusyError`, naming the holder (pid, host, start time,
  the line the holder wrote into the file). The kernel releases the lock when its process
  exits, however it exits (``kill -9`` included), so a lock is never stale. It is advisory
  and needs a filesystem with ``flock``: on some network filesystems (older NFS, some FUSE
  mounts) the call fails or locks only on one machine, and the run cannot be protected:
  give such runs a ``gs://`` workdir instead of a gcsfuse mount.
- `exclusive` does both, in every process of a run.
- `remove_new_entries` removes what a run that failed before its first checkpoint created
  (`entries` lists the workdir before), so that a rerun and every reader find it as before.
- `disk_full` recognises a full disk in an exception chain (Orbax and TensorBoard wrap the
  ``OSError``); the trainer then raises `DiskFullError` listing the intact checkpoint steps.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import socket
from collections.abc import Iterator

import jax

from jaxconv import run_files, runs
from jaxconv.training import bucket_lock
from jaxconv.training.hooks import Hooks
from jaxconv.training.preemption import any_process

LOCK_FILE = "train.lock"


class WorkdirError(RuntimeError):
    """The workdir cannot be used (not a directory, read-only, no permission, a malformed
    record); the one-line message names the path and the reason."""


class WorkdirBusyError(WorkdirError):
    """Another trainer holds the workdir's lock; the message names it."""


class WorkdirLockLost(WorkdirError):
    """Another trainer took over this run's bucket lock; the trainer stops without writing."""


LOCK_LOST_EXIT_CODE = 3  # train.py's status after `WorkdirLockLost` (docs/reliability.md).


class DiskFullError(WorkdirError):
    """No space left while writing the run; the message lists the intact checkpoint steps."""


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _blocking_file(workdir: str) -> str | None:
    """The first existing ancestor of `workdir` that is not a directory, if any."""
    path = workdir
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path if path and not os.path.isdir(path) else None


def open_workdir(workdir: str) -> str:
    """Creates `workdir` (and its parents) if needed; returns it.

    Raises:
      WorkdirError: a path component is a regular file, or the directory cannot be created
        (read-only filesystem, no permission, ...): names the path and the reason.
    """
    if run_files.is_url(workdir):
        return workdir  # Objects need no directory; the lock checks the bucket.
    blocking = _blocking_file(workdir)
    if blocking is not None:
        raise WorkdirError(f"cannot use --workdir {workdir}: {blocking} is a file, not a "
                           f"directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as err:
        raise WorkdirError(f"cannot create --workdir {workdir}: {_reason(err)}") from err
    return workdir


def lock_path(workdir: str, process_index: int) -> str:
    """The lock file of process `process_index` (module docstring)."""
    name = LOCK_FILE if process_index == 0 else f"{LOCK_FILE}.{process_index}"
    return os.path.join(workdir, name)


def _busy(workdir: str, holder: str, path: str) -> WorkdirBusyError:
    return WorkdirBusyError(f"{workdir} is in use by another trainer ({holder}; lock {path}): "
                            f"wait for it to finish or stop it, or use another --workdir")


class WorkdirLock:
    """The exclusive, non-blocking lock of a workdir (module docstring): an ``flock`` on a
    local lock file, or a lock object in a bucket.

    Use as a context manager (or `acquire` / `release`). A local file is kept after release
    (its line says who held it last); a bucket's lock object is deleted.

    Args:
      workdir: an existing directory (`open_workdir`) or a ``gs://`` path.
      process_index: this process's index in a multi-process run (0 alone).
      stale_s: a bucket lock not refreshed for this many seconds is taken over
        (`bucket_lock.STALE_S`); unused locally (the kernel frees a dead process's flock).
    """

    def __init__(self, workdir: str, process_index: int = 0, *,
                 stale_s: float = bucket_lock.STALE_S):
        self.workdir = workdir
        self.path = lock_path(workdir, process_index)
        self._fd: int | None = None
        self._bucket = (bucket_lock.BucketLock(self.path, stale_s=stale_s)
                        if run_files.is_url(workdir) else None)
        self._checked_step: int | None = None  # A step's log and checkpoint ask once.

    def acquire(self) -> WorkdirLock:
        """Takes the lock, then writes this process's line into the file.

        Raises:
          WorkdirBusyError: another process holds it (the message quotes its line).
          WorkdirError: the file cannot be created or locked (read-only, permission, a
            filesystem without flock; a bucket that is missing or not writable, no
            credentials, no network).
        """
        if self._bucket is not None:
            try:
                self._bucket.acquire()
            except bucket_lock.LockBusy as err:
                raise _busy(self.workdir, str(err), self.path) from None
            except bucket_lock.BucketError as err:
                raise WorkdirError(f"cannot use --workdir {self.workdir}: {err}") from None
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise WorkdirError(f"cannot write to --workdir {self.workdir}: {self.path}: "
                               f"{_reason(err)}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _busy(self.workdir, holder, self.path) from None
            raise WorkdirError(f"cannot lock {self.path} ({_reason(err)}): this filesystem "
                               f"may not support flock; use a local --workdir") from err
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        line = f"pid {os.getpid()} on host {socket.gethostname()}, started {started}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, line.encode(), 0)
        except OSError as err:
            os.close(fd)
            raise WorkdirError(f"cannot write to --workdir {self.workdir}: {self.path}: "
                               f"{_reason(err)}") from err
        self._fd = fd
        return self

    def check(self, step: int) -> None:
        """Called before each checkpoint write and each log (`guard`), in every process:
        raises `WorkdirLockLost` if any process's bucket lock was taken over by another
        trainer (`BucketLock.check`; a local ``flock`` cannot be lost). The processes agree,
        so that all stop together.

        Raises:
          WorkdirLockLost: names the lock, its new holder and `step`.
        """
        if self._bucket is None or step == self._checked_step:
            return  # Local (every process alike), or this step was asked about already.
        self._checked_step, problem = step, None
        try:
            self._bucket.check()
        except bucket_lock.LockLost as err:
            problem = str(err)
        if any_process(problem is not None):
            raise WorkdirLockLost(
                f"lost the lock of --workdir {self.workdir} to another trainer "
                f"({problem or 'in another process of this run'}; lock {self.path}): stopped "
                f"at step {step}, writing nothing more; let the other trainer finish, or stop "
                f"it and run this command again to resume")

    def guard(self, every: int) -> Hooks:
        """A hook that runs `check` after every `every`-th step, before that step's logs and
        checkpoint are written (the checkpointer runs it before every save as well)."""
        return _LockGuard(self, every)

    def release(self) -> None:
        """Releases the lock (closing the file releases it; a bucket's object is deleted)."""
        if self._bucket is not None:
            self._bucket.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class _LockGuard(Hooks):
    """`WorkdirLock.guard`'s hook."""

    def __init__(self, lock: WorkdirLock, every: int):
        self._lock, self._every = lock, every

    def on_step(self, step: int) -> None:
        if step % self._every == 0:
            self._lock.check(step)


@contextlib.contextmanager
def exclusive(workdir: str) -> Iterator[WorkdirLock]:
    """Creates `workdir` (`open_workdir`) and holds this process's `WorkdirLock` inside.

    Every process of a run must enter it together: they agree (one tiny all-gather) on
    whether all of them got their lock, so that none starts alone.

    Raises:
      WorkdirError: the workdir cannot be used (`open_workdir`, `WorkdirLock.acquire`).
      WorkdirBusyError: another trainer holds a lock (in any process of this run).
    """
    lock, error = WorkdirLock(workdir, jax.process_index()), None
    try:
        open_workdir(workdir)
        lock.acquire()
    except WorkdirError as err:
        error = err
    if any_process(error is not None):
        lock.release()
        raise error or WorkdirBusyError(f"{workdir}: another process of this run could not "
                                        f"take its lock; nothing was started")
    try:
        yield lock
    finally:
        lock.release()


def entries(workdir: str) -> frozenset[str] | None:
    """The names in `workdir` now; None when it does not exist (`remove_new_entries`)."""
    try:
        return frozenset(run_files.listdir(workdir))
    except OSError:
        return None


def remove_new_entries(workdir: str, before: frozenset[str] | None, lock: WorkdirLock) -> None:
    """Removes what a run that failed before its first complete checkpoint created in
    `workdir` (under its lock, so no other trainer's files can be among them).

    `before` is `entries` from before the run took the workdir: the names created since are
    removed (``checkpoints/``, ``run.json``, the history stream, TensorBoard events, this
    process's lock file last), and the workdir itself if the run created it and it is empty
    again. Nothing is removed once a checkpoint is complete: the run can resume. Process 0
    removes the run's entries, every process its own lock file. Errors are ignored (the
    run's own error is the one to report).
    """
    if runs.complete_steps(os.path.join(workdir, runs.CHECKPOINTS_DIR)):
        return
    now = entries(workdir) or frozenset()
    mine = os.path.basename(lock.path)
    for name in sorted(now - (before or frozenset())):
        if name.startswith(LOCK_FILE) or jax.process_index() != 0:
            continue  # Lock files: each process removes its own, below.
        with contextlib.suppress(OSError):
            run_files.remove(os.path.join(workdir, name))
    if run_files.is_url(workdir):
        return  # A bucket's lock object goes on release; a prefix is no directory.
    if before is None or mine not in before:
        with contextlib.suppress(OSError):
            os.unlink(lock.path)
    if before is None:
        with contextlib.suppress(OSError):
            os.rmdir(workdir)  # Only if empty (another process's lock file may remain).


def disk_full_error(workdir: str) -> DiskFullError:
    """The `DiskFullError` of `workdir` (`disk_full`): the intact checkpoint steps, what to do."""
    checkpoints = os.path.join(workdir, runs.CHECKPOINTS_DIR)
    steps = runs.complete_steps(checkpoints)
    intact = (f"intact checkpoint steps: {', '.join(map(str, steps))} in {checkpoints}; free "
              f"space and run the same command to resume from step {steps[-1]}" if steps else
              "no complete checkpoint yet; free space and run the same command")
    return DiskFullError(f"no space left on the device of {workdir} while writing the run; "
                         f"{intact}")


def disk_full(err: BaseException | None) -> bool:
    """Whether `err` or an exception in its chain is "no space left on device" (ENOSPC or
    EDQUOT, or a wrapped error whose message says so)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(err) or "Disk quota exceeded" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False
