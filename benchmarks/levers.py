"""Candidate speed levers, measured by `train_step.py` / `layers.py` before anything moves.

Each function here has the signature and results of the `jaxconv.functional` op it could
replace (tested in `tests/test_benchmark_levers.py`), so a benchmark can swap it in by
assignment (`jaxconv.functional.conv2d = levers.conv2d_im2col`: the layers call
`F.conv2d` at call time) and the lead can move the winners into `jaxconv/functional/`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconv.functional as F
from jaxconv.functional._args import (
    check_image,
    flatten_batch,
    reduction_dtype,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional.pooling import _abs_pow, _safe_root

# The originals, kept even after a benchmark swaps the F.<op> attributes.
_LAX_CONV2D = F.conv2d
_LAX_LC2D = F.locally_connected2d


def conv2d_im2col(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` as patches + one matmul `(N*oh*ow, kh*kw*C) @ (kh*kw*C, O)` ("im2col").

    Grouped convolutions fall back to `F.conv2d`. Same arguments, shapes and results (up to
    float rounding: the sum order differs).
    """
    if groups != 1:
        return _LAX_CONV2D(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                           groups=groups)
    # Validate exactly as F.conv2d (same errors): trace it for shapes only, no compute.
    jax.eval_shape(functools.partial(_LAX_CONV2D, stride=stride, padding=padding,
                                     dilation=dilation), x, kernel, bias)
    kh, kw, cin, cout = kernel.shape
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    xf, batch = flatten_batch(x.astype(dtype))
    if (kh, kw) == (1, 1) and to_pair(stride, "stride") == (1, 1) and padding in ("SAME",
                                                                                    "VALID", 0):
        y = xf @ kernel.astype(dtype).reshape(cin, cout)
    else:
        patches = F.extract_patches(xf, (kh, kw), stride=stride, padding=padding,
                                    dilation=dilation)
        n, oh, ow = patches.shape[:3]
        y = (patches.reshape(n * oh * ow, kh * kw * cin)
             @ kernel.astype(dtype).reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)
    if bias is not None:
        y = y + bias.astype(dtype)
    return unflatten_batch(y, batch)


# Where im2col pays in a train step (YNN fusion off; benchmarks/README.md): a single input
# channel. LeNet's C1 (5x5, 1 -> 6) stage's weight gradient ran 1.7x faster (15.7 -> 9.2 ms,
# batch 128) and the LeNet step 1.2-1.3x; lax.conv on one channel reaches only 3-4 GFLOP/s.
# At C_in = 3 (CIFAR's first 3x3 conv) the stage was no faster in context (110 vs 111 ms) and
# the CIFAR step 1-10 % slower; from C_in = 6 on lax.conv wins outright.
IM2COL_MAX_IN_CHANNELS = 1


