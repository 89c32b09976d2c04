"""The optimizer: SGD with momentum, coupled L2 weight decay, learning-rate schedules.

`make_optimizer` returns one ``optax.chain`` and its learning-rate schedule (the trainer
logs the rate the chain uses, with no second build), every hyperparameter from
``config.optimizer``:

1. ``clip_by_global_norm(grad_clip_norm)`` when it is > 0 (on the raw gradient);
2. ``add_decayed_weights(weight_decay, mask)``: *coupled* L2 decay, ``g + wd * w``, before the
   momentum (as ``torch.optim.SGD(weight_decay=...)`` and Krizhevsky et al. 2012 do; AdamW's
   decoupled decay would come after the scaling). The mask skips parameters whose name (last
   component of `jaxconv.transfer.paths.path_name`) is in ``no_decay_names`` (default:
   biases and normalization scales);
3. ``sgd(schedule, momentum, nesterov)``: ``v <- momentum * v + g; w <- w - lr * v``
   (optax's and PyTorch's form; Nesterov: ``w <- w - lr * (g + momentum * v)``).

Schedules (`make_schedule`), after an optional linear warmup from 0 over ``warmup_epochs``:
``"constant"``; ``"step"``: times ``decay_factor`` (default 1/10) at each of ``decay_epochs``
(counted from step 0, warmup included); ``"cosine"``: half-cosine from the peak down to
``final_lr_fraction * learning_rate`` at the last step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxconv.transfer.paths import leaf_name

SCHEDULES = ("constant", "step", "cosine")  # config.optimizer.schedule values.


def make_schedule(opt: Any, *, steps_per_epoch: float, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step (``config.optimizer``).

    Args:
      opt: ``config.optimizer``.
      steps_per_epoch: optimizer steps per pass over the train split (converts epochs).
      total_steps: training length (the end of the cosine).

    Returns:
      ``step -> learning rate`` (jit-able).

    Raises:
      ValueError: unknown ``opt.schedule``.
    """
    lr = float(opt.learning_rate)
    warmup = round(opt.warmup_epochs * steps_per_epoch)
    if opt.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif opt.schedule == "step":
        boundaries: dict[int, float] = {}
        for epoch in opt.decay_epochs:
            step = round(epoch * steps_per_epoch)
            boundaries[step] = boundaries.get(step, 1.0) * float(opt.decay_factor)
        main = optax.piecewise_constant_schedule(lr, boundaries)
    elif opt.schedule == "cosine":
        cosine = optax.cosine_decay_schedule(
            lr, decay_steps=max(1, total_steps - warmup), alpha=float(opt.final_lr_fraction)
        )

        def main(step):
            return cosine(step - warmup)
    else:
        raise ValueError(f"unknown schedule {opt.schedule!r}; valid: {list(SCHEDULES)}")
    if warmup <= 0:
        return main

    def schedule(step):
        ramp = lr * jnp.asarray(step, jnp.float32) / warmup
        return jnp.where(step < warmup, ramp, main(step))

    return schedule


def decay_mask(no_decay_names: Sequence[str]) -> Callable[[Any], Any]:
    """A mask function for ``optax.add_decayed_weights``: True where a parameter is decayed.

    Args:
      no_decay_names: parameter names (last path component, e.g. ``"bias"``) not to decay.

    Returns:
      ``params -> pytree of bools`` of the same structure.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.training import decay_mask
      >>> params = {"fc": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}
      >>> decay_mask(["bias"])(params)
      {'fc': {'bias': False, 'kernel': True}}
    """
    excluded = frozenset(no_decay_names)

    def mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: leaf_name(path) not in excluded, params
        )

    return mask


def make_optimizer(
    opt: Any, *, steps_per_epoch: float, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain of the module docstring and its schedule, from ``config.optimizer``.

    Args:
      opt: ``config.optimizer`` (learning_rate, momentum, nesterov, weight_decay,
        no_decay_names, schedule, warmup_epochs, decay_epochs, decay_factor,
        final_lr_fraction, grad_clip_norm).
      steps_per_epoch: optimizer steps per pass over the train split.
      total_steps: training length in steps.

    Returns:
      ``(tx, schedule)``: ``optax.chain(clip?, add_decayed_weights?, sgd)`` and the
      `make_schedule` learning rate its SGD uses (``step -> lr``, for logging).
    """
    schedule = make_schedule(opt, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    parts = []
    if opt.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
    if opt.weight_decay > 0:
        parts.append(
            optax.add_decayed_weights(float(opt.weight_decay), mask=decay_mask(opt.no_decay_names))
        )
    momentum = float(opt.momentum) or None
    parts.append(optax.sgd(schedule, momentum=momentum, nesterov=bool(opt.nesterov)))
    return optax.chain(*parts), schedule
