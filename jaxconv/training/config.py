"""Checking a training config and deriving what the trainer needs from it.

`validate_config` checks every key of a config shaped like ``configs/default.py`` and raises
one `ConfigError` whose one-line message names the key, the bad value and the valid choices:
``train.py`` prints that line and exits, with no traceback. The trainer calls it once per
run, before anything is written; `check_batch_split` adds the one check that needs the
devices. The helpers turn the checked config into typed arguments (model kwargs, step
counts; the input pipeline's crop and distortion are `jaxconv.runs.make_crop` and
`make_distortion`, shared with the readers of a finished run), so that nothing below the
trainer ever sees a ConfigDict. The valid choices are the owners' constants
(`jaxconv.training.optimizer.SCHEDULES`, `jaxconv.training.parallel.PARALLELISM`, ...).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxconv import runs
from jaxconv.data import DATASETS, DatasetInfo
from jaxconv.data.distortions import PAD_MODES
from jaxconv.data.transforms import TRAIN_MODES
from jaxconv.models import MODELS
from jaxconv.training import config_values
from jaxconv.training.optimizer import SCHEDULES
from jaxconv.training.parallel import PARALLELISM

# An ml_collections.ConfigDict shaped like configs/default.py (or nested mappings).
Config = Any

_NUMBER = (int, float)
# Every key the trainer reads: dotted name -> accepted Python types (model_kwargs is checked
# against the model's signature instead). bool is refused where a number is expected.
SCHEMA: dict[str, tuple[type, ...]] = {
    "seed": (int,),
    "num_seeds": (int,),
    "dataset": (str,),
    "data_dir": (str,),
    "image_size": (int,),
    "train_crop": (str,),
    "crop_resize_size": (int,),
    "worker_count": (int,),
    "classes": (tuple, list),
    "distortion.rotation_degrees": _NUMBER,
    "distortion.translate": _NUMBER,
    "distortion.scale": (tuple, list),
    "distortion.horizontal_flip": (bool,),
    "distortion.crop_padding": (int,),
    "distortion.crop_padding_mode": (str,),
    "distortion.brightness": _NUMBER,
    "distortion.contrast": _NUMBER,
    "model": (str,),
    "compute_dtype": (str,),
    "batch_size": (int,),
    "eval_batch_size": (int,),
    "num_epochs": _NUMBER,
    "num_train_steps": (int,),
    "optimizer.learning_rate": _NUMBER,
    "optimizer.momentum": _NUMBER,
    "optimizer.nesterov": (bool,),
    "optimizer.weight_decay": _NUMBER,
    "optimizer.no_decay_names": (tuple, list),
    "optimizer.schedule": (str,),
    "optimizer.warmup_epochs": _NUMBER,
    "optimizer.decay_epochs": (tuple, list),
    "optimizer.decay_factor": _NUMBER,
    "optimizer.final_lr_fraction": _NUMBER,
    "optimizer.grad_clip_norm": _NUMBER,
    "init.checkpoint": (str,),
    "init.torch_weights": (str,),
    "init.exclude": (tuple, list),
    "freeze.first_layers": (int,),
    "freeze.patterns": (tuple, list),
    "freeze.lower_lr_scale": _NUMBER,
    "parallelism": (str,),
    "log_every_steps": (int,),
    "eval_every_steps": (int,),
    "checkpoint_every_steps": (int,),
    "keep_checkpoints": (int,),
    "divergence_factor": _NUMBER,
    "profile_steps": (tuple, list),
    "progress_bar": (bool,),
    "write_plots": (bool,),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": tuple(sorted(DATASETS)),
    "model": tuple(sorted(MODELS)),
    "train_crop": TRAIN_MODES,
    "distortion.crop_padding_mode": PAD_MODES,
    "optimizer.schedule": SCHEDULES,
    "parallelism": tuple(PARALLELISM),
}
# Model arguments the trainer fills in from the dataset when the config leaves them out.
_DERIVED_MODEL_ARGS = ("num_classes", "input_shape", "in_channels", "input_size")
# config.compute_dtype's choices. Parameters are always float32 (master weights): float16
# compute would also need loss scaling, which the trainer does not do.
COMPUTE_DTYPES = ("float32", "bfloat16")
PARAM_DTYPE = "float32"
# Model arguments set from config.compute_dtype, never from config.model_kwargs.
_PRECISION_ARGS = ("dtype", "param_dtype")


class ConfigError(ValueError):
    """A config value is missing, of the wrong type, or out of range (one-line message)."""


def _is_dict(node: Any) -> bool:
    return isinstance(node, (Mapping, ml_collections.ConfigDict))


def _get(config: Config, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        if not _is_dict(node) or part not in node:
            raise ConfigError(f"config.{dotted} is missing (declare it as configs/default.py does)")
        node = node[part]
    return node


def _fail(key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"config.{key}={value!r} {why}")


def _check_types(config: Config) -> None:
    for key, types in SCHEMA.items():
        value = _get(config, key)
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise _fail(key, value, f"has type {type(value).__name__}; expected {names}")
    for key, choices in _CHOICES.items():
        if _get(config, key) not in choices:
            raise _fail(key, _get(config, key), f"is not valid; choose from {list(choices)}")
    extra = [k for k in config if k not in {s.split(".")[0] for s in SCHEMA} | {"model_kwargs"}]
    if extra:
        raise ConfigError(f"config.{extra[0]} is not a config key; see configs/default.py")


def _check_ranges(config: Config, device_count: int | None) -> None:
    positive = ("num_seeds", "batch_size", "eval_batch_size", "log_every_steps",
                "checkpoint_every_steps", "keep_checkpoints")
    for key in positive:
        if _get(config, key) < 1:
            raise _fail(key, _get(config, key), "must be >= 1")
    if device_count is not None:
        check_batch_split(config, device_count)
    nonnegative = ("image_size", "crop_resize_size", "worker_count", "eval_every_steps",
                   "optimizer.learning_rate", "optimizer.weight_decay",
                   "optimizer.warmup_epochs", "optimizer.grad_clip_norm")
    for key in nonnegative:
        if _get(config, key) < 0:
            raise _fail(key, _get(config, key), "must be >= 0")
    if config["num_train_steps"] <= 0 and not config["num_epochs"] > 0:
        raise _fail("num_epochs", config["num_epochs"], "must be > 0 (or set num_train_steps > 0)")
    opt = config["optimizer"]
    if not 0 <= opt["momentum"] < 1:
        raise _fail("optimizer.momentum", opt["momentum"], "must be in [0, 1)")
    if opt["nesterov"] and not opt["momentum"]:
        raise _fail("optimizer.nesterov", True, "needs optimizer.momentum > 0")
    if not 0 <= opt["final_lr_fraction"] <= 1:
        raise _fail("optimizer.final_lr_fraction", opt["final_lr_fraction"], "must be in [0, 1]")
    if opt["decay_factor"] <= 0:
        raise _fail("optimizer.decay_factor", opt["decay_factor"], "must be > 0")
    epochs = list(opt["decay_epochs"])
    if any(not isinstance(e, _NUMBER) or e <= 0 for e in epochs) or epochs != sorted(epochs):
        raise _fail("optimizer.decay_epochs", tuple(epochs), "must be increasing positive epochs")
    if not all(isinstance(n, str) for n in opt["no_decay_names"]):
        raise _fail("optimizer.no_decay_names", tuple(opt["no_decay_names"]),
                    "must be parameter names (strings)")
    _check_transfer(config)
    _check_precision_and_profile(config)
    _check_seeds(config)


def _check_seeds(config: Config) -> None:
    """``num_seeds`` > 1: jit parallelism only, and every replica's seed fits int32."""
    k = config["num_seeds"]
    if k > 1 and config["parallelism"] != "jit":
        raise _fail("num_seeds", k, f"needs config.parallelism='jit' (several seeds in one "
                                    f"program are not offered with "
                                    f"{config['parallelism']!r}); or set num_seeds=1")
    if config["seed"] + k - 1 > config_values.MAX_INT:
        raise _fail("num_seeds", k, f"with config.seed={config['seed']} takes seeds above "
                                    f"{config_values.MAX_INT:,}; lower config.seed")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_precision_and_profile(config: Config) -> None:
    """``compute_dtype`` and ``profile_steps``."""
    dtype = config["compute_dtype"]
    if dtype not in COMPUTE_DTYPES:
        hint = (" (float16 would need loss scaling, which the trainer does not do)"
                if dtype == "float16" else "")
        raise _fail("compute_dtype", dtype, f"is not valid; choose from {list(COMPUTE_DTYPES)}"
                                            f"{hint}")
    steps = tuple(config["profile_steps"])
    if steps and not (len(steps) == 2 and all(_is_int(s) for s in steps)
                      and 0 <= steps[0] < steps[1]):
        raise _fail("profile_steps", steps,
                    "must be () (off) or (start, stop): integers with 0 <= start < stop")


