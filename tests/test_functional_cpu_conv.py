"""Tests for `jaxconv.functional.cpu.conv`: the banded and tiled banded convs, the form choice,
and the bias add.

Each form must give `lax.conv_general_dilated`'s values and gradients; `F.conv2d` with the CPU
lowering must call the form `form` picks, and match torch; `add_bias` must give `y + bias`'s
values and gradients.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxconv import functional as F
from jaxconv.functional.args import to_pair
from jaxconv.functional.cpu import conv as cpu_conv

torch = pytest.importorskip("torch")


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
    (1, 1, ((2, 2), (2, 2)), 1),
    pytest.param(1, 1, ((0, 0), (0, 0)), 6, marks=pytest.mark.slow),
    pytest.param((2, 1), (1, 2), ((1, 2), (0, 3)), 3, marks=pytest.mark.slow),
])
def test_banded_conv_equals_lax_conv(stride, dilation, padding, cin):
    """The CPU lowering's banded conv (LeNet's C3): values and gradients of `lax.conv`."""
    kx, kk = jax.random.split(jax.random.key(3))
    x = jax.random.normal(kx, (3, 14, 13, cin))
    k = jax.random.normal(kk, (5, 4, cin, 7))
    s, d = to_pair(stride, "s"), to_pair(dilation, "d")
    _assert_matches_lax_conv(lambda x, k: cpu_conv.banded_conv(x, k, s, padding, d), x, k, s,
                             padding, d)


@pytest.mark.parametrize("width, kernel, pads, cin, tile", [
    (28, (5, 5), ((2, 2), (2, 2)), 1, 4),   # LeNet C1: q = 2 chunks per tile
    (13, (3, 9), ((1, 0), (0, 3)), 3, 4),   # kw - 1 > tile: q = 3; 7 outputs, not whole tiles
    pytest.param(10, (2, 1), ((0, 1), (0, 0)), 2, 3, marks=pytest.mark.slow),  # kw = 1: q = 1
    pytest.param(6, (3, 3), ((0, 0), (1, 1)), 1, 8, marks=pytest.mark.slow),  # tile > output
])
def test_tiled_banded_conv_equals_lax_conv(width, kernel, pads, cin, tile):
    """The CPU lowering's tiled banded conv (LeNet's C1): values and gradients of `lax.conv`."""
    kx, kk = jax.random.split(jax.random.key(4))
    x = jax.random.normal(kx, (3, 7, width, cin))
    k = jax.random.normal(kk, kernel + (cin, 5))
    _assert_matches_lax_conv(lambda x, k: cpu_conv.tiled_banded_conv(x, k, pads, tile), x, k,
                             (1, 1), pads)


@pytest.mark.parametrize("shape, kernel, stride, padding, form", [
    ((28, 28, 1), (5, 5, 1, 6), 1, 2, "tiled"),       # LeNet C1
    ((14, 14, 6), (5, 5, 6, 16), 1, 0, "banded"),     # LeNet C3
    ((28, 28, 1), (5, 5, 1, 6), 2, 2, "banded"),      # strided: no tiles
    ((32, 32, 3), (3, 3, 3, 64), 1, 1, "lax"),        # CIFAR conv1: rows too wide for a band
    ((16, 16, 32), (3, 3, 32, 8), 1, 1, "lax"),       # too many input channels
    ((40, 40, 1), (3, 3, 1, 4), 1, 1, "im2col"),      # one channel, rows too wide for a band
])
def test_cpu_lowering_picks_the_conv_form_and_matches_torch(shape, kernel, stride, padding,
                                                            form):
    """`F.conv2d` with the CPU lowering, by form, against torch's conv2d."""
    forms = {"tiled": "tiled_banded_conv", "banded": "banded_conv", "im2col": "im2col_conv",
             "lax": None}
    called = []
    originals = {name: getattr(cpu_conv, name)
                 for name in ("tiled_banded_conv", "banded_conv", "im2col_conv")}
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
            mp.setattr(cpu_conv, name, spy(name))
        mp.setattr(cpu_conv.lax, "conv_general_dilated", spy(None))
        y = F.conv2d(x, k, stride=stride, padding=padding)
    assert called == [forms[form]]
    want = torch.nn.functional.conv2d(torch.tensor(np.array(x)).permute(0, 3, 1, 2),
                                      torch.tensor(np.array(k)).permute(3, 2, 0, 1),
                                      stride=stride, padding=padding).permute(0, 2, 3, 1)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-4, atol=1e-4)


# LeNet C1 (1 channel, 5x5, 32 padded columns) and C3 (6 channels, 14 columns).
C1, C3 = (1, 1, (5, 5), (1, 1), (1, 1), 32), (6, 1, (5, 5), (1, 1), (1, 1), 14)


@pytest.mark.parametrize("args, thresholds, expected", [
    (C1, {}, "tiled"),
    (C1, {"tile_above": float("inf")}, "banded"),         # benchmarks' `untiled`
    (C1, {"banded_max_cin": 0}, "im2col"),                # benchmarks' `unbanded`
    (C3, {}, "banded"),
    (C3, {"banded_max_cin": 0}, "lax"),
    (C3, {"banded_max_cin": 5}, "lax"),
    (C1, {"banded_max_waste": 6}, "im2col"),              # 32 columns > 6 x 5
    ((4, 2, (5, 5), (1, 1), (1, 1), 14), {}, "lax"),      # grouped
])
def test_form_thresholds_are_keyword_arguments(args, thresholds, expected):
    assert cpu_conv.form(*args, **thresholds) == expected
    assert cpu_conv.BANDED_MAX_CIN == 16 and cpu_conv.TILE_ABOVE == 4  # defaults unchanged


