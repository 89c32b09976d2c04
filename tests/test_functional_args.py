"""Tests for `jaxconv.functional.args` and the contract every functional op shares.

The shared contract: NHWC input of any rank >= 3 (leading batch dims are flattened and restored),
`jit`/`vmap`/`grad` work, bf16 in gives bf16 out close to the float32 result, and bad arguments
raise `ValueError` naming the expected and the actual value.
"""

import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxconv import functional as F
from jaxconv.functional import args

H, W, C = 5, 6, 4
_rng = np.random.default_rng(0)
_CONV_K = jnp.asarray(_rng.normal(size=(3, 3, C, 2)), jnp.float32)
_CONV_B = jnp.asarray(_rng.normal(size=(2,)), jnp.float32)
_LC_K = jnp.asarray(_rng.normal(size=(3, 4, 3, 3, C, 2)), jnp.float32)  # VALID on 5x6 -> 3x4
_LC_B = jnp.asarray(_rng.normal(size=(3, 4, 2)), jnp.float32)

# Every public op, closed over its static arguments, on an (..., 5, 6, 4) input.
OPS = {
    "conv2d": lambda x: F.conv2d(x, _CONV_K.astype(x.dtype), _CONV_B.astype(x.dtype), stride=2),
    "conv2d_dilated": lambda x: F.conv2d(x, _CONV_K.astype(x.dtype), dilation=2, padding=1),
    "locally_connected2d": lambda x: F.locally_connected2d(
        x, _LC_K.astype(x.dtype), _LC_B.astype(x.dtype), kernel_size=3
    ),
    "max_pool": lambda x: F.max_pool(x, 2, 1),
    "max_pool_same": lambda x: F.max_pool(x, 3, 2, "SAME"),
    "avg_pool": lambda x: F.avg_pool(x, 2),
    "avg_pool_same_exclude": lambda x: F.avg_pool(x, 3, 2, "SAME", count_include_pad=False),
    "lp_pool": lambda x: F.lp_pool(x, 2, 2),
    "lp_pool_gaussian": lambda x: F.lp_pool(x, 3, 3, 1, 1, weights=F.gaussian_window(3)),
    "feature_pool": lambda x: F.feature_pool(x, 2),
    "feature_pool_max": lambda x: F.feature_pool(x, 4, p="max"),
    "adaptive_avg_pool": lambda x: F.adaptive_avg_pool(x, (2, 4)),
    "local_contrast_norm": lambda x: F.local_contrast_norm(x, 3),
    "local_response_norm": lambda x: F.local_response_norm(x, 3, alpha=0.1),
}
JITTED = {name: jax.jit(op) for name, op in OPS.items()}  # shared, so shapes compile once
# One entry per public op: the variants above differ after `flatten_batch`, not in batch handling.
PUBLIC = ["adaptive_avg_pool", "avg_pool", "conv2d", "feature_pool", "local_contrast_norm",
          "local_response_norm", "locally_connected2d", "lp_pool", "max_pool"]


def _image(*batch, seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=batch + (H, W, C)), dtype)


# ---------------------------------------------------------------- to_pair


@pytest.mark.parametrize(
    "value, expected",
    [(3, (3, 3)), ((2, 5), (2, 5)), ([4, 1], (4, 1)), ((np.int64(2), np.int32(3)), (2, 3))],
)
def test_to_pair_accepts_ints_and_pairs(value, expected):
    pair = args.to_pair(value, "window")
    assert pair == expected
    assert all(type(v) is int for v in pair)


