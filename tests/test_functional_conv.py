"""Tests for `jaxconv.functional.conv`: conv2d.

References: `torch.nn.functional.conv2d` (explicit padding) and `lax.conv_general_dilated`
(SAME). Tests of ops with two lowerings (`jaxconv.functional.lowering`) run under both; the CPU
forms themselves are tested in `test_functional_cpu_conv.py`.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from functional_geometry import GEOMETRIES, explicit_padding, normal, pair
from jax import lax
from jax.test_util import check_grads

from jaxconv import functional as F

torch = pytest.importorskip("torch")


@pytest.fixture(params=["xla", "cpu"])
def lowering(request):
    """Runs the test under each lowering (`F.lowering`); its jitted functions trace inside."""
    with F.lowering(request.param):
        yield request.param


def _torch_conv(x, kernel, bias, stride, pads, dilation, groups):
    xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)
    (top, bottom), (left, right) = pads
    xt = torch.nn.functional.pad(xt, (left, right, top, bottom))
    kt = torch.tensor(np.asarray(kernel)).permute(3, 2, 0, 1)
    bt = None if bias is None else torch.tensor(np.asarray(bias))
    y = torch.nn.functional.conv2d(xt, kt, bt, stride=stride, dilation=dilation, groups=groups)
    return y.permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------- conv2d


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("stride, padding, dilation", [g for g in GEOMETRIES if g[1] != "SAME"])
@pytest.mark.parametrize("groups, cin", [(1, 4), (2, 4), (1, 1)])  # 1 channel: CPU im2col
def test_conv2d_matches_torch(stride, padding, dilation, groups, cin):
    x = normal((2, 7, 8, cin), 0)
    kernel = normal((3, 2, cin // groups, 6), 1)
    bias = normal((6,), 2)
    conv = functools.partial(F.conv2d, stride=stride, padding=padding, dilation=dilation,
                             groups=groups)
    y = jax.jit(conv)(x, kernel, bias)
    pads = explicit_padding(padding, (7, 8), (3, 2), stride, dilation)
    expected = _torch_conv(x, kernel, bias, stride, pads, dilation, groups)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "stride, dilation, groups", [(1, 1, 1), (2, 1, 2), ((2, 3), 2, 1), ((2, 3), 2, 2)]
)
def test_conv2d_same_matches_lax(stride, dilation, groups):
    x = normal((2, 7, 8, 4), 3)
    kernel = normal((3, 2, 4 // groups, 6), 4)
    y = jax.jit(functools.partial(F.conv2d, stride=stride, dilation=dilation, groups=groups))(
        x, kernel
    )
    strides = pair(stride)
    expected = lax.conv_general_dilated(
        x, kernel, strides, "SAME", rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
    )
    assert y.shape == (2, math.ceil(7 / strides[0]), math.ceil(8 / strides[1]), 6)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_conv2d_same_ones_closed_form():
    # SAME 3x3 all-ones conv of all-ones input counts the in-image taps x channels.
    y = F.conv2d(jnp.ones((1, 4, 5, 3)), jnp.ones((3, 3, 3, 2)))
    counts = np.array([2, 3, 3, 2])[:, None] * np.array([2, 3, 3, 3, 2])[None, :]
    np.testing.assert_array_equal(y[0, :, :, 0], 3 * counts)
    np.testing.assert_array_equal(y[..., 0], y[..., 1])


def test_conv2d_promotes_mixed_dtypes():
    x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
    y = F.conv2d(x, jnp.ones((3, 3, 2, 1), jnp.float32), jnp.ones((1,), jnp.float32))
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y[0, 1:3, 1:3, 0], 19.0)


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("cin", [2, 1])
def test_conv2d_grads(cin):
    x, kernel, bias = normal((2, 5, 6, cin), 5), normal((3, 2, cin, 3), 6), normal((3,), 7)
    conv = jax.jit(functools.partial(F.conv2d, stride=(2, 1), padding="SAME", dilation=(1, 2)))
    check_grads(conv, (x, kernel, bias), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, kwargs, message",
    [
        ((5, 5, 6), (3, 3, 2, 4), {"groups": 3}, "in_channels 6 and out_channels 4 must be "
                                                 "divisible by groups=3"),
        ((5, 5, 6), (3, 3, 3, 4), {"groups": 1}, "kernel shape (3, 3, 3, 4) expects 3 input "
                                                 "channels (kernel in-dim 3 x groups 1), got x "
                                                 "with 6"),
        ((5, 5, 4), (3, 3, 3, 4), {"groups": 2}, "kernel shape (3, 3, 3, 4) expects 6 input "
                                                 "channels (kernel in-dim 3 x groups 2), got x "
                                                 "with 4"),
        ((5, 5, 6), (3, 3, 6), {}, "kernel must be (kh, kw, in_channels // groups, "
                                   "out_channels), got shape (3, 3, 6)"),
        ((5, 5, 6), (3, 3, 6, 4), {"groups": 0}, "groups must be a positive int, got 0"),
        ((5, 5, 6), (1, 1, 6, 4), {"padding": 1}, "padding ((1, 1), (1, 1)) is >= the window 1"),
        ((5, 5, 6), (3, 3, 6, 4), {"stride": 0}, "stride must be >= 1 on each axis, got 0"),
        ((5, 5, 6), (3, 3, 6, 4), {"padding": "VALID", "dilation": 3},
         "window 7 (dilated) is larger than the padded input 5 on height"),
    ],
)
def test_conv2d_rejects(x_shape, kernel_shape, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        F.conv2d(jnp.ones(x_shape), jnp.ones(kernel_shape), **kwargs)


def test_conv2d_rejects_bias_shape():
    with pytest.raises(ValueError, match=re.escape("bias must have shape (4,), got (1, 4)")):
        F.conv2d(jnp.ones((5, 5, 2)), jnp.ones((3, 3, 2, 4)), jnp.ones((1, 4)))