def _check_transfer(config: Config) -> None:
    """``classes``, ``init`` and ``freeze`` (the fine-tuning keys)."""
    classes = tuple(config["classes"])
    if classes and (not all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
                    or len(set(classes)) != len(classes) or len(classes) < 2):
        raise _fail("classes", classes, "must be () or at least 2 distinct integer labels")
    init = config["init"]
    if init["checkpoint"] and init["torch_weights"]:
        raise _fail("init.torch_weights", init["torch_weights"],
                    "cannot be combined with config.init.checkpoint; set one of them")
    freeze = config["freeze"]
    if freeze["first_layers"] < 0:
        raise _fail("freeze.first_layers", freeze["first_layers"], "must be >= 0")
    if not all(isinstance(p, str) for p in freeze["patterns"]):
        raise _fail("freeze.patterns", tuple(freeze["patterns"]),
                    "must be shell patterns over parameter paths (strings)")
    if not 0 < freeze["lower_lr_scale"] <= 1:
        raise _fail("freeze.lower_lr_scale", freeze["lower_lr_scale"], "must be in (0, 1]")


def _check_model_kwargs(config: Config) -> None:
    kwargs = config.get("model_kwargs", {})
    if not _is_dict(kwargs):
        raise _fail("model_kwargs", kwargs, "must be a ConfigDict of model arguments")
    valid = sorted(_model_args(config["model"]))
    config_values.check_model_kwargs(
        {k: v for k, v in kwargs.items() if k in valid},
        inspect.signature(MODELS[config["model"]].__init__))
    for name in kwargs:
        if name in _PRECISION_ARGS:
            raise ConfigError(f"config.model_kwargs.{name} is set by the trainer: use "
                              f"config.compute_dtype (one of {list(COMPUTE_DTYPES)}; "
                              f"parameters stay {PARAM_DTYPE})")
        if name not in valid:
            raise ConfigError(
                f"config.model_kwargs.{name} is not an argument of model {config['model']!r}; "
                f"valid: {valid}"
            )


