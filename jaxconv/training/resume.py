"""Starting on a workdir that already holds a run: the same run, a longer one, or a done one.

`check_workdir` runs under the workdir's lock (`jaxconv.training.workdir`), before the job is
built or anything is written, and decides from ``run.json``, ``metrics.json`` and the
complete checkpoint steps:

- No checkpoint and no ``metrics.json``: a new run (a stale ``run.json`` of a run that
  never saved a step is replaced).
- A config whose `TRAINED <jaxconv.training.config_keys>` keys differ from the run's:
  `ConfigMismatchError` listing each key ``old → new`` and what to do instead.
- A length (``num_train_steps`` / ``num_epochs``) that ends before the step the run reached:
  `ConfigMismatchError`. A longer one continues, with a warning saying how the learning-rate
  schedule changes (a cosine now ends later, so the rate jumps up at the resumed step).
- ``metrics.json`` of this run at this length: `RunComplete` (nothing is run or rewritten).
- A ``metrics.json`` that cannot be read as a metrics file is moved aside to
  ``metrics.json.unreadable`` with a warning; the run goes on.

`record_start` then keeps the record: a new run writes ``run.json``; a resumed one appends an
entry (time, step, the bookkeeping and length keys changed) to its ``resumes``, so the
config the run started with is never overwritten.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import jax
import numpy as np
from absl import logging

from jaxconv import run_files, run_history, runs
from jaxconv.training import config as config_lib
from jaxconv.training import config_keys
from jaxconv.training import optimizer as optimizer_lib
from jaxconv.training.workdir import WorkdirError

UNREADABLE_SUFFIX = ".unreadable"


class ConfigMismatchError(config_lib.ConfigError):
    """The config does not describe the run the workdir holds (one-line message)."""


class RunComplete(Exception):
    """The workdir holds this run, trained and evaluated at this length: nothing is trained.

    "Complete" means the last checkpoint, ``metrics.json`` and (``config.write_plots``) the
    plots are all done. When only the plots are missing (a run stopped while drawing them),
    `plots_pending` is True: ``train.py`` draws them from the last checkpoint and exits 0.
    Otherwise ``train.py`` prints the message and exits with status 0, writing nothing.

    Attributes:
      workdir: the run's workdir.
      metrics: its ``metrics.json`` (step, test accuracy, ...).
      plots_pending: the run's plots were not all written.
    """

    def __init__(self, workdir: str, metrics: dict[str, Any], plots_pending: bool = False):
        self.workdir, self.metrics, self.plots_pending = workdir, metrics, plots_pending
        accuracy = metrics.get("test_accuracy")
        accuracy = f"{100 * accuracy:.2f}%" if isinstance(accuracy, (int, float)) else "n/a"
        where = f"metrics in {os.path.join(workdir, runs.METRICS_FILE)}"
        todo = ("drawing the plots it lacks" if plots_pending else
                "Nothing to do (raise config.num_train_steps to train on, or use a new "
                "--workdir)")
        super().__init__(
            f"{workdir} holds this run, {'trained and evaluated' if plots_pending else 'complete'}"
            f": step {metrics['step']}, test accuracy {accuracy}; {where}. {todo}")


@dataclasses.dataclass(frozen=True)
class Resume:
    """What `check_workdir` found.

    Attributes:
      record: the run's ``run.json``; None for a new run (or a workdir without one).
      changes: the config's differences from the record (None for a new run).
      reached: the newest step the run reached (0 for a new run).
    """

    record: runs.RunInfo | None = None
    changes: config_keys.ConfigChanges | None = None
    reached: int = 0


def _warn(message: str) -> None:
    if jax.process_index() == 0:
        logging.warning("%s", message)


def _read_record(workdir: str) -> runs.RunInfo | None:
    if not run_files.exists(os.path.join(workdir, runs.RUN_FILE)):
        return None
    try:
        return runs.read_run_info(workdir)
    except ValueError as err:
        raise WorkdirError(f"{err}; move it away to start a new run there, or use a new "
                           f"--workdir") from err


def _read_metrics(workdir: str) -> dict[str, Any] | None:
    """``metrics.json``, or None; an unreadable one is moved aside (process 0) with a warning."""
    try:
        return runs.read_metrics(workdir)
    except ValueError as err:
        path = os.path.join(workdir, runs.METRICS_FILE)
        target, n = f"{path}{UNREADABLE_SUFFIX}", 1
        while run_files.exists(target):
            target, n = f"{path}{UNREADABLE_SUFFIX}{n}", n + 1
        if jax.process_index() == 0:
            run_files.rename(path, target)
        _warn(f"{err}: moved it to {target}; the run goes on")
        return None


def _mismatch(workdir: str, changes: config_keys.ConfigChanges) -> ConfigMismatchError:
    return ConfigMismatchError(
        f"{workdir} holds a run trained with another config: {changes.describe('trained')}. "
        f"These keys change what is trained, so the run cannot continue with them; use a new "
        f"--workdir (add --config.init.checkpoint={workdir} to start from this run's "
        f"parameters), or run with the old values")


def _length_note(config: Any, num_train: int, total_old: int, total_new: int,
                 reached: int) -> str:
    """How the run's end and its learning-rate schedule change with its length."""
    spe = config_lib.steps_per_epoch(config, num_train)
    old, new = (optimizer_lib.make_schedule(config.optimizer, steps_per_epoch=spe,
                                            total_steps=t) for t in (total_old, total_new))
    steps = np.arange(reached, min(total_old, total_new) + 1)
    name = config.optimizer.schedule
    if np.allclose(np.asarray(old(steps)), np.asarray(new(steps)), rtol=1e-6, atol=0):
        schedule = f"the {name} learning-rate schedule does not depend on the length"
    else:
        schedule = (f"the {name} schedule now ends at step {total_new} instead of "
                    f"{total_old}: the learning rate at step {reached} is "
                    f"{float(new(reached)):.4g} (it was {float(old(reached)):.4g})")
    return f"the run now ends at step {total_new} instead of {total_old}; {schedule}"


