"""Tests for `jaxconv.functional.conv`: conv2d, extract_patches and locally_connected2d.

References: `torch.nn.functional.conv2d` (explicit padding), `lax.conv_general_dilated` (SAME)
and a NumPy loop over the locally-connected formula; LC with equal kernels must equal conv2d.
Tests of ops with two lowerings (`jaxconv.functional.lowering`) run under both.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from jaxconv import functional as F

torch = pytest.importorskip("torch")

# (stride, padding, dilation): every value of each, in varied combinations (a full product
# would triple the compile time and add no independent check).
GEOMETRIES = [
    (1, "VALID", 1),
    (2, 1, 1),
    ((2, 1), (1, 0), (2, 1)),
    (1, ((0, 2), (1, 0)), (2, 1)),
    (2, "SAME", (2, 1)),
    ((2, 1), "SAME", 1),
]


@pytest.fixture(params=["xla", "cpu"])
def lowering(request):
    """Runs the test under each lowering (`F.lowering`); its jitted functions trace inside."""
    with F.lowering(request.param):
        yield request.param


def _normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _explicit(padding, in_hw, window, stride, dilation):
    """((top, bottom), (left, right)) from the test's side: SAME via lax's own rule."""
    if padding == "SAME":
        eff = [(k - 1) * d + 1 for k, d in zip(window, _pair(dilation))]
        return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, eff, _pair(stride), "SAME"))
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if all(isinstance(p, int) for p in padding):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return tuple(tuple(p) for p in padding)


def _out_hw(in_hw, pads, window, stride, dilation):
    return tuple(
        (n + lo + hi - (k - 1) * d - 1) // s + 1
        for n, (lo, hi), k, s, d in zip(in_hw, pads, window, _pair(stride), _pair(dilation))
    )


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
    x = _normal((2, 7, 8, cin), 0)
    kernel = _normal((3, 2, cin // groups, 6), 1)
    bias = _normal((6,), 2)
    conv = functools.partial(F.conv2d, stride=stride, padding=padding, dilation=dilation,
                             groups=groups)
    y = jax.jit(conv)(x, kernel, bias)
    pads = _explicit(padding, (7, 8), (3, 2), stride, dilation)
    expected = _torch_conv(x, kernel, bias, stride, pads, dilation, groups)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "stride, dilation, groups", [(1, 1, 1), (2, 1, 2), ((2, 3), 2, 1), ((2, 3), 2, 2)]
)
def test_conv2d_same_matches_lax(stride, dilation, groups):
    x = _normal((2, 7, 8, 4), 3)
    kernel = _normal((3, 2, 4 // groups, 6), 4)
    y = jax.jit(functools.partial(F.conv2d, stride=stride, dilation=dilation, groups=groups))(
        x, kernel
    )
    pair = _pair(stride)
    expected = lax.conv_general_dilated(
        x, kernel, pair, "SAME", rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
    )
    assert y.shape == (2, math.ceil(7 / pair[0]), math.ceil(8 / pair[1]), 6)
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
    x, kernel, bias = _normal((2, 5, 6, cin), 5), _normal((3, 2, cin, 3), 6), _normal((3,), 7)
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


# ---------------------------------------------------------------- extract_patches


@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_extract_patches_formula(stride, padding, dilation):
    x = jnp.arange(2 * 6 * 7 * 3, dtype=jnp.float32).reshape(2, 6, 7, 3) + 1.0
    patches = jax.jit(functools.partial(F.extract_patches, kernel_size=(3, 2), stride=stride,
                                        padding=padding, dilation=dilation))(x)
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    pads = _explicit(padding, (6, 7), (3, 2), stride, dilation)
    xp = np.pad(np.asarray(x), ((0, 0),) + pads + ((0, 0),))
    oh, ow = _out_hw((6, 7), pads, (3, 2), stride, dilation)
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
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
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
    x = _normal((2, 6, 7, 3), 8)
    pads = _explicit(padding, (6, 7), (3, 2), stride, dilation)
    oh, ow = _out_hw((6, 7), pads, (3, 2), stride, dilation)
    kernel = _normal((oh, ow, 3, 2, 3, 4), 9)
    bias = _normal((oh, ow, 4), 10) if stride == 1 else None  # with and without bias
    lc = functools.partial(F.locally_connected2d, kernel_size=(3, 2), stride=stride,
                           padding=padding, dilation=dilation)
    y = jax.jit(lc)(x, kernel, bias)
    np.testing.assert_allclose(
        y, _lc_reference(x, kernel, bias, stride, pads, dilation), rtol=1e-5, atol=1e-5
    )


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("stride, padding, dilation", GEOMETRIES)
def test_locally_connected_with_equal_kernels_is_conv(stride, padding, dilation):
    x = _normal((3, 7, 6, 4), 11)
    kernel, bias = _normal((3, 3, 4, 5), 12), _normal((5,), 13)
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
    x, kernel, bias = _normal((2, 4, 5, 2), 14), _normal((4, 3, 2, 2, 2, 3), 15), _normal(
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


def _assert_matches_lax_conv(conv, x, k, stride, padding, dilation=(1, 1)):
    """`conv(x, k)` has the values and the gradients (w.r.t. x and k) of `lax.conv`."""

    def ref(x, k):
        return lax.conv_general_dilated(x, k, stride, padding, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(conv(x, k), ref(x, k), rtol=1e-5, atol=1e-4)
    g_ref = jax.grad(lambda x, k: (ref(x, k) ** 2).sum(), (0, 1))(x, k)
    g_new = jax.grad(lambda x, k: (conv(x, k) ** 2).sum(), (0, 1))(x, k)
    for a, b in zip(g_new, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("stride, dilation, padding, cin", [
    (1, 1, ((2, 2), (2, 2)), 1), (1, 1, ((0, 0), (0, 0)), 6), ((2, 1), (1, 2), ((1, 2), (0, 3)), 3),
])
def test_banded_conv_equals_lax_conv(stride, dilation, padding, cin):
    """The CPU lowering's banded conv (LeNet's C3): values and gradients of `lax.conv`."""
    from jaxconv.functional.conv import banded_conv

    kx, kk = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (3, 14, 13, cin))
    k = jax.random.normal(kk, (5, 4, cin, 7))
    s, d = F._args.to_pair(stride, "s"), F._args.to_pair(dilation, "d")
    _assert_matches_lax_conv(lambda x, k: banded_conv(x, k, s, padding, d), x, k, s, padding, d)


@pytest.mark.parametrize("width, kernel, pads, cin, tile", [
    (28, (5, 5), ((2, 2), (2, 2)), 1, 4),   # LeNet C1: q = 2 chunks per tile
    (13, (3, 9), ((1, 0), (0, 3)), 3, 4),   # kw - 1 > tile: q = 3; 7 outputs, not whole tiles
    (10, (2, 1), ((0, 1), (0, 0)), 2, 3),   # kw = 1: q = 1
    (6, (3, 3), ((0, 0), (1, 1)), 1, 8),    # one tile wider than the output
])
def test_tiled_banded_conv_equals_lax_conv(width, kernel, pads, cin, tile):
    """The CPU lowering's tiled banded conv (LeNet's C1): values and gradients of `lax.conv`."""
    from jaxconv.functional.conv import tiled_banded_conv

    kx, kk = jax.random.split(jax.random.key(4))
    x = jax.random.normal(kx, (3, 7, width, cin))
    k = jax.random.normal(kk, kernel + (cin, 5))
    _assert_matches_lax_conv(lambda x, k: tiled_banded_conv(x, k, pads, tile), x, k, (1, 1),
                             pads)


@pytest.mark.parametrize("shape, kernel, stride, padding, form", [
    ((28, 28, 1), (5, 5, 1, 6), 1, 2, "tiled"),       # LeNet C1
    ((14, 14, 6), (5, 5, 6, 16), 1, 0, "banded"),     # LeNet C3
    ((28, 28, 1), (5, 5, 1, 6), 2, 2, "banded"),      # strided: no tiles
    ((32, 32, 3), (3, 3, 3, 64), 1, 1, "lax"),        # CIFAR conv1: rows too wide for a band
    ((16, 16, 32), (3, 3, 32, 8), 1, 1, "lax"),       # too many input channels
])
def test_cpu_lowering_picks_the_conv_form_and_matches_torch(shape, kernel, stride, padding,
                                                            form):
    """`F.conv2d` with the CPU lowering, by form, against torch's conv2d."""
    from jaxconv.functional import conv as conv_lib

    forms = {"tiled": "tiled_banded_conv", "banded": "banded_conv", "lax": None}
    called = []
    originals = {name: getattr(conv_lib, name) for name in ("tiled_banded_conv", "banded_conv")}
    original_lax = lax.conv_general_dilated

    def spy(name):
        def wrapped(*args, **kwargs):
            called.append(name)
            return (originals[name] if name in originals else original_lax)(*args, **kwargs)
        return wrapped

    x = jax.random.normal(jax.random.key(5), (2,) + shape)
    k = jax.random.normal(jax.random.key(6), kernel) * 0.2
    with F.lowering("cpu"), pytest.MonkeyPatch.context() as mp:
        for name in originals:
            mp.setattr(conv_lib, name, spy(name))
        mp.setattr(conv_lib.lax, "conv_general_dilated", spy(None))
        y = F.conv2d(x, k, stride=stride, padding=padding)
    assert called == [forms[form]]
    want = torch.nn.functional.conv2d(torch.tensor(np.array(x)).permute(0, 3, 1, 2),
                                      torch.tensor(np.array(k)).permute(3, 2, 0, 1),
                                      stride=stride, padding=padding).permute(0, 2, 3, 1)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-4, atol=1e-4)
