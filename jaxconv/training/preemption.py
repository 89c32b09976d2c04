"""Stopping cleanly on a preemption notice (SIGTERM).

`SigtermNotice` turns SIGTERM (what Kubernetes, Slurm and preemptible TPU/GPU VMs send before
they kill a job) into a flag the training loop polls: the loop then saves a checkpoint of the
current step, waits for it to be written and raises `Preempted`; ``train.py`` prints one line
and exits with `PREEMPTED_EXIT_CODE` (143 = 128 + SIGTERM, what a shell reports for a job
ended by SIGTERM, but reached only after the checkpoint is safe). Running the same command
again resumes bit-exactly.

Multi-process runs must stop at the same step in every process (a save is collective), and a
notice may reach only some processes: the flag is combined across processes (`any_process`,
one tiny all-gather) only at the loop's sync points (every ``log_every_steps``, checkpoint and
eval steps), which every process reaches at the same step, so no process waits on another
between them. A single process polls the flag every step (no communication at all).
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils

PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class Preempted(Exception):
    """Training stopped on SIGTERM after saving a checkpoint; the message names it."""


def any_process(flag: bool) -> bool:
    """True if `flag` is true in any process (every process must call this; no-op alone)."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.asarray([flag], np.int32))))


class SigtermNotice:
    """Context manager: records SIGTERM instead of dying; restores the old handler on exit.

    Only the main thread can install signal handlers; elsewhere (a notebook's worker thread)
    this does nothing and SIGTERM keeps its previous behaviour.
    """

    def __init__(self):
        self.received = False
        self._previous = None
        self._installed = False

    def _handle(self, signum, frame):
        self.received = True

    def __enter__(self) -> SigtermNotice:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def should_stop(self, sync_point: bool) -> bool:
        """Whether to stop now (module docstring: every step alone, sync points otherwise).

        Args:
          sync_point: this step is one every process treats as a sync point.
        """
        if jax.process_count() == 1:
            return self.received
        return sync_point and any_process(self.received)