@pytest.mark.parametrize(
    "value, message",
    [
        (0, "window must be >= 1 on each axis, got 0"),
        ((2, -1), "window must be >= 1 on each axis, got (2, -1)"),
        (2.0, "window must be an int or a pair (h, w) of ints, got 2.0"),
        ((2.0, 2), "window must hold ints, got (2.0, 2)"),
        (True, "window must be an int or a pair (h, w) of ints, got True"),
        ((1, 2, 3), "window must be an int or a pair (h, w) of ints, got (1, 2, 3)"),
        ("33", "window must be an int or a pair (h, w) of ints, got '33'"),
    ],
)
def test_to_pair_rejects(value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        args.to_pair(value, "window")


def test_to_pair_minimum():
    assert args.to_pair(0, "pad", minimum=0) == (0, 0)
    with pytest.raises(ValueError, match=re.escape("pad must be >= 0 on each axis, got -1")):
        args.to_pair(-1, "pad", minimum=0)


# ---------------------------------------------------------------- resolve_padding


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding_matches_lax(stride, dilation):
    # lax.padtype_to_pads is XLA's own SAME rule: out = ceil(in / stride), odd pad at the end.
    for n, k in itertools.product(range(1, 10), range(1, 5)):
        eff = (k - 1) * dilation + 1
        pads = args.resolve_padding("SAME", (n, n + 1), (k, k), (stride, stride),
                                     (dilation, dilation))
        assert pads == tuple(
            tuple(p) for p in lax.padtype_to_pads((n, n + 1), (eff, eff), (stride, stride), "SAME")
        )
        out = args.output_size((n, n + 1), pads, (k, k), (stride, stride), (dilation, dilation))
        assert out == (math.ceil(n / stride), math.ceil((n + 1) / stride))


@pytest.mark.parametrize(
    "padding, expected",
    [
        ("VALID", ((0, 0), (0, 0))),
        ("valid", ((0, 0), (0, 0))),
        ("SAME", ((1, 2), (0, 1))),  # totals 3 and 1: the odd pixel goes at the end
        ("same", ((1, 2), (0, 1))),
        (1, ((1, 1), (1, 1))),
        ((2, 0), ((2, 2), (0, 0))),
        ([0, 1], ((0, 0), (1, 1))),
        (((0, 3), (1, 0)), ((0, 3), (1, 0))),
        ([[3, 0], [0, 1]], ((3, 0), (0, 1))),
    ],
)
def test_resolve_padding_forms(padding, expected):
    # in (6, 7), window (4, 2), stride 1: SAME totals are 4 - 1 = 3 and 2 - 1 = 1.
    assert args.resolve_padding(padding, (6, 7), (4, 2), (1, 1)) == expected


@pytest.mark.parametrize(
    "padding, message",
    [
        ("FULL", 'padding must be "SAME", "VALID", an int or pairs, got \'FULL\''),
        (-1, "padding must be >= 0, got ((-1, -1), (-1, -1)) on height"),
        (((0, 0), (0, -2)), "padding must be >= 0, got ((0, 0), (0, -2)) on width"),
        (3, "padding ((3, 3), (3, 3)) is >= the window 3 on height"),
        (((0, 1), (0, 3)), "padding ((0, 1), (0, 3)) is >= the window 3 on width"),
        ((1, (2, 3)), "padding must be an int, (ph, pw) or ((top, bottom), (left, right))"),
        ((1, 2, 3), 'padding must be "SAME", "VALID", an int, (ph, pw)'),
        (1.5, 'padding must be "SAME", "VALID", an int, (ph, pw)'),
    ],
)
def test_resolve_padding_rejects(padding, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        args.resolve_padding(padding, (8, 8), (3, 3), (1, 1))


def test_resolve_padding_dilated_window_bounds_the_pad():
    # Dilation 2 makes a 3-tap window 5 wide, so a pad of 4 is allowed and 5 is not.
    assert args.resolve_padding(4, (8, 8), (3, 3), (1, 1), (2, 2)) == ((4, 4), (4, 4))
    with pytest.raises(ValueError, match=re.escape("is >= the window 5 on height")):
        args.resolve_padding(5, (8, 8), (3, 3), (1, 1), (2, 2))


@pytest.mark.parametrize(
    "in_hw, padding, message",
    [
        ((2, 8), "VALID", "window 3 (dilated) is larger than the padded input 2 on height "
                          "(input 2, padding (0, 0))"),
        ((8, 1), ((0, 0), (1, 0)), "window 3 (dilated) is larger than the padded input 2 on "
                                   "width (input 1, padding (1, 0))"),
    ],
)
def test_resolve_padding_window_larger_than_input(in_hw, padding, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        args.resolve_padding(padding, in_hw, (3, 3), (1, 1))


@pytest.mark.parametrize(
    "in_hw, pads, window, stride, dilation, expected",
    [
        ((7, 8), ((0, 0), (0, 0)), (3, 2), (1, 1), (1, 1), (5, 7)),
        ((7, 8), ((1, 1), (0, 2)), (3, 2), (2, 3), (1, 1), (4, 3)),
        ((7, 8), ((0, 0), (0, 0)), (3, 3), (1, 2), (2, 2), (3, 2)),
        ((1, 1), ((0, 0), (0, 0)), (1, 1), (5, 5), (1, 1), (1, 1)),
    ],
)
def test_output_size(in_hw, pads, window, stride, dilation, expected):
    assert args.output_size(in_hw, pads, window, stride, dilation) == expected


# ---------------------------------------------------------------- check_image and helpers


@pytest.mark.parametrize(
    "x, message",
    [
        ([[1.0]], "x must be an array (*batch, height, width, channels), got <class 'list'>"),
        (jnp.zeros((4, 3)), "x must have rank >= 3 (*batch, height, width, channels), got shape "
                            "(4, 3)"),
        (jnp.zeros((2, 2, 1), jnp.int32), "x must be a floating array (e.g. images scaled to "
                                          "float32), got dtype int32"),
        (jnp.zeros((2, 2, 0)), "x has an empty height/width/channel dim: shape (2, 2, 0)"),
    ],
)
def test_check_image_rejects(x, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        args.check_image(x)


@pytest.mark.parametrize("shape", [(3, 4, 2), (5, 3, 4, 2), (2, 3, 3, 4, 2)])
def test_flatten_unflatten_round_trip(shape):
    x = jnp.arange(math.prod(shape), dtype=jnp.float32).reshape(shape)
    flat, batch = args.flatten_batch(x)
    assert flat.shape == (math.prod(shape[:-3]),) + shape[-3:]
    assert batch == shape[:-3]
    np.testing.assert_array_equal(args.unflatten_batch(flat, batch), x)


@pytest.mark.parametrize(
    "dtype, expected",
    [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32), (jnp.float32, jnp.float32)],
)
def test_reduction_dtype(dtype, expected):
    assert args.reduction_dtype(dtype) == expected


# ---------------------------------------------------------------- contract of every op


@pytest.mark.parametrize("name", PUBLIC)
def test_leading_batch_dims_and_vmap_match_flattened_batch(name):
    op = JITTED[name]
    x = _image(2, 3)
    flat = op(x.reshape((6,) + x.shape[2:]))
    y = op(x)
    assert y.shape == (2, 3) + flat.shape[1:]
    np.testing.assert_allclose(y.reshape(flat.shape), flat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(op(x[1, 2]), y[1, 2], rtol=1e-6, atol=1e-6)  # single image
    vmapped = jax.jit(jax.vmap(jax.vmap(OPS[name])))(x)  # each call sees one (H, W, C) image
    np.testing.assert_allclose(vmapped, y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_grad_is_finite_and_shaped_like_input(name):
    op = OPS[name]
    x = _image(2, seed=2)
    cotangent = np.random.default_rng(3).normal(size=jax.eval_shape(op, x).shape)
    g = jax.jit(jax.grad(lambda x: jnp.sum(op(x) * cotangent)))(x)
    assert g.shape == x.shape
    assert np.isfinite(g).all()
    assert np.abs(g).max() > 0


@pytest.mark.parametrize("name", sorted(OPS))
def test_bfloat16_in_bfloat16_out(name):
    op = JITTED[name]
    x32 = _image(6, seed=4)
    x16 = x32.astype(jnp.bfloat16)
    y16 = op(x16)
    assert y16.dtype == jnp.bfloat16
    # Against the f32 op on the same (bf16-rounded) input: only bf16 rounding of the result
    # (and of conv kernels) remains, a few parts in 2^8.
    y32 = op(x16.astype(jnp.float32))
    np.testing.assert_allclose(y16.astype(jnp.float32), y32, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("name", sorted(OPS))
def test_rejects_rank_2(name):
    x = jax.ShapeDtypeStruct((H, W), jnp.float32)
    with pytest.raises(ValueError, match=re.escape(f"rank >= 3 (*batch, height, width, "
                                                   f"channels), got shape {x.shape}")):
        jax.eval_shape(OPS[name], x)  # raised while tracing, as under jit


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_rejects_non_float(name, dtype):
    x = jax.ShapeDtypeStruct((2, H, W, C), dtype)
    with pytest.raises(ValueError, match=f"must be a floating array .*got dtype {x.dtype}"):
        jax.eval_shape(OPS[name], x)


# Windowed ops as (window, padding) -> op, for the window-size and padding errors.
WINDOWED = {
    "conv2d": lambda k, pad: lambda x: F.conv2d(x, jnp.ones((k, k, C, 2)), padding=pad),
    "locally_connected2d": lambda k, pad: lambda x: F.locally_connected2d(
        x, jnp.ones((1, 1, k, k, C, 2)), kernel_size=k, padding=pad
    ),
    "max_pool": lambda k, pad: lambda x: F.max_pool(x, k, padding=pad),
    "avg_pool": lambda k, pad: lambda x: F.avg_pool(x, k, padding=pad),
    "lp_pool": lambda k, pad: lambda x: F.lp_pool(x, 2, k, padding=pad),
}


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_window_larger_than_padded_input_raises(name):
    op = WINDOWED[name](7, "VALID")
    with pytest.raises(ValueError, match=re.escape(
            "window 7 (dilated) is larger than the padded input 5 on height")):
        op(_image())


@pytest.mark.parametrize("name", sorted(WINDOWED))
def test_padding_not_below_window_raises(name):
    op = WINDOWED[name](2, ((0, 0), (2, 0)))
    with pytest.raises(ValueError, match=re.escape(
            "padding ((0, 0), (2, 0)) is >= the window 2 on width")):
        op(_image())
