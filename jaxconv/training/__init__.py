"""The trainer: config checks, optimizer, pure steps, parallelism, checkpoints, logs, loop.

- `jaxconv.training.config`: `validate_config`, `ConfigError`, config -> typed arguments.
- `jaxconv.training.optimizer`: `make_optimizer`, `make_schedule`, `decay_mask`.
- `jaxconv.training.state`: `TrainState`, `ModelDef`, `split_model`, `create_train_state`.
- `jaxconv.training.steps`: `train_step`, `eval_step` (pure; distortion on device).
- `jaxconv.training.parallel`: `JitParallel`, `PmapParallel`, `initialize_distributed`.
- `jaxconv.training.checkpoint`: `Checkpointer` (Orbax; state + data iterator, fallback to
  an older step), `CheckpointError`.
- `jaxconv.training.preemption`: SIGTERM -> final checkpoint -> `Preempted`.
- `jaxconv.training.finetune`, `run_info`: config.init / config.freeze; `run.json`.
- `jaxconv.training.logs`: `MetricLogger` (TensorBoard, metrics.json, progress bar).
- `jaxconv.training.loop`: `train_and_evaluate(config, workdir)`.
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.training.checkpoint import Checkpointer, CheckpointError
from jaxconv.training.config import ConfigError, validate_config
from jaxconv.training.logs import NonFiniteLossError
from jaxconv.training.loop import build_step_fns, setup, train_and_evaluate
from jaxconv.training.optimizer import decay_mask, make_optimizer, make_schedule
from jaxconv.training.parallel import JitParallel, PmapParallel, initialize_distributed
from jaxconv.training.preemption import PREEMPTED_EXIT_CODE, Preempted
from jaxconv.training.state import ModelDef, TrainState, create_train_state, split_model
from jaxconv.training.steps import eval_step, train_step

__all__ = [
    "PREEMPTED_EXIT_CODE",
    "CheckpointError",
    "Checkpointer",
    "ConfigError",
    "JitParallel",
    "ModelDef",
    "NonFiniteLossError",
    "PmapParallel",
    "Preempted",
    "TrainState",
    "build_step_fns",
    "create_train_state",
    "decay_mask",
    "eval_step",
    "initialize_distributed",
    "make_optimizer",
    "make_schedule",
    "setup",
    "split_model",
    "train_and_evaluate",
    "train_step",
    "validate_config",
]