def _model_args(model: str) -> list[str]:
    """Keyword arguments of the model class registered as `model` (without rngs)."""
    params = inspect.signature(MODELS[model].__init__).parameters
    return [p for p in params if p not in ("self", "rngs")]


def check_batch_split(config: Config, device_count: int) -> None:
    """Checks that the global batch sizes split evenly over `device_count` devices.

    Raises:
      ConfigError: ``batch_size`` or ``eval_batch_size`` is not a multiple of it.
    """
    for key in ("batch_size", "eval_batch_size"):
        if _get(config, key) % device_count:
            raise _fail(key, _get(config, key),
                        f"must be divisible by the number of devices ({device_count})")


def validate_config(config: Config, *, device_count: int | None = None) -> None:
    """Checks every key the trainer reads.

    Args:
      config: a ConfigDict (or mapping) shaped like ``configs/default.py``.
      device_count: devices over all processes (the global batch sizes must split over
        them, `check_batch_split`); None skips that check.

    Raises:
      ConfigError: a key is missing, unknown, of the wrong type, not a valid choice or out of
        range; the one-line message names the key and value (and the valid choices).
    """
    _check_types(config)
    try:
        config_values.check_elements(config)
        config_values.check_numbers(config)  # Before the ranges: NaN passes every comparison.
        _check_ranges(config, device_count)
        config_values.check_bounds(config)
        _check_model_kwargs(config)
        runs.make_distortion(config)
    except ValueError as err:
        raise err if isinstance(err, ConfigError) else ConfigError(str(err)) from err


def model_kwargs(config: Config, info: DatasetInfo) -> dict[str, Any]:
    """Keyword arguments for `jaxconv.models.create_model`.

    ``config.model_kwargs``, plus ``num_classes`` and the input-shape arguments the model
    accepts (``input_shape``, ``in_channels``, ``input_size``), taken from `info` unless the
    config sets them, plus ``dtype=config.compute_dtype`` and ``param_dtype="float32"``
    (mixed precision: the layers compute in ``dtype``, the parameters stay float32).
    """
    kwargs = {k: v for k, v in dict(config.get("model_kwargs", {})).items()}
    params = _model_args(config["model"])
    height, _, channels = info.image_shape
    derived = dict(num_classes=info.num_classes, input_shape=tuple(info.image_shape),
                   in_channels=channels, input_size=height)
    for name in _DERIVED_MODEL_ARGS:
        if name in params and name not in kwargs:
            kwargs[name] = derived[name]
    kwargs.update(dtype=config["compute_dtype"], param_dtype=PARAM_DTYPE)
    return kwargs


def steps_per_epoch(config: Config, num_train: int) -> float:
    """Optimizer steps per pass over the train split (may be fractional)."""
    return num_train / config["batch_size"]


def total_steps(config: Config, num_train: int) -> int:
    """``num_train_steps`` if > 0, else ``num_epochs`` epochs rounded up to whole steps."""
    if config["num_train_steps"] > 0:
        return int(config["num_train_steps"])
    return max(1, math.ceil(config["num_epochs"] * steps_per_epoch(config, num_train) - 1e-9))
