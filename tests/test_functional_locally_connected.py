"""Tests for `jaxconv.functional.locally_connected`: extract_patches and locally_connected2d.

References: NumPy loops over the patch and locally-connected formulas; LC with equal kernels
must equal conv2d. Tests of ops with two lowerings (`jaxconv.functional.lowering`) run under
both.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from functional_geometry import GEOMETRIES, explicit_padding, normal, out_hw, pair
from jax.test_util import check_grads

from jaxconv import functional as F


@pytest.fixture(params=["xla", "cpu"])
def lowering(request):
    """Runs the test under each lowering (`F.lowering`); its jitted functions trace inside."""
    with F.lowering(request.param):
        yield request.param


# ---------------------------------------------------------------- extract_patches


@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_extract_patches_formula(stride, padding, dilation):
    x = jnp.arange(2 * 6 * 7 * 3, dtype=jnp.float32).reshape(2, 6, 7, 3) + 1.0
    patches = jax.jit(functools.partial(F.extract_patches, kernel_size=(3, 2), stride=stride,
                                        padding=padding, dilation=dilation))(x)
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    pads = explicit_padding(padding, (6, 7), (3, 2), stride, dilation)
    xp = np.pad(np.asarray(x), ((0, 0),) + pads + ((0, 0),))
    oh, ow = out_hw((6, 7), pads, (3, 2), stride, dilation)
    expected = np.empty((2, oh, ow, 3, 2, 3), np.float32)
    for i in range(oh):
        for j in range(ow):
            for a in range(3):
                for b in range(2):
                    expected[:, i, j, a, b] = xp[:, i * sh + a * dh, j * sw + b * dw]
    np.testing.assert_array_equal(patches, expected)


# ---------------------------------------------------------------- locally_connected2d


def _lc_reference(x, kernel, bias, stride, pads, dilation):
    """NumPy loop over y[n,i,j,o] = sum_{a,b,c} xp[n, i*sh+a*dh, j*sw+b*dw, c] W[i,j,a,b,c,o]."""
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0),) + pads + ((0, 0),))
    w = np.asarray(kernel, np.float64)
    oh, ow, kh, kw, _, cout = w.shape
    y = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    y[:, i, j] += xp[:, i * sh + a * dh, j * sw + b * dw, :] @ w[i, j, a, b]
    return y if bias is None else y + np.asarray(bias, np.float64)


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_locally_connected_matches_numpy_loop(stride, padding, dilation):
    x = normal((2, 6, 7, 3), 8)
    pads = explicit_padding(padding, (6, 7), (3, 2), stride, dilation)
    oh, ow = out_hw((6, 7), pads, (3, 2), stride, dilation)
    kernel = normal((oh, ow, 3, 2, 3, 4), 9)
    bias = normal((oh, ow, 4), 10) if stride == 1 else None  # with and without bias
    lc = functools.partial(F.locally_connected2d, kernel_size=(3, 2), stride=stride,
                           padding=padding, dilation=dilation)
    y = jax.jit(lc)(x, kernel, bias)
    np.testing.assert_allclose(
        y, _lc_reference(x, kernel, bias, stride, pads, dilation), rtol=1e-5, atol=1e-5
    )


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_locally_connected_with_equal_kernels_is_conv(stride, padding, dilation):
    x = normal((3, 7, 6, 4), 11)
    kernel, bias = normal((3, 3, 4, 5), 12), normal((5,), 13)
    conv_args = dict(stride=stride, padding=padding, dilation=dilation)
    y_conv = jax.jit(functools.partial(F.conv2d, **conv_args))(x, kernel, bias)
    oh, ow = y_conv.shape[1:3]
    lc_kernel = jnp.broadcast_to(kernel, (oh, ow) + kernel.shape)
    lc_bias = jnp.broadcast_to(bias, (oh, ow, 5))
    y_lc = jax.jit(functools.partial(F.locally_connected2d, kernel_size=3, **conv_args))(
        x, lc_kernel, lc_bias
    )
    np.testing.assert_allclose(y_lc, y_conv, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("lowering")
def test_locally_connected_grads():
    x, kernel, bias = normal((2, 4, 5, 2), 14), normal((4, 3, 2, 2, 2, 3), 15), normal(
        (4, 3, 3), 16)
    lc = jax.jit(functools.partial(F.locally_connected2d, kernel_size=2, stride=(1, 2),
                                   padding=((0, 1), (1, 0))))
    check_grads(lc, (x, kernel, bias), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def _intermediate_sizes(jaxpr):
    """Element counts of every value produced in a jaxpr, sub-jaxprs (pjit, ...) included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield math.prod(var.aval.shape)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _intermediate_sizes(inner)


@pytest.mark.usefixtures("lowering")
def test_locally_connected_memory_is_not_batch_times_params():
    # A broadcast-multiply-sum LC would build a (batch, out_h, out_w, kh, kw, C, O) array.
    n, kernel = 16, jnp.ones((6, 6, 3, 3, 4, 8))  # VALID on 8x8
    x = jnp.ones((n, 8, 8, 4))
    lc = functools.partial(F.locally_connected2d, kernel_size=3)
    batch_times_params = n * kernel.size
    for g in (lc, jax.grad(lambda x, k: lc(x, k).sum(), argnums=(0, 1))):
        sizes = list(_intermediate_sizes(jax.make_jaxpr(g)(x, kernel).jaxpr))
        assert sizes  # the walk saw the computation
        assert max(sizes) < batch_times_params / 4, max(sizes)


@pytest.mark.parametrize(
    "kernel_shape, bias_shape, kwargs, message",
    [
        ((4, 4, 3, 3, 2), None, {}, "kernel must be (out_h, out_w, kh, kw, in_channels, "
                                    "out_channels), got shape (4, 4, 3, 3, 2)"),
        ((4, 4, 3, 3, 2, 5), None, {"stride": 2}, "kernel shape (4, 4, 3, 3, 2, 5) does not fit "
                                                  "this input: expected (2, 2, 3, 3, 2, 'O')"),
        ((4, 4, 3, 3, 2, 5), None, {"kernel_size": 2}, "expected (5, 5, 2, 2, 2, 'O')"),
        ((4, 4, 3, 3, 2, 5), (5,), {}, "bias must have shape (4, 4, 5), got (5,)"),
    ],
)
def test_locally_connected_rejects(kernel_shape, bias_shape, kwargs, message):
    kwargs = {"kernel_size": 3, **kwargs}
    bias = None if bias_shape is None else jnp.ones(bias_shape)
    lc = functools.partial(F.locally_connected2d, **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):  # raised while tracing
        jax.eval_shape(lc, jnp.ones((2, 6, 6, 2)), jnp.ones(kernel_shape), bias)
