"""The trainer: config checks, optimizer, pure steps, parallelism, checkpoints, logs, loop.

- `jaxconv.training.config`: `validate_config`, `ConfigError`, config -> typed arguments.
- `jaxconv.training.optimizer`: `make_optimizer` (-> ``(tx, schedule)``), `make_schedule`,
  `decay_mask`, `SCHEDULES`.
- `jaxconv.training.state`: `TrainState`, `ModelDef`, `split_model`, `create_train_state`.
- `jaxconv.training.steps`: `train_step`, `eval_step` (pure; distortion on device).
- `jaxconv.training.parallel`: `JitParallel`, `PmapParallel`, `PARALLELISM`.
- `jaxconv.training.distributed`: `initialize_distributed` (``--distributed=auto|on|off``),
  `describe_processes`.
- `jaxconv.training.replicas`: ``config.num_seeds``: the replicas' configs, stacked states,
  vmapped steps, `ReplicaIterator`, per-seed figures.
- `jaxconv.training.checkpoint`: `Checkpointer` (Orbax; state + data iterator, fallback to
  an older step), `CheckpointError`.
- `jaxconv.training.preemption`: SIGTERM / Ctrl-C -> final checkpoint -> `Preempted`.
- `jaxconv.training.workdir`: `WorkdirLock` (one trainer per workdir), `WorkdirError`,
  `WorkdirBusyError`, `WorkdirLockLost`, `DiskFullError`.
- `jaxconv.training.config_keys`: which config keys change what is trained, which are
  bookkeeping; `jaxconv.training.resume`: the config compared on resume,
  `ConfigMismatchError`, `RunComplete`.
- `jaxconv.training.config_file`: what is wrong with a ``--config`` file, in one line.
- `jaxconv.training.finetune`: config.init / config.freeze -> `jaxconv.transfer`.
- `jaxconv.training.logs`: `MetricLogger` (TensorBoard, metrics.json, progress bar).
- `jaxconv.training.job`: `setup(config)` -> `Job` (model, optimizer, steps, iterators),
  `evaluate`.
- `jaxconv.training.hooks`: `Hooks`, the loop's callback points (start, step, save, end,
  close); `HookList`.
- `jaxconv.training.profiling`: `ProfileHook` (``config.profile_steps``: a `jax.profiler`
  trace of a few steps into ``workdir/profile``).
- `jaxconv.training.loop`: `train_and_evaluate(config, workdir, hooks=...)`.
- `jaxconv.training.cli`: ``train.py``'s flag parsing and clean errors.

Run records (``run.json``, checkpoint paths, `restore_params`, `load_trained_model`) are
in `jaxconv.runs`, shared with `jaxconv.predict` and `jaxconv.plots`.
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.training.checkpoint import Checkpointer, CheckpointError
from jaxconv.training.config import ConfigError, validate_config
from jaxconv.training.distributed import describe_processes, initialize_distributed
from jaxconv.training.hooks import HookList, Hooks
from jaxconv.training.job import Job, build_job, build_step_fns, evaluate, setup
from jaxconv.training.logs import NonFiniteLossError
from jaxconv.training.loop import DivergedError, train_and_evaluate
from jaxconv.training.optimizer import decay_mask, make_optimizer, make_schedule
from jaxconv.training.parallel import JitParallel, PmapParallel
from jaxconv.training.preemption import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE, Preempted
from jaxconv.training.profiling import ProfileHook
from jaxconv.training.resume import ConfigMismatchError, RunComplete
from jaxconv.training.state import ModelDef, TrainState, create_train_state, split_model
from jaxconv.training.steps import eval_step, train_step
from jaxconv.training.workdir import (
    DiskFullError,
    WorkdirBusyError,
    WorkdirError,
    WorkdirLock,
    WorkdirLockLost,
)

__all__ = [
    "INTERRUPTED_EXIT_CODE",
    "PREEMPTED_EXIT_CODE",
    "CheckpointError",
    "Checkpointer",
    "ConfigError",
    "ConfigMismatchError",
    "DiskFullError",
    "DivergedError",
    "HookList",
    "Hooks",
    "JitParallel",
    "Job",
    "ModelDef",
    "NonFiniteLossError",
    "PmapParallel",
    "Preempted",
    "ProfileHook",
    "RunComplete",
    "TrainState",
    "WorkdirBusyError",
    "WorkdirError",
    "WorkdirLock",
    "WorkdirLockLost",
    "build_job",
    "build_step_fns",
    "create_train_state",
    "decay_mask",
    "eval_step",
    "evaluate",
    "describe_processes",
    "initialize_distributed",
    "make_optimizer",
    "make_schedule",
    "setup",
    "split_model",
    "train_and_evaluate",
    "train_step",
    "validate_config",
]