@pytest.mark.parametrize("thresholds", [{}, {"tile_above": float("inf")}, {"banded_max_cin": 0}])
def test_conv2d_under_thresholds_equals_lax_conv(thresholds):
    """`cpu.conv.conv2d` in the form each threshold setting picks (LeNet C1's shape)."""
    kx, kk = jax.random.split(jax.random.key(7))
    x, k = jax.random.normal(kx, (2, 28, 28, 1)), jax.random.normal(kk, (5, 5, 1, 6))
    pads = ((2, 2), (2, 2))
    _assert_matches_lax_conv(
        lambda x, k: cpu_conv.conv2d(x, k, (1, 1), pads, (1, 1), **thresholds), x, k, (1, 1),
        pads)


@pytest.mark.parametrize("y_dtype, bias_dtype, lead", [
    (jnp.float32, jnp.float32, (2, 5, 4)),
    (jnp.bfloat16, jnp.float32, (2, 5, 4)),   # promotes to float32, as `y + bias` does
    (jnp.bfloat16, jnp.bfloat16, (3, 2)),
    (jnp.float32, jnp.bfloat16, (7,)),
])
def test_add_bias_equals_the_sum_and_its_gradient(y_dtype, bias_dtype, lead):
    """`cpu.conv.add_bias`: `y + bias`'s values, dtype and gradients (the bias gradient summed
    in float32, so within a rounding of the reference's sum over N, H, W)."""
    ky, kb, kg = jax.random.split(jax.random.key(8), 3)
    y = jax.random.normal(ky, lead + (6,)).astype(y_dtype)
    bias = jax.random.normal(kb, (6,)).astype(bias_dtype)
    out, vjp = jax.vjp(functools.partial(cpu_conv.add_bias, min_channels=0), y, bias)
    want, vjp_ref = jax.vjp(lambda y, b: y + b, y, bias)
    assert out.dtype == want.dtype
    np.testing.assert_array_equal(out, want)
    g = jax.random.normal(kg, out.shape).astype(out.dtype)
    (dy, db), (dy_ref, db_ref) = vjp(g), vjp_ref(g)
    assert (dy.dtype, db.dtype) == (y.dtype, bias.dtype)
    np.testing.assert_array_equal(dy, dy_ref)
    want_db = np.asarray(g, np.float64).reshape(-1, 6).sum(0)
    tol = 1e-5 if bias_dtype == jnp.float32 else 1e-2  # bfloat16: 8 bits of mantissa
    np.testing.assert_allclose(np.asarray(db, np.float64), want_db, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(db_ref, np.float64), want_db, rtol=tol * 4, atol=tol * 4)


def test_add_bias_of_an_integer_bias_is_the_plain_sum():
    y = jnp.ones((2, 3))
    grad = jax.grad(lambda y: cpu_conv.add_bias(y, jnp.arange(3), min_channels=0).sum())(y)
    np.testing.assert_array_equal(grad, jnp.ones((2, 3)))


def test_cpu_lowering_takes_the_conv_bias_gradient_as_a_matmul():
    """Under the CPU lowering `F.conv2d`'s bias gradient is a dot (no reduce_sum); under XLA's a
    reduce_sum. Both give the same gradients (x, kernel, bias) to float rounding."""
    kx, kk, kb = jax.random.split(jax.random.key(9), 3)
    cout = cpu_conv.DOT_BIAS_MIN_CHANNELS
    x, k = jax.random.normal(kx, (2, 6, 6, 20)), jax.random.normal(kk, (3, 3, 20, cout)) * 0.2
    bias = jax.random.normal(kb, (cout,))
    grads = {}
    for mode, has_dot in (("xla", False), ("cpu", True)):
        with F.lowering(mode):  # fresh functions: jit and make_jaxpr cache traces per function
            bias_grad = jax.grad(lambda b: F.conv2d(x, k, b)[0, 0, 0, 0])  # no forward sum
            names = {e.primitive.name for e in jax.make_jaxpr(bias_grad)(bias).jaxpr.eqns}
            loss = jax.grad(lambda x, k, b: (F.conv2d(x, k, b) ** 2).sum(), (0, 1, 2))
            grads[mode] = jax.jit(loss)(x, k, bias)
        assert ("dot_general" in names) == has_dot and ("reduce_sum" in names) != has_dot
    for a, b in zip(grads["cpu"], grads["xla"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_add_bias_below_min_channels_is_the_plain_sum():
    y, bias = jnp.ones((4, 8)), jnp.ones((8,))
    names = {e.primitive.name for e in jax.make_jaxpr(jax.grad(
        lambda b: cpu_conv.add_bias(y, b, min_channels=9)[0, 0]))(bias).jaxpr.eqns}
    assert "reduce_sum" in names and "dot_general" not in names
