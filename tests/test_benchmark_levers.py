"""Tests for `benchmarks/levers.py`: each faster variant equals the `jaxconv.functional` op it
would replace (values and gradients), so the lead can move it into `jaxconv/functional/`."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import levers  # noqa: E402


def _normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _value_and_vjp(f, *args, seed=99):
    """`f(*args)` and its VJP w.r.t. every arg with a fixed random cotangent, under jit."""
    y = jax.eval_shape(f, *args)
    ct = _normal(y.shape, seed)

    @jax.jit
    def run(*args):
        y, vjp = jax.vjp(f, *args)
        return y, vjp(ct)

    return run(*args)


def _assert_same(f_ref, f_new, *args, rtol=1e-5, atol=1e-5, grad_rtol=1e-4):
    (y0, g0), (y1, g1) = _value_and_vjp(f_ref, *args), _value_and_vjp(f_new, *args)
    np.testing.assert_allclose(y1, y0, rtol=rtol, atol=atol)
    for a, b in zip(g0, g1):  # relative to the gradient's norm: robust to a few kinks
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.linalg.norm(a - b) <= grad_rtol * np.linalg.norm(a) + 1e-7


CONV_CASES = [  # x shape, kernel shape, kwargs
    ((2, 9, 8, 3), (3, 3, 3, 5), {}),
    ((2, 9, 8, 3), (3, 3, 3, 5), dict(padding="VALID", stride=2)),
    ((1, 12, 11, 1), (5, 5, 1, 6), dict(padding=2)),
    ((2, 10, 10, 4), (3, 2, 4, 3), dict(padding=((1, 0), (1, 1)), dilation=(2, 1))),
    ((3, 2, 7, 7, 2), (1, 1, 2, 4), {}),  # extra batch dim, 1x1
    ((2, 8, 8, 4), (3, 3, 4, 6), dict(stride=(2, 1), padding="SAME")),
]


@pytest.mark.parametrize("x_shape, k_shape, kwargs", CONV_CASES)
def test_conv2d_im2col_equals_conv2d(x_shape, k_shape, kwargs):
    x, k, b = _normal(x_shape, 0), _normal(k_shape, 1), _normal(k_shape[-1:], 2)

    def ref(x, k, b):
        return F.conv2d(x, k, b, **kwargs)

    def new(x, k, b):
        return levers.conv2d_im2col(x, k, b, **kwargs)

    _assert_same(ref, new, x, k, b)


def test_conv2d_hybrid_routes_by_input_channels():
    x, small = _normal((2, 8, 8, 1), 0), _normal((5, 5, 1, 4), 1)
    assert levers.IM2COL_MAX_IN_CHANNELS >= 1
    np.testing.assert_allclose(levers.conv2d_hybrid(x, small, padding=2),
                               F.conv2d(x, small, padding=2), rtol=1e-5, atol=1e-5)
    xl = _normal((2, 8, 8, 8), 3)
    kl = _normal((3, 3, 8, 4), 4)
    np.testing.assert_array_equal(levers.conv2d_hybrid(xl, kl), F.conv2d(xl, kl))  # lax path
    kg = _normal((3, 3, 4, 4), 5)  # grouped: always lax
    np.testing.assert_array_equal(levers.conv2d_hybrid(xl, kg, groups=2),
                                  F.conv2d(xl, kg, groups=2))


@pytest.mark.parametrize("x_shape, k, kwargs", [
    ((2, 7, 6, 3), 3, {}),
    ((2, 9, 9, 2), (2, 3), dict(stride=2, padding=1)),
    ((3, 2, 6, 6, 4), 3, dict(padding="SAME", dilation=2)),
])
def test_locally_connected2d_bmm_equals_einsum(x_shape, k, kwargs):
    x = _normal(x_shape, 0)
    kk = (k, k) if isinstance(k, int) else k
    out = jax.eval_shape(lambda x: F.extract_patches(x.reshape((-1,) + x.shape[-3:]), kk,
                                                     **kwargs), x).shape[1:3]
    w = _normal(out + kk + (x_shape[-1], 5), 1)
    b = _normal(out + (5,), 2)

    def ref(x, w, b):
        return F.locally_connected2d(x, w, b, kernel_size=k, **kwargs)

    def new(x, w, b):
        return levers.locally_connected2d_bmm(x, w, b, kernel_size=k, **kwargs)

    _assert_same(ref, new, x, w, b)


@pytest.mark.parametrize("window, sigma", [(2, None), (5, None), (9, 1.3), ((3, 5), (0.7, 2.0))])
def test_gaussian_factors_outer_is_gaussian_window(window, sigma):
    g1, g2 = levers.gaussian_factors(window, sigma)
    np.testing.assert_allclose(np.outer(g1, g2), F.gaussian_window(window, sigma), rtol=1e-6,
                               atol=1e-8)


@pytest.mark.parametrize("shape, kernel_size, sigma", [
    ((2, 9, 8, 3), 5, None), ((2, 6, 7, 4), 3, 1.3), ((1, 5, 4, 1), 9, None),
    ((2, 3, 8, 8, 2), 1, None),
])
def test_lcn_separable_equals_lcn(shape, kernel_size, sigma):
    x = 2.0 * _normal(shape, 0) + 0.5

    def ref(x):
        return F.local_contrast_norm(x, kernel_size, sigma)

    def new(x):
        return levers.local_contrast_norm_separable(x, kernel_size, sigma)

    _assert_same(ref, new, x, rtol=1e-4, atol=1e-5, grad_rtol=1e-3)


@pytest.mark.parametrize("value", [0.0, -3.0, 255.0])
def test_lcn_separable_constant_image_is_zero(value):
    y = jax.jit(levers.local_contrast_norm_separable)(jnp.full((2, 7, 8, 3), value))
    np.testing.assert_allclose(y, 0.0, atol=1e-3)


POOL_CASES = [  # window, stride, padding
    (3, 2, "VALID"), (3, 2, 1), (2, 1, "VALID"), ((3, 2), (2, 1), "SAME"), (2, None, "VALID"),
    (3, 3, ((1, 1), (0, 2))),
]


@pytest.mark.parametrize("window, stride, padding", POOL_CASES)
def test_max_pool_separable_equals_max_pool(window, stride, padding):
    x = _normal((2, 11, 10, 3), 0)
    ref = lambda x: F.max_pool(x, window, stride, padding)  # noqa: E731
    new = lambda x: levers.max_pool_separable(x, window, stride, padding)  # noqa: E731
    y0, y1 = jax.jit(ref)(x), jax.jit(new)(x)
    np.testing.assert_array_equal(y1, y0)  # max is exact
    _assert_same(ref, new, x, rtol=0, atol=0, grad_rtol=1e-6)  # no ties in random data
    np.testing.assert_array_equal(jax.jit(lambda x: levers.max_pool_reduce_window(
        x, window, stride, padding))(x), y0)


@pytest.mark.parametrize("window, stride, padding", POOL_CASES)
@pytest.mark.parametrize("p", [2.0, 3.0])
def test_lp_pool_slices_equals_lp_pool(window, stride, padding, p):
    x = _normal((2, 11, 10, 3), 0)
    wshape = (window, window) if isinstance(window, int) else window
    weights = jnp.asarray(np.random.default_rng(1).uniform(0.1, 1.0, wshape), jnp.float32)
    ref = lambda x: F.lp_pool(x, p, window, stride, padding, weights)  # noqa: E731
    new = lambda x: levers.lp_pool_slices(x, p, window, stride, padding, weights)  # noqa: E731
    _assert_same(ref, new, x, rtol=1e-5, atol=1e-6, grad_rtol=1e-5)


def test_lp_pool_slices_gaussian_and_unweighted():
    x = _normal((2, 8, 8, 4), 0)
    g = F.gaussian_window(2)
    _assert_same(lambda x: F.lp_pool(x, 2.0, 2, weights=g),
                 lambda x: levers.lp_pool_slices(x, 2.0, 2, weights=g), x)
    np.testing.assert_array_equal(levers.lp_pool_slices(x, 2.0, 2), F.lp_pool(x, 2.0, 2))


@pytest.mark.parametrize("group_size", [1, 2, 3, 4])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, "max"])
def test_feature_pool_slices_equals_feature_pool(group_size, p):
    x = _normal((2, 5, 4, 12), 0)
    _assert_same(lambda x: F.feature_pool(x, group_size, p=p),
                 lambda x: levers.feature_pool_slices(x, group_size, p=p), x,
                 rtol=1e-6, atol=1e-6, grad_rtol=1e-5)


def test_levers_reject_like_functional():
    x = _normal((1, 4, 4, 6), 0)
    with pytest.raises(ValueError, match="not divisible"):
        levers.feature_pool_slices(x, 4)
    with pytest.raises(ValueError, match="p must be"):
        levers.feature_pool_slices(x, 2, p=0)
    with pytest.raises(ValueError, match="weights must have"):
        levers.lp_pool_slices(x, 2.0, 2, weights=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="eps must be"):
        levers.local_contrast_norm_separable(x, 3, eps=0.0)
