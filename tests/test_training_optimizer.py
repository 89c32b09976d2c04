"""Tests for jaxconv.training.optimizer: decay mask, schedules, coupled decay, clipping."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxconv.training import decay_mask, make_optimizer, make_schedule


def _opt(**overrides) -> ml_collections.ConfigDict:
    opt = ml_collections.ConfigDict(dict(
        learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4,
        no_decay_names=("bias", "scale"), schedule="constant", warmup_epochs=0.0,
        decay_epochs=(30, 60, 80), decay_factor=0.1, final_lr_fraction=0.0, grad_clip_norm=0.0,
    ))
    opt.update(overrides)
    return opt


PARAMS = {
    "stage1": {"conv": {"kernel": jnp.full((3, 3, 1, 2), 2.0), "bias": jnp.full((2,), 3.0)}},
    "norm": {"scale": jnp.full((2,), 4.0)},
    "output": {"kernel": jnp.arange(6.0).reshape(3, 2), "bias": jnp.ones((2,))},
}


def test_mask_excludes_biases_and_scales():
    mask = decay_mask(("bias", "scale"))(PARAMS)
    assert mask == {
        "stage1": {"conv": {"kernel": True, "bias": False}},
        "norm": {"scale": False},
        "output": {"kernel": True, "bias": False},
    }
    assert all(jax.tree.leaves(decay_mask(())(PARAMS)))


def test_coupled_decay_equals_grad_plus_wd_param_by_hand():
    lr, wd, mu = 0.1, 5e-4, 0.9
    tx, _ = make_optimizer(_opt(learning_rate=lr, weight_decay=wd, momentum=mu),
                           steps_per_epoch=10, total_steps=100)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), PARAMS)
    state = tx.init(PARAMS)
    updates, state = tx.update(grads, state, PARAMS)
    # Step 1: v = g + wd * w (decayed leaves only), update = -lr * v.
    k = np.full((3, 3, 1, 2), 2.0)
    np.testing.assert_allclose(updates["stage1"]["conv"]["kernel"], -lr * (0.5 + wd * k),
                               rtol=1e-6)
    np.testing.assert_allclose(updates["stage1"]["conv"]["bias"], -lr * 0.5 * np.ones(2),
                               rtol=1e-6)
    np.testing.assert_allclose(updates["norm"]["scale"], -lr * 0.5 * np.ones(2), rtol=1e-6)
    # Step 2 (same params and grads): v2 = mu * v1 + g + wd * w.
    updates2, _ = tx.update(grads, state, PARAMS)
    w = np.arange(6.0).reshape(3, 2)
    v1 = 0.5 + wd * w
    np.testing.assert_allclose(updates2["output"]["kernel"], -lr * (mu * v1 + v1), rtol=1e-6)


def test_nesterov_and_no_momentum():
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    plain, _ = make_optimizer(_opt(momentum=0.0, weight_decay=0.0), steps_per_epoch=1,
                              total_steps=1)
    u, _ = plain.update(grads, plain.init(PARAMS), PARAMS)
    np.testing.assert_allclose(u["output"]["kernel"], -0.1 * np.ones((3, 2)), rtol=1e-6)
    nest, _ = make_optimizer(_opt(nesterov=True, weight_decay=0.0), steps_per_epoch=1,
                             total_steps=1)
    u, _ = nest.update(grads, nest.init(PARAMS), PARAMS)
    # Nesterov first step: v = g; update = -lr * (g + mu * v) = -lr * 1.9.
    np.testing.assert_allclose(u["output"]["kernel"], -0.19 * np.ones((3, 2)), rtol=1e-6)


def test_step_schedule_divides_by_ten_at_the_given_epochs():
    steps_per_epoch = 12.5
    schedule = make_schedule(_opt(schedule="step", decay_epochs=(2, 4)),
                             steps_per_epoch=steps_per_epoch, total_steps=100)
    lr = [float(schedule(s)) for s in range(60)]
    # Epoch 2 starts at step 25, epoch 4 at step 50.
    np.testing.assert_allclose(lr[:25], 0.1, rtol=1e-6)
    np.testing.assert_allclose(lr[25:50], 0.01, rtol=1e-6)
    np.testing.assert_allclose(lr[50:], 0.001, rtol=1e-6)


def test_cosine_with_linear_warmup():
    schedule = make_schedule(_opt(schedule="cosine", warmup_epochs=1.0, final_lr_fraction=0.1),
                             steps_per_epoch=10, total_steps=110)
    np.testing.assert_allclose(float(schedule(0)), 0.0, atol=1e-8)
    np.testing.assert_allclose(float(schedule(5)), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(10)), 0.1, rtol=1e-6)
    # Half-way through the 100 cosine steps: (1 + 0.1) / 2 of the peak.
    np.testing.assert_allclose(float(schedule(60)), 0.1 * (0.1 + 0.9 * 0.5), rtol=1e-5)
    np.testing.assert_allclose(float(schedule(110)), 0.01, rtol=1e-5)
    constant = make_schedule(_opt(), steps_per_epoch=10, total_steps=100)
    assert float(constant(0)) == float(constant(99)) == pytest.approx(0.1)


def test_global_norm_clipping_comes_first():
    tx, _ = make_optimizer(_opt(grad_clip_norm=1.0, momentum=0.0, weight_decay=0.0),
                           steps_per_epoch=1, total_steps=1)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 10.0), PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    assert float(optax.global_norm(updates)) == pytest.approx(0.1, rel=1e-5)


def test_make_optimizer_returns_the_schedule_its_sgd_uses():
    """Plain SGD, unit gradients: the update at step k is -schedule(k) (warmup + cosine)."""
    opt = _opt(schedule="cosine", warmup_epochs=1.0, momentum=0.0, weight_decay=0.0)
    tx, schedule = make_optimizer(opt, steps_per_epoch=2, total_steps=8)
    reference = make_schedule(opt, steps_per_epoch=2, total_steps=8)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    state = tx.init(PARAMS)
    for k in range(8):
        updates, state = tx.update(grads, state, PARAMS)
        assert float(schedule(k)) == pytest.approx(float(reference(k)), rel=1e-7)
        np.testing.assert_allclose(updates["output"]["bias"], -float(schedule(k)), rtol=1e-6)
