"""bfloat16 inputs: every op returns bfloat16 within bfloat16 rounding of the float32 op.

LCN, LRN, Lp / feature pooling and average pooling sum (and raise to powers) in float32 and
round once at the end, so their bfloat16 output must be the float32 result of the same
(bf16-rounded) input, rounded once: within half a bf16 step (relative 2**-8) of its magnitude,
plus 1e-6 of the largest output for values that round to 0. Summing in bfloat16 instead fails
this (a Gaussian-L2 pool summed in bf16 was off by 0.6 %, above 2**-8 = 0.39 %). Gradients
stay finite on the property-test families (constants from 1e-30 to 1e30, scaled normals, a
spike), as in tests/reliability/test_numerics.py, under both lowerings.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import functional as F

ROUNDING = 2.0**-8  # one rounding to bfloat16 (8-bit significand), relative

OPS = {
    "conv2d": lambda x: F.conv2d(x, jnp.full((3, 3, x.shape[-1], 4), 0.1, x.dtype), stride=2),
    "locally_connected2d": lambda x: F.locally_connected2d(
        x, jnp.full((5, 5, 3, 3, x.shape[-1], 2), 0.1, x.dtype), kernel_size=3,
        padding="VALID", stride=2),
    "max_pool": lambda x: F.max_pool(x, 3, 2),
    "avg_pool": lambda x: F.avg_pool(x, 2),
    "lp_pool_l2": lambda x: F.lp_pool(x, 2.0, 2),
    "lp_pool_gaussian_l2": lambda x: F.lp_pool(x, 2.0, 3, 1, padding="SAME",
                                               weights=F.gaussian_window(3)),
    "lp_pool_p3": lambda x: F.lp_pool(x, 3.0, 2),
    "feature_pool": lambda x: F.feature_pool(x, 2),
    "lcn": lambda x: F.local_contrast_norm(x, 5),
    "lrn": lambda x: F.local_response_norm(x, 5, alpha=1e-2),
}


@pytest.fixture(params=["xla", "cpu"])
def lowering(request):
    with F.lowering(request.param):
        yield request.param


@pytest.mark.parametrize("name", sorted(OPS))
def test_bfloat16_output_within_rounding_of_float32(name, lowering):
    op = jax.jit(OPS[name])
    x32 = jax.random.normal(jax.random.key(0), (2, 11, 11, 4), jnp.float32) * 3.0
    x16 = x32.astype(jnp.bfloat16)
    ref = op(x16.astype(jnp.float32))  # the same (rounded) input, float32 throughout
    got = op(x16)
    assert got.dtype == jnp.bfloat16 and got.shape == ref.shape
    ref, got = np.asarray(ref), np.asarray(got, np.float32)
    # Convs and LC take their products in bf16 (as MXUs do): allow 8 roundings of the max.
    if name in ("conv2d", "locally_connected2d"):
        tol = ROUNDING * np.abs(ref) + 8 * ROUNDING * np.abs(ref).max()
    else:
        tol = ROUNDING * np.abs(ref) + 1e-6 * np.abs(ref).max()
    assert np.all(np.abs(got - ref) <= tol), float(np.max(np.abs(got - ref) - tol))


def _families(shape, seed=0):
    """Property-test images in bfloat16: constants 0..1e30 (signed), scaled normals, a spike."""
    rng = np.random.default_rng(seed)
    images = [np.full(shape, c) for c in (0.0, 1e4, -1e4, 1e-30, 1e15, -1e15, 1e30, -1e30)]
    images += [s * rng.normal(size=shape) for s in (1.0, 1e6, 1e15, 1e30, 1e-30)]
    spike = np.zeros(shape)
    spike[1, 2, 0] = 1e15
    images.append(spike)
    return jnp.asarray(np.stack(images), jnp.bfloat16)


@pytest.mark.parametrize("name", ["lcn", "lrn", "lp_pool_l2", "lp_pool_gaussian_l2",
                                  "lp_pool_p3", "feature_pool", "avg_pool", "max_pool"])
def test_bfloat16_gradients_finite_on_property_inputs(name, lowering):
    x = _families((8, 8, 2))
    cot = jnp.asarray(np.random.default_rng(1).normal(size=jax.eval_shape(OPS[name], x).shape),
                      jnp.bfloat16)
    value, grad = jax.jit(jax.value_and_grad(
        lambda v: jnp.sum((OPS[name](v) * cot).astype(jnp.float32))))(x)
    assert bool(jnp.isfinite(value)), name
    assert grad.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grad))), name
