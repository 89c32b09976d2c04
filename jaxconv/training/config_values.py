"""Value checks that hold for every key of a config: finite numbers, integer bounds, and the
model's keyword arguments (types, sizes, probabilities).

`validate_config` (`jaxconv.training.config`) runs these after the schema's type and range
checks, so that no value that makes a wrong run (a NaN learning rate, a dropout of 1.0, a
seed JAX cannot hold) gets as far as the first step. Each raises the one-line `ConfigError`
naming the dotted key and the value.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator, Mapping
from typing import Any

import ml_collections

MAX_INT = 2**31 - 1  # Steps, sizes and seeds live in int32 on the device.
MAX_WORKERS = 256  # grain worker processes.
# Model arguments that are sizes (each int, or each element of a tuple, >= 1; None: off).
MODEL_SIZES = ("num_classes", "in_channels", "input_size", "input_shape", "features",
               "kernel_size", "pool_window", "hidden", "depth", "channels", "lcn_kernel_size")
# Model arguments that are probabilities of dropping a unit: in [0, 1).
MODEL_PROBABILITIES = ("dropout",)


_NUMBERS = (int, float)
# Tuple-valued keys -> the type of each element (the other tuple keys have their own checks
# in jaxconv.training.config, with messages that say what the elements mean).
ELEMENTS: dict[str, tuple[type, ...]] = {"distortion.scale": _NUMBERS, "init.exclude": (str,)}


class ValueCheckError(ValueError):
    """A value check failed; `jaxconv.training.config` re-raises it as `ConfigError`."""


def _is_dict(node: Any) -> bool:
    return isinstance(node, (Mapping, ml_collections.ConfigDict))


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of every leaf of a nested config, tuple elements as
    ``key[i]``."""
    for name in node.keys():
        value, key = node[name], f"{prefix}{name}"
        if _is_dict(value):
            yield from leaves(value, f"{key}.")
        elif isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                yield f"{key}[{i}]", item
        else:
            yield key, value


def _fail(key: str, value: Any, why: str) -> ValueCheckError:
    return ValueCheckError(f"config.{key}={value!r} {why}")


def check_elements(config: Any) -> None:
    """Each element of a tuple-valued key (`ELEMENTS`) has its type (a command line such as
    ``--config.distortion.scale=(0.5,x)`` can give a tuple of one string).

    Raises:
      ValueCheckError: names the key, the element and the type expected.
    """
    for key, types in ELEMENTS.items():
        node = config
        for part in key.split("."):
            node = node[part]
        for item in node:
            if isinstance(item, bool) or not isinstance(item, types):
                names = " or ".join(t.__name__ for t in types)
                raise _fail(key, tuple(node), f"has the element {item!r}; expected {names} "
                                              f"elements")


def check_numbers(config: Any) -> None:
    """Every float is finite; every int is within ``[-MAX_INT, MAX_INT]``.

    Raises:
      ValueCheckError: names the first key (``key[i]`` for a tuple element) that is not.
    """
    for key, value in leaves(config):
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(key, value, "is not a finite number")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise _fail(key, value, f"is too large (at most {MAX_INT:,} in absolute value)")


def check_bounds(config: Any) -> None:
    """Ranges of keys whose schema range allows nonsense: seed, workers, the guard, the
    distortions.

    Raises:
      ValueCheckError: names the key, the value and the valid range.
    """
    rules = (("seed", 0, MAX_INT), ("worker_count", 0, MAX_WORKERS),
             ("divergence_factor", 0, math.inf),
             ("distortion.rotation_degrees", 0, 180), ("distortion.translate", 0, math.inf),
             ("distortion.brightness", 0, 1), ("distortion.crop_padding", 0, math.inf),
             ("optimizer.decay_factor", 0, math.inf))
    for key, low, high in rules:
        node = config
        for part in key.split("."):
            node = node[part]
        if not low <= node <= high:
            raise _fail(key, node, f"must be in [{low}, {high}]")
    if not config["optimizer"]["learning_rate"] > 0:
        raise _fail("optimizer.learning_rate", config["optimizer"]["learning_rate"],
                    "must be > 0 (0 trains nothing)")


def _expected_type(default: Any) -> tuple[type, ...] | None:
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (tuple, list)):
        return (tuple, list)
    return (type(default),)


def _sizes(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def check_model_kwargs(kwargs: Mapping[str, Any], signature: inspect.Signature) -> None:
    """``config.model_kwargs`` against the model's signature: each value has its default's
    type, sizes (`MODEL_SIZES`) are integers >= 1, probabilities (`MODEL_PROBABILITIES`) are
    in [0, 1).

    Raises:
      ValueCheckError: names ``model_kwargs.<name>``, the value and what is expected.
    """
    for name, value in kwargs.items():
        key = f"model_kwargs.{name}"
        param = signature.parameters.get(name)
        types = _expected_type(param.default) if param is not None else None
        wrong_bool = isinstance(value, bool) and types is not None and bool not in types
        if types is not None and (wrong_bool or not isinstance(value, types)):
            names = " or ".join(t.__name__ for t in types)
            raise _fail(key, value, f"has type {type(value).__name__}; expected {names} "
                                    f"(like the default {param.default!r})")
        if name in MODEL_SIZES:
            for size in _sizes(value):
                if size is None:
                    continue
                if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                    raise _fail(key, value, "must be a size: integers >= 1")
        if name in MODEL_PROBABILITIES:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 <= value < 1):
                raise _fail(key, value, "must be a probability in [0, 1) (1 drops every unit)")
