"""The train state (a plain pytree) and the static model definition the steps apply.

An `nnx` model is split once (``nnx.split``) into its static graph and its state; the
parameters live in `TrainState` as a nested dict of arrays (``{"stage1": {"conv": {"kernel":
...}}}``), which optax, Orbax and tests see as an ordinary pytree. `ModelDef` holds the rest:
the graph in train mode (dropout on) and in eval mode (dropout off), and the dropout RNG
streams, which every step reseeds from an explicit key (so no RNG state hides in the model).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (and is checkpointed).

    Attributes:
      step: int32 scalar, optimizer steps taken.
      params: nested dict of parameter arrays (the model's ``nnx.Param``s).
      opt_state: the optax state.
      rng: uint32 ``(2,)`` raw key data (``jax.random.key_data``); step ``s`` uses
        ``fold_in(wrap_key_data(rng), s)`` for its distortions and dropout.
    """

    step: jax.Array
    params: Any
    opt_state: optax.OptState
    rng: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class ModelDef:
    """The static part of a split model.

    Attributes:
      train_graph: ``nnx.GraphDef`` after ``model.train()`` (dropout active).
      eval_graph: ``nnx.GraphDef`` after ``model.eval()``.
      rest: the model's non-parameter state (dropout RNG streams); values are reseeded.
    """

    train_graph: Any
    eval_graph: Any
    rest: Any

    def apply(
        self, params: Any, images: jax.Array, *, train: bool, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Logits of `images` (float ``(B, H, W, C)``) under `params`.

        Args:
          params: nested dict of parameter arrays.
          images: normalized float images.
          train: apply dropout (needs `dropout_key`).
          dropout_key: PRNG key for this call's dropout masks.
        """
        model = nnx.merge(self.train_graph if train else self.eval_graph, params, self.rest,
                          copy=True)
        if train and dropout_key is not None:
            # Each dropout layer draws its own key from `dropout_key` (nnx.reseed's order).
            nnx.reseed(model, dropout=dropout_key)
        return model(images)


def split_model(model: nnx.Module) -> tuple[ModelDef, Any]:
    """Splits `model` into its `ModelDef` and a nested dict of its parameters.

    The model should be built with ``nnx.Rngs(params=..., dropout=...)`` so that its dropout
    layers own ``"dropout"`` streams (which `ModelDef.apply` reseeds).
    """
    model.eval()
    eval_graph, _, _ = nnx.split(model, nnx.Param, ...)
    model.train()
    train_graph, params, rest = nnx.split(model, nnx.Param, ...)
    return ModelDef(train_graph, eval_graph, rest), nnx.to_pure_dict(params)


def root_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(params_key, dropout_init_key, train_rng)`` derived from `seed` by ``fold_in``."""
    root = jax.random.key(seed)
    return tuple(jax.random.fold_in(root, i) for i in range(3))


def create_train_state(params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """A `TrainState` at step 0.

    Args:
      params: nested dict of parameter arrays.
      tx: the optimizer.
      rng: typed PRNG key of the run (stored as raw key data).
    """
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(rng),
    )