def conv2d_hybrid(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d`: `conv2d_im2col` when `C_in <= IM2COL_MAX_IN_CHANNELS`, else lax.conv."""
    fn = conv2d_im2col if groups == 1 and kernel.shape[2] <= IM2COL_MAX_IN_CHANNELS \
        else _LAX_CONV2D
    return fn(x, kernel, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)


def locally_connected2d_bmm(x, kernel, bias=None, *, kernel_size, stride=1, padding="VALID",
                            dilation=1):
    """`F.locally_connected2d` as one batched matmul over positions, patches position-major.

    Patches are built as `(oh*ow, N, kh*kw*C)` so the contraction is a plain batched matmul
    `(P, N, K) @ (P, K, O)` with no transpose of the big operand.
    """
    jax.eval_shape(functools.partial(_LAX_LC2D, kernel_size=kernel_size, stride=stride,
                                     padding=padding, dilation=dilation), x, kernel, bias)
    k = to_pair(kernel_size, "kernel_size")
    xf, batch = flatten_batch(x)
    patches = F.extract_patches(xf, k, stride=stride, padding=padding, dilation=dilation)
    n, oh, ow = patches.shape[:3]
    kk = k[0] * k[1] * xf.shape[-1]
    cout = kernel.shape[-1]
    p = jnp.moveaxis(patches.reshape(n, oh * ow, kk), 1, 0)
    y = lax.dot_general(p, kernel.reshape(oh * ow, kk, cout), (((2,), (1,)), ((0,), (0,))))
    y = jnp.moveaxis(y, 0, 1).reshape(n, oh, ow, cout)
    if bias is not None:
        y = y + bias
    return unflatten_batch(y, batch)


def _separable_window_sum(v, g_rows, g_cols):
    """Zero-padded centred window sum with weights `outer(g_rows, g_cols)`: 2k shifted slices."""
    k = len(g_rows)
    r = k // 2
    h, w = v.shape[1:3]
    vp = jnp.pad(v, ((0, 0), (r, r), (0, 0), (0, 0)))
    rows = sum(float(g_rows[a]) * vp[:, a:a + h] for a in range(k))
    rp = jnp.pad(rows, ((0, 0), (0, 0), (r, r), (0, 0)))
    return sum(float(g_cols[b]) * rp[:, :, b:b + w] for b in range(k))


def gaussian_factors(window, sigma=None):
    """NumPy `(g_rows, g_cols)` with `outer(g_rows, g_cols) == F.gaussian_window(window, sigma)`.

    `gaussian_window` is a product of per-axis Gaussians normalised to sum 1, so it is the
    outer product of the per-axis Gaussians, each normalised to sum 1. NumPy (not jnp), so
    the weights are compile-time constants under `jit`.
    """
    k = to_pair(window, "window")
    if sigma is None:
        sig = (0.25 * k[0], 0.25 * k[1])
    elif isinstance(sigma, (int, float)):
        sig = (float(sigma), float(sigma))
    else:
        sig = tuple(float(v) for v in sigma)
    if min(sig) <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    out = []
    for n, sd in zip(k, sig):
        a = np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / sd) ** 2)
        out.append(a / a.sum())
    return out[0], out[1]


def local_contrast_norm_separable(x, kernel_size=9, sigma=None, *, eps=1e-4):
    """`F.local_contrast_norm` with its Gaussian window sums as separable shifted-slice sums.

    The Gaussian is `outer(g, g)` (`gaussian_window` is a product of per-axis Gaussians), so
    each 1-channel k x k convolution becomes k weighted row shifts then k column shifts:
    2k multiply-adds per pixel instead of k^2, and elementwise ops XLA fuses.
    """
    check_image(x)
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    g1, g2 = gaussian_factors(kernel_size, sigma)
    xf, batch = flatten_batch(x)
    rd = reduction_dtype(x.dtype)
    xf = xf.astype(rd)
    c = xf.shape[-1]

    def window_sum(v):
        return _separable_window_sum(v, g1, g2)

    # Centre each image first, exactly as F.local_contrast_norm does (an offset must not round
    # into fake contrast); only the window sums change.
    xf = xf - xf.mean(axis=(1, 2, 3), keepdims=True)
    coef = window_sum(jnp.ones((1,) + xf.shape[1:3] + (1,), rd))
    mean = window_sum(xf.sum(-1, keepdims=True) / c) / coef
    v = xf - mean
    var = window_sum(jnp.square(v).sum(-1, keepdims=True) / c) / coef
    positive = var > 1e-20
    std = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)
    image_mean = std.mean(axis=(1, 2), keepdims=True)
    y = v / jnp.maximum(jnp.maximum(image_mean, std), eps)
    return unflatten_batch(y.astype(x.dtype), batch)


_LAX_MAX_POOL = F.max_pool
_LAX_LP_POOL = F.lp_pool
_LAX_FEATURE_POOL = F.feature_pool


def _strided_taps(xp, axis, k, s, out):
    """The k strided slices `xp[..., a + s*i, ...]` (i < out) along `axis`, a = 0..k-1."""
    taps = []
    for a in range(k):
        start = [0] * xp.ndim
        limit = list(xp.shape)
        strides = [1] * xp.ndim
        start[axis], limit[axis], strides[axis] = a, a + (out - 1) * s + 1, s
        taps.append(lax.slice(xp, start, limit, strides))
    return taps


def max_pool_separable(x, window, stride=None, padding="VALID"):
    """`F.max_pool` as a max over rows then over columns of strided slices.

    Non-overlapping unpadded pools keep `F.max_pool`'s reshape path. Otherwise
    (AlexNet's 3/2) the max over the kh row taps, then over the kw column taps, replaces
    `lax.reduce_window`, whose backward (`select_and_scatter`) was 5-12x slower. The forward
    is bit-identical (-inf padding, as in `F.max_pool`). Gradient at ties: split among the
    tied taps (as in the reshape path), where `reduce_window` gives it all to the first.
    """
    check_image(x)
    w = to_pair(window, "window")
    s = w if stride is None else to_pair(stride, "stride")
    pads = resolve_padding(padding, x.shape[-3:-1], w, s)
    if s == w and pads == ((0, 0), (0, 0)):
        return _LAX_MAX_POOL(x, window, stride, padding)
    xf, batch = flatten_batch(x)
    oh, ow = ((n + lo + hi - k) // st + 1 for n, (lo, hi), k, st in
              zip(xf.shape[1:3], pads, w, s))
    xp = jnp.pad(xf, ((0, 0),) + pads + ((0, 0),), constant_values=-jnp.inf)
    rows = functools.reduce(jnp.maximum, _strided_taps(xp, 1, w[0], s[0], oh))
    y = functools.reduce(jnp.maximum, _strided_taps(rows, 2, w[1], s[1], ow))
    return unflatten_batch(y, batch)


def lp_pool_slices(x, p, window, stride=None, padding="VALID", weights=None):
    """`F.lp_pool`; with `weights`, the weighted window sum as kh*kw weighted strided slices.

    `F.lp_pool` sums weighted windows with a depthwise convolution (`feature_group_count=C`),
    which XLA:CPU ran 25-45x slower than the max pool; a sum of `w[a, b] * |x|^p` taps is
    one fused elementwise loop. Same results up to float rounding. Without weights it is
    `F.lp_pool` unchanged.
    """
    if weights is None:
        return _LAX_LP_POOL(x, p, window, stride, padding)
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0 or math.isinf(p):
        raise ValueError(f"p must be a finite number > 0, got {p!r}")
    check_image(x)
    w = to_pair(window, "window")
    s = w if stride is None else to_pair(stride, "stride")
    pads = resolve_padding(padding, x.shape[-3:-1], w, s)
    xf, batch = flatten_batch(x)
    rd = reduction_dtype(x.dtype)
    weights = jnp.asarray(weights, rd)
    if weights.shape != w:
        raise ValueError(f"weights must have the window's shape {w}, got {weights.shape}")
    powered = _abs_pow(xf.astype(rd), p)
    oh, ow = ((n + lo + hi - k) // st + 1 for n, (lo, hi), k, st in
              zip(xf.shape[1:3], pads, w, s))
    pp = jnp.pad(powered, ((0, 0),) + pads + ((0, 0),))
    total = None
    for a, row in enumerate(_strided_taps(pp, 1, w[0], s[0], oh)):
        for b, tap in enumerate(_strided_taps(row, 2, w[1], s[1], ow)):
            term = weights[a, b] * tap
            total = term if total is None else total + term
    return unflatten_batch(_safe_root(total, p).astype(x.dtype), batch)


def feature_pool_slices(x, group_size, *, p=2.0):
    """`F.feature_pool`, the Lp sum over each group as `group_size` strided channel slices.

    `x[..., i::g]` is channel i of every group, so `sum_i |x[..., i::g]|^p` is the group sum
    without a trailing axis of size g (which XLA:CPU reduced 2x slower). Bit-identical on
    our tests. `p="max"` keeps `F.feature_pool` (already as fast as a max pool).
    """
    if p == "max":
        return _LAX_FEATURE_POOL(x, group_size, p=p)
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
