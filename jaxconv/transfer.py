"""Transfer learning: load matching pretrained parameters, freeze lower layers with optax.

The lecture's recipe: keep the bottom layers (edges, dots: shared by most image tasks), replace
and retrain the top. Freezing is an optax transform (`optax.multi_transform` with
`optax.set_to_zero()` for frozen parameters), so frozen parameters get exactly zero updates — no
momentum, no weight decay — and stay bit-identical.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
import optax
from flax import nnx

from jaxconv.models.base import Classifier

FROZEN, LOWER, TRAINABLE = "frozen", "lower", "trainable"


def path_name(path) -> str:
    """`stage1/conv/kernel` from a pytree key path (nnx `.value` attribute keys dropped)."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey) and key.name != "value":
            parts.append(key.name)
    return "/".join(parts)


def flat_params(tree) -> dict[str, jax.Array]:
    """`{"stage1/conv/kernel": array, ...}` from an nnx `State` or nested dict of parameters."""
    return {path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def parameter_layers(model: Classifier) -> list[str]:
    """Names (`stage1/conv`) of the layers that hold parameters, bottom (input) first."""
    return [name.replace(".", "/") for name, layer in model.named_leaves()
            if jax.tree.leaves(nnx.state(layer, nnx.Param))]


def freeze_labels(model: Classifier, *, first_layers: int = 0, patterns: Sequence[str] = (),
                  lower_lr: bool = False) -> Callable:
    """A `params -> labels` function for `optax.multi_transform`.

    Args:
      model: the model whose parameters will be optimised.
      first_layers: freeze this many parameter-holding layers from the bottom (0 = none).
      patterns: also freeze parameters whose path (`stage1/conv/kernel`) matches one of these
        shell patterns (`stage1/*`, `*conv*`).
      lower_lr: label unfrozen layers below the last one `"lower"` (for a smaller learning
        rate); the last (head) layer stays `"trainable"`.

    Returns:
      A function mapping a parameter pytree to the same pytree of `"frozen"` / `"lower"` /
      `"trainable"` labels.

    Raises:
      ValueError: `first_layers` outside `[0, number of layers]`, or a pattern matching nothing.
    """
    layers = parameter_layers(model)
    if not isinstance(first_layers, int) or not 0 <= first_layers <= len(layers):
        raise ValueError(f"freeze first_layers must be in [0, {len(layers)}] (the model's "
                         f"parameter layers: {layers}), got {first_layers!r}")
    names = list(flat_params(nnx.state(model, nnx.Param)))
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ValueError(f"freeze pattern {pattern!r} matches no parameter; parameters: "
                             f"{names}")
    frozen_layers = set(layers[:first_layers])

    def label(name: str) -> str:
        layer = name.rsplit("/", 1)[0]
        if layer in frozen_layers or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return FROZEN
        return LOWER if lower_lr and layer != layers[-1] else TRAINABLE

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda p, _: label(path_name(p)), params)

    return labels


def with_frozen(tx: optax.GradientTransformation, labels: Callable,
                lower_lr_scale: float = 1.0) -> optax.GradientTransformation:
    """`tx` for trainable params, zero updates for frozen ones, `tx` scaled for "lower" ones.

    Scaling the final update by `lower_lr_scale` equals scaling that group's learning rate for
    SGD (with momentum and coupled weight decay).
    """
    if not 0 < lower_lr_scale <= 1:
        raise ValueError(f"lower_lr_scale must be in (0, 1], got {lower_lr_scale!r}")
    return optax.multi_transform(
        {TRAINABLE: tx, FROZEN: optax.set_to_zero(),
         LOWER: optax.chain(tx, optax.scale(lower_lr_scale))},
        labels,
    )


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Which parameters came from the pretrained source and which kept their fresh init."""

    loaded: tuple[str, ...]
    new: tuple[str, ...]  # absent from the source, or of another shape (a replaced head)
    unused: tuple[str, ...]  # in the source but not in the model

    def __str__(self) -> str:
        return (f"loaded {len(self.loaded)} pretrained parameters; new (freshly initialised): "
                f"{list(self.new) or 'none'}; unused from the source: "
                f"{list(self.unused) or 'none'}")


def load_matching(model: nnx.Module, source: Mapping[str, np.ndarray] | nnx.State,
                  *, strict_shapes: Sequence[str] = (), exclude: Sequence[str] = ()) -> LoadReport:
    """Copies pretrained parameters into `model` where names and shapes match, in place.

    A parameter whose shape differs (e.g. the classifier head for another number of classes)
    keeps its fresh initialisation and is reported as new.

    Args:
      model: the freshly built model (updated in place).
      source: `{"stage1/conv/kernel": array}` or an nnx parameter `State` / nested dict.
      strict_shapes: parameter names that must load (a mismatch raises).
      exclude: shell patterns (`output/*`): matching parameters are not loaded even when
        they fit (a new head for new classes of the same count); reported as new.

    Raises:
      ValueError: nothing matched at all (wrong model for this checkpoint), or a `strict_shapes`
        parameter could not be loaded.
    """
    is_flat = isinstance(source, Mapping) and all(hasattr(v, "shape") for v in source.values())
    src = dict(source) if is_flat else flat_params(source)
    state = nnx.state(model, nnx.Param)
    target = flat_params(state)
    loaded, new = [], []
    values = {}
    for name, leaf in target.items():
        skip = any(fnmatch.fnmatchcase(name, p) for p in exclude)
        value = None if skip else src.get(name)
        if value is not None and tuple(np.shape(value)) == tuple(leaf.shape):
            values[name] = jax.numpy.asarray(value, leaf.dtype)
            loaded.append(name)
        else:
            if name in strict_shapes and not skip:
                got = None if value is None else np.shape(value)
                raise ValueError(f"parameter {name!r} could not be loaded: model shape "
                                 f"{leaf.shape}, source {got}")
            values[name] = leaf
            new.append(name)
    if not loaded:
        raise ValueError(f"no pretrained parameter matches this model: source has "
                         f"{sorted(src)[:8]}..., model has {sorted(target)[:8]}...")
    updated = jax.tree_util.tree_map_with_path(lambda p, _: values[path_name(p)], state)
    nnx.update(model, updated)
    return LoadReport(tuple(loaded), tuple(new), tuple(sorted(set(src) - set(target))))
