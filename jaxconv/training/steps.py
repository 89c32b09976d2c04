"""Pure train and eval steps over pytrees: ``(state, batch) -> (state, metrics)`` / metrics.

Both take uint8 images from the host and do all image math on device: the train step
distorts (`jaxconv.data.distort`, per-example keys) and normalizes, the eval step only
normalizes. The fixed dependencies (model definition, optimizer, schedule, distortion,
dataset mean/std, collective axis) are keyword arguments, bound by the closures of
`jaxconv.training.job.build_step_fns` (closures rather than ``functools.partial``, so that
``chex.assert_max_traces`` can wrap them); `jaxconv.training.parallel` jits the result once,
donating the state.

Under ``jax.jit`` the batch is one global array (sharded over the mesh) and means are global.
Under ``jax.pmap`` (``axis_name`` set) each device sees its slice: gradients and metrics are
``lax.pmean``-ed, eval sums ``lax.psum``-ed, and each device offsets its examples' distortion
keys by its position in the global batch, so distortions equal the single-device run's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxconv.data import Distortion, distort_and_normalize, normalize
from jaxconv.training.state import ModelDef, TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# fold_in tags of the per-step key: one independent stream per use.
_DISTORT, _DROPOUT = 0, 1


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy, ``(B, classes), (B,) int -> (B,)`` float32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def _device_position(axis_name: str | None) -> jax.Array | int:
    return 0 if axis_name is None else jax.lax.axis_index(axis_name)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    model: ModelDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    distortion: Distortion,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    axis_name: str | None = None,
) -> tuple[TrainState, Metrics]:
    """One SGD step on a batch.

    Args:
      state: the current `TrainState`.
      batch: ``{"image": uint8 (B, H, W, C), "label": int32 (B,)}``.
      model: the split model.
      tx: the optimizer (`jaxconv.training.make_optimizer`).
      schedule: its learning-rate schedule (`make_optimizer` returns it with `tx`; for the
        logged ``learning_rate``).
      distortion: random distortion of the training images.
      mean: per-channel mean for `jaxconv.data.normalize`.
      std: per-channel standard deviation.
      axis_name: the pmap axis name, or None under jit.

    Returns:
      ``(new_state, metrics)``; metrics are float32 scalars: ``loss`` and ``accuracy`` (batch
      means before the update), ``learning_rate`` used, ``grad_norm`` (global L2 norm of the
      loss gradient, before clipping and decay) and ``param_norm`` (after the update).
    """
    key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    position = _device_position(axis_name)
    local_batch = batch["image"].shape[0]
    images = distort_and_normalize(
        jax.random.fold_in(key, _DISTORT), batch["image"], distortion, mean, std,
        index_offset=position * local_batch,
    )
    dropout_key = jax.random.fold_in(jax.random.fold_in(key, _DROPOUT), position)

    def loss_fn(params):
        logits = model.apply(params, images, train=True, dropout_key=dropout_key)
        return jnp.mean(cross_entropy(logits, batch["label"])), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    if axis_name is not None:
        grads, loss, accuracy = jax.lax.pmean((grads, loss, accuracy), axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": loss,
        "accuracy": accuracy,
        "learning_rate": jnp.asarray(schedule(state.step), jnp.float32),
        "grad_norm": optax.global_norm(grads),
        "param_norm": optax.global_norm(params),
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, metrics


def eval_step(
    state: TrainState,
    batch: Batch,
    *,
    model: ModelDef,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    axis_name: str | None = None,
) -> Metrics:
    """Summed loss and correct predictions over the real (unpadded) examples of a batch.

    Args:
      state: the current `TrainState`.
      batch: ``{"image": uint8 (B, H, W, C), "label": int32 (B,), "mask": bool (B,)}``.
      model: the split model (evaluated in eval mode: no dropout).
      mean: per-channel mean for `jaxconv.data.normalize`.
      std: per-channel standard deviation.
      axis_name: the pmap axis name, or None under jit.

    Returns:
      float32 scalars ``loss_sum``, ``correct``, ``count`` (sums over the global batch).
    """
    images = normalize(batch["image"], mean, std)
    logits = model.apply(state.params, images, train=False)
    mask = batch["mask"].astype(jnp.float32)
    metrics = {
        "loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "count": jnp.sum(mask),
    }
    if axis_name is not None:
        metrics = jax.lax.psum(metrics, axis_name)
    return metrics


def summarize_eval(totals: dict[str, Any]) -> dict[str, float]:
    """``{"loss", "accuracy", "count"}`` from summed `eval_step` metrics (host floats)."""
    count = float(totals["count"])
    return {
        "loss": float(totals["loss_sum"]) / max(count, 1.0),
        "accuracy": float(totals["correct"]) / max(count, 1.0),
        "count": count,
    }