def check_workdir(config: Any, workdir: str) -> Resume:
    """Decides how this config starts on `workdir` (module docstring).

    Args:
      config: the checked config of this invocation.
      workdir: the run's workdir (absolute; locked by the caller).

    Returns:
      A `Resume` (a new run: ``Resume()``).

    Raises:
      WorkdirError: ``run.json`` is malformed.
      ConfigMismatchError: a trained key differs, or the length ends before the step the run
        reached.
      RunComplete: the run is finished at this length.
    """
    record, metrics = _read_record(workdir), _read_metrics(workdir)
    steps = runs.complete_steps(os.path.join(workdir, runs.CHECKPOINTS_DIR))
    if not steps and metrics is None:
        return Resume()
    if record is None:
        _warn(f"{workdir} has checkpoints but no {runs.RUN_FILE}: resuming without comparing "
              f"the config with the one they were trained with")
        return Resume()
    changes = config_keys.compare(record.config, config)
    if changes.trained:
        raise _mismatch(workdir, changes)
    num_train = record.dataset.num_train
    total_old = config_lib.total_steps(record.config, num_train)
    total_new = config_lib.total_steps(config, num_train)
    reached = max(steps + [metrics["step"]] if metrics else steps)
    if total_new < reached:
        raise ConfigMismatchError(
            f"{changes.describe('length') or 'the length'} makes the run {total_new} steps "
            f"long, but the run in {workdir} already reached step {reached}; train at least "
            f"{reached} steps, or use a new --workdir")
    if metrics is not None and metrics["step"] == total_new:
        pending = bool(config.write_plots) and not run_history.is_done(
            workdir, run_history.PLOTS_PHASE, total_new)
        raise RunComplete(workdir, metrics, plots_pending=pending)
    if total_new != total_old:
        _warn(f"{changes.describe('length')}: "
              f"{_length_note(config, num_train, total_old, total_new, reached)}")
    return Resume(record, changes, reached)


def record_start(workdir: str, resume: Resume, config: Any, *, model_kwargs: dict[str, Any],
                 dataset: Any, start_step: int) -> None:
    """Writes ``run.json`` (a new run) or appends this start to its ``resumes`` (process 0).

    Args:
      workdir: the run's workdir.
      resume: what `check_workdir` returned.
      config: the run's config.
      model_kwargs: the model's keyword arguments as built.
      dataset: the dataset's `DatasetInfo`.
      start_step: the step training starts from (after the checkpoint restore).
    """
    if jax.process_index() != 0:
        return
    if resume.record is None:
        plain = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        runs.write_run_info(workdir, model=config.model, model_kwargs=model_kwargs,
                            dataset=dataset, config=plain)
        return
    changed = {**resume.changes.length, **resume.changes.bookkeeping}
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    runs.append_resume(workdir, {"time": now, "step": start_step,
                                 "changed": {k: list(v) for k, v in sorted(changed.items())},
                                 "devices": jax.device_count(),
                                 "processes": jax.process_count()})
