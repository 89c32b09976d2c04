"""Freezing lower layers: an optax transform that gives frozen parameters zero updates.

The lecture's recipe: keep the bottom layers (edges, dots: shared by most image tasks),
replace and retrain the top. Freezing is an optax transform (`optax.multi_transform` with
`optax.set_to_zero()` for frozen parameters), so frozen parameters get exactly zero updates
(no momentum, no weight decay) and stay bit-identical. Layers below the head may instead get
a smaller learning rate ("lower").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import optax
from flax import nnx

from jaxconv.models.base import Classifier
from jaxconv.transfer.paths import check_patterns, flat_params, matches, path_name

FROZEN, LOWER, TRAINABLE = "frozen", "lower", "trainable"


def parameter_layers(model: Classifier) -> list[str]:
    """Names (``stage1/conv``) of the layers that hold parameters, bottom (input) first."""
    return [path_name(name.split(".")) for name, layer in model.named_leaves()
            if jax.tree.leaves(nnx.state(layer, nnx.Param))]


def freeze_labels(model: Classifier, *, first_layers: int = 0, patterns: Sequence[str] = (),
                  lower_lr: bool = False) -> Callable:
    """A ``params -> labels`` function for `optax.multi_transform`.

    Args:
      model: the model whose parameters will be optimised.
      first_layers: freeze this many parameter-holding layers from the bottom (0 = none).
      patterns: also freeze parameters whose path (``stage1/conv/kernel``) matches one of
        these shell patterns (``stage1/*``, ``*conv*``).
      lower_lr: label unfrozen layers below the last one ``"lower"`` (for a smaller learning
        rate); the last (head) layer stays ``"trainable"``.

    Returns:
      A function mapping a parameter pytree to the same pytree of ``"frozen"`` / ``"lower"``
      / ``"trainable"`` labels.

    Raises:
      ValueError: `first_layers` outside ``[0, number of layers]``, or a pattern matching
        nothing.
    """
    layers = parameter_layers(model)
    if not isinstance(first_layers, int) or not 0 <= first_layers <= len(layers):
        raise ValueError(f"freeze first_layers must be in [0, {len(layers)}] (the model's "
                         f"parameter layers: {layers}), got {first_layers!r}")
    check_patterns(list(flat_params(nnx.state(model, nnx.Param))), patterns, "freeze")
    frozen_layers = set(layers[:first_layers])

    def label(name: str) -> str:
        layer = name.rsplit("/", 1)[0]
        if layer in frozen_layers or matches(name, patterns):
            return FROZEN
        return LOWER if lower_lr and layer != layers[-1] else TRAINABLE

    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda p, _: label(path_name(p)), params)

    return labels


def with_frozen(tx: optax.GradientTransformation, labels: Callable,
                lower_lr_scale: float = 1.0) -> optax.GradientTransformation:
    """`tx` for trainable params, zero updates for frozen ones, `tx` scaled for "lower" ones.

    Scaling the final update by `lower_lr_scale` equals scaling that group's learning rate
    for SGD (with momentum and coupled weight decay).

    Args:
      tx: the optimizer of the trainable parameters.
      labels: from `freeze_labels`.
      lower_lr_scale: update scale of the ``"lower"`` parameters, in (0, 1].

    Raises:
      ValueError: `lower_lr_scale` outside (0, 1].
    """
    if not 0 < lower_lr_scale <= 1:
        raise ValueError(f"lower_lr_scale must be in (0, 1], got {lower_lr_scale!r}")
    return optax.multi_transform(
        {TRAINABLE: tx, FROZEN: optax.set_to_zero(),
         LOWER: optax.chain(tx, optax.scale(lower_lr_scale))},
        labels,
    )


def freeze(tx: optax.GradientTransformation, model: Classifier, *, first_layers: int = 0,
           patterns: Sequence[str] = (),
           lower_lr_scale: float = 1.0) -> optax.GradientTransformation:
    """`tx` with the bottom of `model` frozen: `freeze_labels` + `with_frozen` in one call.

    Args:
      tx: the optimizer.
      model: the model it will optimise.
      first_layers, patterns: what to freeze (`freeze_labels`).
      lower_lr_scale: < 1 scales the updates of the unfrozen layers below the head.

    Returns:
      `tx` itself when nothing is frozen or scaled, else the `with_frozen` transform.

    Raises:
      ValueError: as `freeze_labels` and `with_frozen`.
    """
    if not first_layers and not patterns and lower_lr_scale == 1.0:
        return tx
    labels = freeze_labels(model, first_layers=first_layers, patterns=tuple(patterns),
                           lower_lr=lower_lr_scale < 1.0)
    return with_frozen(tx, labels, lower_lr_scale)
