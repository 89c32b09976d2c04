"""``config.profile_steps``: a `jax.profiler` trace of a few training steps, as a trainer hook.

`ProfileHook` starts a trace when the loop reaches step ``start`` and stops it after step
``stop - 1`` has finished on the device, so the trace holds exactly those steps (their
host-side dispatch, the device ops, the input pipeline in between). The trace goes to
``workdir/profile`` (``workdir/profile/process_<i>`` in a multi-process run, one directory
per process): TensorBoard's profile plugin reads it (``tensorboard --logdir
workdir/profile``), and the ``perfetto_trace.json.gz`` written next to the ``.xplane.pb``
opens in https://ui.perfetto.dev. A run resumed inside the window traces from the resumed
step; one resumed after it traces nothing.

Step 0 is the first step and includes the compilation: start at a later step to see the
steady state.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import jax

from jaxconv import run_files
from jaxconv.training.hooks import Hooks

PROFILE_DIR = "profile"  # Under the workdir.

logger = logging.getLogger(__name__)


def _wait_for_device() -> None:
    """Blocks until every dispatched computation has produced its arrays (no collective)."""
    jax.block_until_ready(jax.live_arrays())


class ProfileHook(Hooks):
    """Traces steps ``start`` .. ``stop - 1`` (0-based) into `log_dir`.

    Args:
      log_dir: the trace directory (``jax.profiler.start_trace``'s ``log_dir``).
      start: the first traced step (the number of steps taken when tracing starts).
      stop: the first step not traced; tracing stops once step ``stop - 1`` is done.

    Raises:
      ValueError: not ``0 <= start < stop``.
    """

    def __init__(self, log_dir: str | os.PathLike, start: int, stop: int):
        if not 0 <= start < stop:
            raise ValueError(f"profile steps must satisfy 0 <= start < stop, got ({start}, "
                             f"{stop})")
        self.log_dir, self.start, self.stop = os.fspath(log_dir), start, stop
        self._trace_dir: str | None = None  # A local directory; uploaded if log_dir is gs://.
        self.active = False
        self.first_step: int | None = None

    def _begin(self, step: int) -> None:
        _wait_for_device()  # The steps before `start` stay out of the trace.
        if run_files.is_url(self.log_dir):  # The profiler writes local files; uploaded after.
            self._trace_dir = tempfile.mkdtemp(prefix="jaxconv-profile-")
        else:
            self._trace_dir = os.fspath(run_files.makedirs(self.log_dir))
        jax.profiler.start_trace(self._trace_dir, create_perfetto_trace=True)
        self.active, self.first_step = True, step

    def _finish(self, step: int) -> None:
        if not self.active:
            return
        try:
            _wait_for_device()  # The last traced step's device work is in the trace.
        finally:
            jax.profiler.stop_trace()
            self.active = False
        if self._trace_dir != self.log_dir and self._trace_dir is not None:
            run_files.upload_dir(self._trace_dir, self.log_dir)
            shutil.rmtree(self._trace_dir, ignore_errors=True)
        logger.info("profiled steps %d..%d into %s", self.first_step, step - 1, self.log_dir)

    def on_start(self, step: int) -> None:
        if self.start <= step < self.stop:
            self._begin(step)

    def on_step(self, step: int) -> None:
        if step == self.start:
            self._begin(step)
        elif step == self.stop:
            self._finish(step)

    def on_end(self, step: int) -> None:
        self._finish(step)  # Training ended inside the window.

    def on_close(self) -> None:
        if self.active:  # Left by an exception: stop without waiting on a failed step.
            jax.profiler.stop_trace()
            self.active = False


def profile_dir(workdir: str | os.PathLike) -> str:
    """``workdir/profile``, or ``workdir/profile/process_<i>`` when there are several."""
    root = os.path.join(os.fspath(workdir), PROFILE_DIR)
    if jax.process_count() > 1:
        return os.path.join(root, f"process_{jax.process_index()}")
    return root


def profile_hook(config, workdir: str | os.PathLike) -> ProfileHook | None:
    """The `ProfileHook` of ``config.profile_steps`` (checked), or None when it is ``()``.

    Args:
      config: a checked config shaped like ``configs/default.py``.
      workdir: the run's workdir.
    """
    steps = tuple(config["profile_steps"])
    if not steps:
        return None
    return ProfileHook(profile_dir(workdir), *steps)
