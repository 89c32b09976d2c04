"""Pooling over space (max, average, Lp / Gaussian L2) and over groups of features.

All pools take NHWC `(*batch, height, width, channels)`; `stride` defaults to the window.
Sums are taken in float32 (or wider) and cast back to the input dtype.

Each pool is written with XLA's windowed ops (`lax.reduce_window`, a depthwise convolution for
weighted sums), or reshapes where windows tile the input. Overlapping max pools and weighted Lp
pools have a CPU form too (`cpu.pooling`: strided slices, which ran 2-25x faster
forward+backward on XLA:CPU), chosen at trace time by `jaxconv.functional.lowering`.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.functional.args import (
    Padding,
    check_image,
    check_positive_int,
    flatten_batch,
    reduction_dtype,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional.cpu import pooling as cpu_pooling
from jaxconv.functional.lowerings import use_cpu_forms


def _setup(x, window, stride, padding):
    check_image(x)
    w = to_pair(window, "window")
    s = w if stride is None else to_pair(stride, "stride")
    pads = resolve_padding(padding, x.shape[-3:-1], w, s)
    return w, s, pads


def _window_reduce(xf, init, op, window, stride, pads):
    # `init` must be concrete (NumPy, not jnp): under jit a jnp scalar is a tracer, and
    # reduce_window then falls back to its generic reducer, which has no autodiff rule.
    init = np.array(init, xf.dtype)
    return lax.reduce_window(
        xf, init, op, (1,) + window + (1,), (1,) + stride + (1,), ((0, 0),) + pads + ((0, 0),)
    )


def _tiled(xf, window, pads):
    """`(N, H/kh, kh, W/kw, kw, C)` view for non-overlapping, unpadded pools, else None.

    Reshape + reduce is 3-7x faster than `reduce_window` forward+backward on CPU
    (see benchmarks); the result is identical.
    """
    if pads != ((0, 0), (0, 0)):
        return None
    n, h, w, c = xf.shape
    oh, ow = h // window[0], w // window[1]
    xc = xf[:, : oh * window[0], : ow * window[1], :]
    return xc.reshape(n, oh, window[0], ow, window[1], c)


def max_pool(x, window, stride=None, padding: Padding = "VALID"):
    """Max pooling; padding never wins the max (it is -inf).

    Non-overlapping unpadded pools reduce a reshaped view. Other pools use `lax.reduce_window`
    or, with the CPU lowering (`jaxconv.functional.lowering`), a max of strided slices (same
    values; at exact ties the gradient is split among the tied taps instead of going to the
    first).

    Args:
      x: `(*batch, height, width, channels)`.
      window: int or `(kh, kw)`.
      stride: int or `(sh, sw)`; default `window`.
      padding: as in `conv2d`; default "VALID". Each pad must be < the window.

    Returns:
      `(*batch, out_h, out_w, channels)`; equals `torch.nn.functional.max_pool2d`.

    References:
      Jarrett, Kavukcuoglu, Ranzato & LeCun, ICCV 2009, §2 (max pooling, their P_M layer);
      Krizhevsky et al., NeurIPS 2012, §3.4 (overlapping 3/2 pools).
    """
    w, s, pads = _setup(x, window, stride, padding)
    xf, batch = flatten_batch(x)
    tiles = _tiled(xf, w, pads) if s == w else None
    if tiles is not None:
        y = tiles.max(axis=(2, 4))
    elif use_cpu_forms():
        y = cpu_pooling.max_pool(xf, w, s, pads)
    else:
        y = _window_reduce(xf, -np.inf, lax.max, w, s, pads)
    return unflatten_batch(y, batch)


def _sum_pool(xf, window, stride, pads):
    tiles = _tiled(xf, window, pads) if stride == window else None
    if tiles is not None:
        return tiles.sum(axis=(2, 4))
    return _window_reduce(xf, 0, lax.add, window, stride, pads)


def avg_pool(x, window, stride=None, padding: Padding = "VALID", count_include_pad=True):
    """Average pooling (zero padding).

    Args:
      x: `(*batch, height, width, channels)`.
      window, stride, padding: as in `max_pool`.
      count_include_pad: divide by the full window size (True, PyTorch's default) or by the
        number of input (non-pad) pixels in the window.

    Returns:
      `(*batch, out_h, out_w, channels)`; equals `torch.nn.functional.avg_pool2d`.

    References:
      LeCun et al., Proc. IEEE 1998 (LeNet-5's subsampling layers average 2x2 windows, then
      scale them by a trained coefficient); Jarrett et al., ICCV 2009, §2 (P_A layer).
    """
    w, s, pads = _setup(x, window, stride, padding)
    xf, batch = flatten_batch(x)
    rd = reduction_dtype(x.dtype)
    total = _sum_pool(xf.astype(rd), w, s, pads)
    if count_include_pad:
        y = total / (w[0] * w[1])
    else:
        ones = jnp.ones((1,) + xf.shape[1:3] + (1,), rd)
        y = total / _sum_pool(ones, w, s, pads)
    return unflatten_batch(y.astype(x.dtype), batch)


def _safe_root(total, p):
    """`total ** (1/p)` with a finite gradient (0) where `total == 0`; NaN stays NaN."""
    positive = total > 0
    root = jnp.where(positive, total, 1.0) ** (1.0 / p)
    return jnp.where(positive, root, jnp.where(total == 0, 0.0, jnp.nan))


def pow2_scale(m):
    """A power of two `2**e` with `m / 2**e` in [0.5, 1); 1 where `m` is 0, inf or NaN.

    Dividing by it is exact in floating point, so `s * f(x / s)` equals `f(x)` for any
    1-homogeneous `f` while `x / s` stays near 1 (no overflow or underflow in powers of it).
    `e` is clipped to [-125, 127] so both `2**e` and `2**-e` are normal float32 numbers. No
    gradient flows through it.
    """
    _, e = jnp.frexp(m)
    return lax.stop_gradient(jnp.ldexp(jnp.ones_like(m), jnp.clip(e, -125, 127)))


def _check_p(p, extra=""):
    if (not isinstance(p, numbers.Real) or isinstance(p, bool) or not p > 0
            or math.isinf(p)):
        raise ValueError(f"p must be a finite number > 0{extra}, got {p!r}")


def _abs_pow(x, p):
    """`|x|^p`; for p < 1 its (infinite) derivative at x = 0 is taken as 0."""
    if p == 2:
        return jnp.square(x)
    if p >= 1:
        return jnp.abs(x) ** p
    nonzero = x != 0
    return jnp.where(nonzero, jnp.abs(jnp.where(nonzero, x, 1)) ** p, 0)


def gaussian_factors(window, sigma=None):
    """`(g_rows, g_cols)`, NumPy float64, each summing to 1: `gaussian_window`'s two factors.

    The window is a product of per-axis Gaussians, so `outer(g_rows, g_cols)` equals
    `gaussian_window(window, sigma)` (up to rounding); NumPy, so they are constants under jit.
    Arguments and errors as in `gaussian_window`.
    """
    k = to_pair(window, "window")
    if sigma is None:
        sig = (0.25 * k[0], 0.25 * k[1])
    else:
        values = (sigma, sigma) if isinstance(sigma, numbers.Real) else sigma
        if (isinstance(values, str) or not hasattr(values, "__len__") or len(values) != 2
                or not all(isinstance(v, numbers.Real) for v in values)):
            raise ValueError(f"sigma must be a number or a pair (sh, sw) of numbers, "
                             f"got {sigma!r}")
        sig = (float(values[0]), float(values[1]))
    if not min(sig) > 0:  # also rejects NaN
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / sd) ** 2) for n, sd in zip(k, sig)]
    return axes[0] / axes[0].sum(), axes[1] / axes[1].sum()


def gaussian_window(window, sigma=None):
    """Gaussian weights over a window, normalised to sum 1 (Sermanet et al. 2012's L2 pooling).

    Args:
      window: int or `(kh, kw)`.
      sigma: standard deviation in pixels, a float or `(sh, sw)`; default `0.25 * window`
        (Torch7's `image.gaussian` default).

    Returns:
      `(kh, kw)` float32 array, centred at `((kh-1)/2, (kw-1)/2)`, summing to 1.
    """
    g = np.outer(*gaussian_factors(window, sigma))
    return jnp.asarray(g / g.sum(), jnp.float32)


def lp_pool(x, p, window, stride=None, padding: Padding = "VALID", weights=None):
    """Lp pooling `(sum_window w * |x|^p)^(1/p)` with zero padding.

    With `weights=None` (w = 1), VALID padding and x >= 0 or even p, this equals PyTorch's
    `lp_pool2d`. `p=2` with `weights=gaussian_window(...)` is Sermanet et al. 2012's L2
    pooling. The gradient is finite (zero) where a window is all zeros; for p < 1 the
    (infinite) derivative of |x|^p at x = 0 is taken as 0.

    Each channel of each image is divided by a power of two near its largest |x| before the
    power and multiplied back after the root (exact in floating point), so `|x|^p` cannot
    overflow or underflow: any finite float32 input gives a finite output and gradient (an
    output is inf only when the true value exceeds the float32 range). A window whose values
    are all below `2**(-126/p)` times the channel's maximum (p = 3: ~2e-13) pools to 0.

    Args:
      x: `(*batch, height, width, channels)`.
      p: the norm's power, > 0 (p = 1 sums |x|, p -> inf tends to max pooling).
      window, stride, padding: as in `max_pool`.
      weights: optional `(kh, kw)` non-negative weights, used as given (checked when
        concrete). The weighted sum is a depthwise convolution, or with the CPU lowering
        (`jaxconv.functional.lowering`) a sum of weighted strided slices.

    Returns:
      `(*batch, out_h, out_w, channels)`.

    References:
      Sermanet, Chintala & LeCun, "Convolutional neural networks applied to house numbers
      digit classification", ICPR 2012; Hyvärinen & Köster 2007.
    """
    _check_p(p)
    w, s, pads = _setup(x, window, stride, padding)
    xf, batch = flatten_batch(x)
    rd = reduction_dtype(x.dtype)
    xf = xf.astype(rd)
    scale = pow2_scale(jnp.abs(xf).max(axis=(1, 2), keepdims=True))  # (N, 1, 1, C)
    powered = _abs_pow(xf / scale, p)
    if weights is None:
        total = _sum_pool(powered, w, s, pads)
    else:
        _check_weights(weights)
        weights = jnp.asarray(weights, rd)
        if weights.shape != w:
            raise ValueError(f"weights must have the window's shape {w}, got {weights.shape}")
        total = _weighted_window_sum(powered, weights, w, s, pads)
    return unflatten_batch((_safe_root(total, p) * scale).astype(x.dtype), batch)


def _weighted_window_sum(v, weights, window, stride, pads):
    """`sum_{a,b} weights[a, b] * v_padded[:, i*sh + a, j*sw + b, :]`, zero padding.

    A depthwise convolution; the CPU lowering sums weighted strided slices
    (`cpu.pooling.weighted_window_sum`).
    """
    if use_cpu_forms():
        return cpu_pooling.weighted_window_sum(v, weights, window, stride, pads)
    kernel = jnp.broadcast_to(weights[:, :, None, None], window + (1, v.shape[-1]))
    return lax.conv_general_dilated(
        v, kernel, stride, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=v.shape[-1],
    )


def _check_weights(weights):
    """Rejects concrete weights with a negative or non-finite entry (traced ones pass)."""
    try:
        values = np.asarray(weights, np.float64)
    except jax.errors.TracerArrayConversionError:
        return
    if not (np.isfinite(values) & (values >= 0)).all():
        raise ValueError(f"weights must be finite and >= 0, got {values.tolist()}")


def feature_pool(x, group_size, *, p=2.0):
    """Pooling over groups of `group_size` consecutive channels ("L2 pooling over features").

    `y[..., g] = (sum_{c in group g} |x[..., c]|^p)^(1/p)`; `p="max"` gives maxout
    (Goodfellow et al. 2013). Gradient finite (zero) where a group is all zeros; for p < 1 the
    (infinite) derivative of |x|^p at x = 0 is taken as 0. Each group is divided by a power of
    two near its largest |x| before the power (exact; see `lp_pool`), so any finite input gives
    a finite output and gradient.

    Args:
      x: `(*batch, height, width, channels)`, channels divisible by `group_size`.
      group_size: channels per group.
      p: a finite number > 0, or "max".

    Returns:
      `(*batch, height, width, channels // group_size)`.
    """
    check_image(x)
    c = x.shape[-1]
    group_size = check_positive_int(group_size, "group_size")
    if c % group_size:
        raise ValueError(f"channels {c} are not divisible by group_size {group_size}")
    groups = x.reshape(x.shape[:-1] + (c // group_size, group_size))
    if p == "max":
        return groups.max(axis=-1)
    _check_p(p, ' or "max"')
    groups = groups.astype(reduction_dtype(x.dtype))
    scale = pow2_scale(jnp.abs(groups).max(axis=-1, keepdims=True))
    total = _abs_pow(groups / scale, p).sum(axis=-1)
    return (_safe_root(total, p) * scale[..., 0]).astype(x.dtype)


def adaptive_avg_pool(x, output_size):
    """Adaptive average pooling to a fixed `(out_h, out_w)` (PyTorch's bins).

    Bin i covers rows `floor(i*H/out_h)` to `ceil((i+1)*H/out_h)` (exclusive), as in
    `torch.nn.AdaptiveAvgPool2d`; torchvision's AlexNet uses it to reach 6x6.

    Args:
      x: `(*batch, height, width, channels)`.
      output_size: int or `(out_h, out_w)`.

    Returns:
      `(*batch, out_h, out_w, channels)`.
    """
    check_image(x)
    oh, ow = to_pair(output_size, "output_size")
    h, w = x.shape[-3:-1]
    if (h, w) == (oh, ow):
        return x
    if h % oh == 0 and w % ow == 0:
        return avg_pool(x, (h // oh, w // ow))
    rd = reduction_dtype(x.dtype)

    def bins(n, out):
        return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]

    rows = []
    for r0, r1 in bins(h, oh):
        band = x[..., r0:r1, :, :].astype(rd)
        rows.append(jnp.stack([band[..., c0:c1, :].mean(axis=(-3, -2)) for c0, c1 in bins(w, ow)],
                              axis=-2))
    return jnp.stack(rows, axis=-3).astype(x.dtype)
