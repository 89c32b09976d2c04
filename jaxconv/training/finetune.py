"""Fine-tuning from config: ``config.init`` and ``config.freeze`` -> `jaxconv.transfer` calls.

Only the glue lives here (config stops at the trainer): read the keys, call the transfer
functions with typed arguments, and turn their errors into a `ConfigError` naming the key.

- `load_pretrained`: ``init.checkpoint`` (a jaxconv training run,
  `jaxconv.transfer.checkpoint_params`) or ``init.torch_weights`` (a torchvision state dict,
  `jaxconv.transfer.torch_params`) into the freshly built model with
  `jaxconv.transfer.load_matching` (a head for another number of classes stays new, as do
  parameters matching ``init.exclude``); returns the report the trainer logs.
- `freeze_optimizer`: `jaxconv.transfer.freeze` with ``freeze.first_layers``,
  ``freeze.patterns`` and ``freeze.lower_lr_scale``.
"""

from __future__ import annotations

import os

import optax
from flax import nnx

from jaxconv import run_files, runs, transfer
from jaxconv.training.config import Config, ConfigError


def _num_seeds_of(path: str) -> int:
    """``config.num_seeds`` of the run that `path` (a workdir, its ``checkpoints`` directory
    or one step directory) belongs to; 1 when no ``run.json`` says otherwise."""
    root = run_files.path(path)
    if root.name.isdigit() and root.parent.name == runs.CHECKPOINTS_DIR:
        root = root.parent.parent
    elif root.name == runs.CHECKPOINTS_DIR:
        root = root.parent
    try:
        return runs.read_run_info(root).config.get("num_seeds", 1)
    except (FileNotFoundError, ValueError):
        return 1


def load_pretrained(model: nnx.Module, config: Config) -> transfer.LoadReport | None:
    """Loads ``config.init``'s parameters into `model` in place; None if ``init`` is unset.

    Args:
      model: the freshly built model.
      config: the run's config.

    Returns:
      The `jaxconv.transfer.LoadReport`, or None.

    Raises:
      ConfigError: the source fits nothing in the model, an ``init.exclude`` pattern matches
        no parameter, or ``torch_weights`` with a model that has no torchvision layout.
      FileNotFoundError / ValueError: the source is missing or unreadable (names the path).
    """
    init = config["init"]
    if init["checkpoint"]:
        key, path = "init.checkpoint", os.path.expanduser(init["checkpoint"])
        if (k := _num_seeds_of(path)) > 1:  # Stacked parameters: which replica is not said.
            raise ConfigError(f"config.init.checkpoint={path!r} is a run of {k} seeds "
                              f"(config.num_seeds={k}): starting from one of its replicas "
                              f"is not supported; start from a 1-seed run")
        source = transfer.checkpoint_params(path)
    elif init["torch_weights"]:
        key, path = "init.torch_weights", os.path.expanduser(init["torch_weights"])
        try:
            source = transfer.torch_params(model, path)
        except ValueError as err:  # No torchvision layout, or keys/shapes that do not fit.
            raise ConfigError(f"config.{key}={path!r} with config.model="
                              f"{config['model']!r}: {err}") from err
    else:
        return None
    try:
        return transfer.load_matching(model, source, exclude=tuple(init["exclude"]))
    except ValueError as err:
        raise ConfigError(f"config.{key}={path!r} (config.init.exclude="
                          f"{tuple(init['exclude'])}): {err}") from err


def freeze_optimizer(tx: optax.GradientTransformation, model: nnx.Module,
                     config: Config) -> optax.GradientTransformation:
    """`tx` with ``config.freeze`` applied (`tx` itself when nothing is frozen or scaled).

    Raises:
      ConfigError: ``first_layers`` beyond the model's layers, or a pattern matching nothing.
    """
    freeze = config["freeze"]
    try:
        return transfer.freeze(tx, model, first_layers=freeze["first_layers"],
                               patterns=tuple(freeze["patterns"]),
                               lower_lr_scale=float(freeze["lower_lr_scale"]))
    except ValueError as err:
        raise ConfigError(f"config.freeze: {err}") from err
