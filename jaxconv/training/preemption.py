"""Stopping cleanly on a preemption notice (SIGTERM) or Ctrl-C (SIGINT).

`StopNotice` turns SIGTERM (what Kubernetes, Slurm and preemptible TPU/GPU VMs send before
they kill a job) and SIGINT (Ctrl-C) into a flag the training loop polls: the loop then saves
a checkpoint of the current step, waits for it to be written and raises `Preempted`;
``train.py`` prints one line and exits with the signal's status (`PREEMPTED_EXIT_CODE`, 143 =
128 + SIGTERM, or `INTERRUPTED_EXIT_CODE`, 130 = 128 + SIGINT: what a shell reports for a job
ended by that signal, but reached only after the checkpoint is safe). Running the same
command again resumes bit-exactly. A second Ctrl-C aborts at once (status 130, one line on
stderr), without waiting for the write: the newest complete checkpoint is kept, the
unfinished one is removed on the next start.

Multi-process runs must stop at the same step in every process (a save is collective), and a
notice may reach only some processes: the flag is combined across processes (`any_process`,
one tiny all-gather) only at the loop's sync points (every ``log_every_steps``, checkpoint and
eval steps), which every process reaches at the same step, so no process waits on another
between them. A single process polls the flag every step (no communication at all).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
_EXIT_CODES = {signal.SIGTERM: PREEMPTED_EXIT_CODE, signal.SIGINT: INTERRUPTED_EXIT_CODE}


class Preempted(Exception):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint; the message names it.

    Attributes:
      exit_code: the status ``train.py`` exits with (143 for SIGTERM, 130 for SIGINT).
    """

    def __init__(self, message: str, exit_code: int = PREEMPTED_EXIT_CODE):
        super().__init__(message)
        self.exit_code = exit_code


def any_process(flag: bool) -> bool:
    """True if `flag` is true in any process (every process must call this; no-op alone)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag], np.int32))))


class StopNotice:
    """Context manager: records SIGTERM and SIGINT instead of dying; restores the old handlers
    on exit. A SIGINT after a first stop signal ends the process at once (status 130).

    Only the main thread can install signal handlers; elsewhere (a notebook's worker thread)
    this does nothing and the signals keep their previous behaviour.

    Attributes:
      signal: the first stop signal received, or None.
    """

    def __init__(self):
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}

    @property
    def received(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """The exit status for the signal received (143 for SIGTERM, 130 for SIGINT)."""
        return _EXIT_CODES[self.signal or signal.SIGTERM]

    def describe(self) -> str:
        """``"SIGTERM"`` or ``"SIGINT (Ctrl-C)"``: the signal received, for messages."""
        sig = self.signal or signal.SIGTERM
        return "SIGINT (Ctrl-C)" if sig == signal.SIGINT else sig.name

    def _handle(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            print("error: second Ctrl-C: aborted without waiting for the checkpoint write; the "
                  "newest complete checkpoint is kept", file=sys.stderr, flush=True)
            os._exit(INTERRUPTED_EXIT_CODE)
        if self.signal is None:
            self.signal = signal.Signals(signum)

    def __enter__(self) -> StopNotice:
        if threading.current_thread() is threading.main_thread():
            for sig in _EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def should_stop(self, sync_point: bool) -> bool:
        """Whether to stop now (module docstring: every step alone, sync points otherwise).

        Args:
          sync_point: this step is one every process treats as a sync point.
        """
        if jax.process_count() == 1:
            return self.received
        return sync_point and any_process(self.received)
