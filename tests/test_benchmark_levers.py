"""Tests for `benchmarks/levers.py`: each variant equals the `jaxconv.functional` op it would
replace (values and gradients), so a benchmark can swap it in (a conv variant through
`jaxconv.layers.Conv`'s `conv_fn`)."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv import functional as F
from jaxconv import layers as L

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
        with F.lowering("xla"):  # lax.conv, also for one input channel
            return F.conv2d(x, k, b, **kwargs)

    def new(x, k, b):
        return levers.conv2d_im2col(x, k, b, **kwargs)

    _assert_same(ref, new, x, k, b)


@pytest.mark.parametrize("lever", ["conv2d_unbanded", "conv2d_untiled"])
def test_conv2d_without_band_forms_equals_conv2d(lever):
    """LeNet's C1 shape (the tiled form by default) through the levers that turn forms off."""
    x, k, b = _normal((2, 28, 28, 1), 0), _normal((5, 5, 1, 6), 1), _normal((6,), 2)

    def ref(x, k, b):
        with F.lowering("xla"):
            return F.conv2d(x, k, b, padding=2)

    def new(x, k, b):
        with F.lowering("cpu"):
            return getattr(levers, lever)(x, k, b, padding=2)

    _assert_same(ref, new, x, k, b)


@pytest.mark.parametrize("window, stride, padding", [
    (3, 2, "VALID"), (3, 2, 1), (2, 1, "VALID"), ((3, 2), (2, 1), "SAME"), (2, None, "VALID"),
])
def test_max_pool_reduce_window_equals_max_pool(window, stride, padding):
    x = _normal((2, 11, 10, 3), 0)
    np.testing.assert_array_equal(
        jax.jit(lambda x: levers.max_pool_reduce_window(x, window, stride, padding))(x),
        jax.jit(lambda x: F.max_pool(x, window, stride, padding))(x))  # max is exact


@pytest.mark.parametrize("lever", ["conv2d_im2col", "conv2d_unbanded", "conv2d_untiled",
                                   "conv2d_sum_bias"])
def test_conv_layer_takes_a_lever_as_conv_fn(lever):
    """A Conv layer built with, or later given, a lever computes what the default layer does."""
    x = _normal((2, 12, 12, 1), 3)
    layer = L.Conv(1, 4, 5, padding=2, rngs=nnx.Rngs(0))
    assert layer.conv_fn is F.conv2d
    built = L.Conv(1, 4, 5, padding=2, conv_fn=getattr(levers, lever), rngs=nnx.Rngs(0))
    want = jax.jit(lambda x: layer(x))(x)
    np.testing.assert_allclose(jax.jit(lambda x: built(x))(x), want, rtol=1e-5, atol=1e-5)
    layer.conv_fn = getattr(levers, lever)  # swapped in per layer, as train_step's workers do
    np.testing.assert_allclose(jax.jit(lambda x: layer(x))(x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape, k_shape, kwargs", CONV_CASES)
def test_conv2d_sum_bias_equals_conv2d(x_shape, k_shape, kwargs):
    """Values and the gradients w.r.t. input, kernel and bias (the bias's is the lever)."""
    x, k = _normal(x_shape, 0), _normal(k_shape, 1)
    b = _normal(k_shape[-1:], 2)
    _assert_same(lambda x, k, b: F.conv2d(x, k, b, **kwargs),
                 lambda x, k, b: levers.conv2d_sum_bias(x, k, b, **kwargs), x, k, b)
    np.testing.assert_allclose(levers.conv2d_sum_bias(x, k, **kwargs),
                               F.conv2d(x, k, **kwargs), rtol=1e-6, atol=1e-6)
