"""Fine-tuning from config: ``config.init`` (pretrained parameters) and ``config.freeze``.

Both act on the freshly built nnx model, before the trainer splits it:

- `load_pretrained` copies parameters from a jaxconv checkpoint (``init.checkpoint``) or a
  torchvision state dict (``init.torch_weights``) where name and shape match
  (`jaxconv.transfer.load_matching`); a head for another number of classes stays freshly
  initialized, as do parameters matching ``init.exclude``. It returns the report the
  trainer logs (loaded / new / unused).
- `freeze_optimizer` wraps the optimizer in `jaxconv.transfer.with_frozen`
  (``optax.multi_transform`` with ``optax.set_to_zero`` for frozen parameters), so frozen
  parameters stay bit-identical and are not weight-decayed; ``lower_lr_scale`` < 1 scales the
  updates of the unfrozen layers below the head.
"""

from __future__ import annotations

import fnmatch
import os

import optax
from flax import nnx

from jaxconv import transfer
from jaxconv.pretrained import convert_state_dict, read_state_dict
from jaxconv.training.config import Config, ConfigError
from jaxconv.training.run_info import restore_params


def load_pretrained(model: nnx.Module, config: Config) -> transfer.LoadReport | None:
    """Loads ``config.init``'s parameters into `model` in place; None if ``init`` is unset.

    Raises:
      ConfigError: the source fits nothing in the model, or ``torch_weights`` with a model
        that has no torchvision layout.
      FileNotFoundError / ValueError: the source is missing or unreadable (names the path).
    """
    init = config["init"]
    if init["checkpoint"]:
        key, path = "init.checkpoint", os.path.expanduser(init["checkpoint"])
        source = transfer.flat_params(restore_params(path))
    elif init["torch_weights"]:
        key, path = "init.torch_weights", os.path.expanduser(init["torch_weights"])
        try:
            params, _ = convert_state_dict(model, read_state_dict(path))
        except ValueError as err:  # No torchvision layout, or keys/shapes that do not fit.
            raise ConfigError(f"config.{key}={path!r} with config.model="
                              f"{config['model']!r}: {err}") from err
        source = {name.replace(".", "/"): value for name, value in params.items()}
    else:
        return None
    exclude = tuple(init["exclude"])
    names = list(transfer.flat_params(nnx.state(model, nnx.Param)))
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"config.init.exclude pattern {pattern!r} matches no parameter; "
                              f"parameters: {names}")
    try:
        return transfer.load_matching(model, source, exclude=exclude)
    except ValueError as err:
        raise ConfigError(f"config.{key}={path!r}: {err}") from err


def freeze_optimizer(tx: optax.GradientTransformation, model: nnx.Module,
                     config: Config) -> optax.GradientTransformation:
    """`tx` with ``config.freeze`` applied (unchanged when nothing is frozen or scaled).

    Raises:
      ConfigError: ``first_layers`` beyond the model's layers, or a pattern matching nothing.
    """
    freeze = config["freeze"]
    scale = float(freeze["lower_lr_scale"])
    if not freeze["first_layers"] and not freeze["patterns"] and scale == 1.0:
        return tx
    try:
        labels = transfer.freeze_labels(model, first_layers=freeze["first_layers"],
                                        patterns=tuple(freeze["patterns"]),
                                        lower_lr=scale < 1.0)
    except ValueError as err:
        raise ConfigError(f"config.freeze: {err}") from err
    return transfer.with_frozen(tx, labels, scale)
