"""Candidate speed levers not (or not yet) in `jaxconv.functional`, for the benchmarks to swap in.

Each function has the signature and results of the `jaxconv.functional` op it could replace
(tested in `tests/test_benchmark_levers.py`), so a benchmark can swap it in by assignment
(`jaxconv.functional.conv2d = levers.conv2d_im2col`: the layers call `F.conv2d` at call time).
The winners measured so far live in the library as its CPU lowering (`F.lowering`): separable
max pool, sliced weighted Lp pool, position-major LC, separable LCN window sums, im2col for
single-channel convs.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconv.functional as F
from jaxconv.functional import conv as _conv
from jaxconv.functional._args import (
    check_image,
    flatten_batch,
    reduction_dtype,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional.conv import im2col_conv
from jaxconv.functional.pooling import _abs_pow, _safe_root

# The original, kept even after a benchmark swaps the F.conv2d attribute.
_LAX_CONV2D = F.conv2d


def conv2d_im2col(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` as patches + one matmul `(N*oh*ow, kh*kw*C) @ (kh*kw*C, O)` for every C_in.

    The library does this only for C_in = 1 on CPU; from 64 input channels on it was 1.6x
    slower than lax.conv with the XLA flags on. Grouped convolutions fall back to `F.conv2d`.
    Same arguments, shapes and results (up to float rounding: the sum order differs).
    """
    if groups != 1:
        return _LAX_CONV2D(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                           groups=groups)
    # Validate exactly as F.conv2d (same errors): trace it for shapes only, no compute.
    jax.eval_shape(functools.partial(_LAX_CONV2D, stride=stride, padding=padding,
                                     dilation=dilation), x, kernel, bias)
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    s, d = to_pair(stride, "stride"), to_pair(dilation, "dilation")
    pads = resolve_padding(padding, x.shape[-3:-1], kernel.shape[:2], s, d)
    xf, batch = flatten_batch(x.astype(dtype))
    y = im2col_conv(xf, kernel.astype(dtype), s, pads, d)
    if bias is not None:
        y = y + bias.astype(dtype)
    return unflatten_batch(y, batch)


def _conv2d_with(setting, value, x, kernel, bias, **kwargs):
    """`F.conv2d` traced with `jaxconv.functional.conv`'s module constant `setting` = `value`."""
    previous = getattr(_conv, setting)
    setattr(_conv, setting, value)
    try:
        return _LAX_CONV2D(x, kernel, bias, **kwargs)
    finally:
        setattr(_conv, setting, previous)


def conv2d_unbanded(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` without the banded CPU forms (`conv.banded_conv`, `conv.tiled_banded_conv`):
    the lowering before them.

    im2col for C_in = 1 on CPU, `lax.conv` otherwise; the reference the banded form was
    measured against.
    """
    return _conv2d_with("_BANDED_MAX_CIN", 0, x, kernel, bias, stride=stride, padding=padding,
                        dilation=dilation, groups=groups)


def conv2d_untiled(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` with whole bands only (`conv.banded_conv` where `conv.tiled_banded_conv`
    would run, e.g. LeNet's C1): the lowering before the tiles."""
    return _conv2d_with("_TILE_ABOVE", float("inf"), x, kernel, bias, stride=stride,
                        padding=padding, dilation=dilation, groups=groups)


def max_pool_reduce_window(x, window, stride=None, padding="VALID"):
    """`F.max_pool` always through `lax.reduce_window` (the reference for the reshape path)."""
    check_image(x)
    w = to_pair(window, "window")
    s = w if stride is None else to_pair(stride, "stride")
    pads = resolve_padding(padding, x.shape[-3:-1], w, s)
    xf, batch = flatten_batch(x)
    y = lax.reduce_window(xf, np.array(-np.inf, xf.dtype), lax.max, (1,) + w + (1,),
                          (1,) + s + (1,), ((0, 0),) + pads + ((0, 0),))
    return unflatten_batch(y, batch)


def feature_pool_slices(x, group_size, *, p=2.0):
    """`F.feature_pool` without its overflow scaling, the group sum as strided channel slices.

    `x[..., i::g]` is member i of every group, so `sum_i |x[..., i::g]|^p` is the group sum
    without a trailing axis of size g. Not adopted: it was 3x faster forward+backward than
    `F.feature_pool` only without the per-group power-of-two scaling that keeps `F`'s powers
    from overflowing; with that scaling the slice form was no faster forward+backward.
    `p="max"` keeps `F.feature_pool`.
    """
    if p == "max":
        return F.feature_pool(x, group_size, p=p)
    check_image(x)
    c = x.shape[-1]
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if c % group_size:
        raise ValueError(f"channels {c} are not divisible by group_size {group_size}")
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0 or math.isinf(p):
        raise ValueError(f'p must be a finite number > 0 or "max", got {p!r}')
    xr = x.astype(reduction_dtype(x.dtype))
    total = functools.reduce(jnp.add, (_abs_pow(xr[..., i::group_size], p)
                                       for i in range(group_size)))
    return _safe_root(total, p).astype(x.dtype)
