"""Local contrast normalization (Jarrett et al. 2009) and local response normalization (AlexNet).

Both compute in float32 (or wider) and return the input dtype; both have finite gradients on
all-zero and constant inputs. LCN's window sums are one-channel convolutions; with the CPU
lowering (`jaxconv.functional.lowering`) they are banded matmuls (`cpu.normalization`).
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp
from jax import lax

from jaxconv.functional.args import (
    check_image,
    check_positive_int,
    flatten_batch,
    reduction_dtype,
    unflatten_batch,
)
from jaxconv.functional.cpu import normalization as cpu_norm
from jaxconv.functional.lowerings import use_cpu_forms
from jaxconv.functional.pooling import gaussian_factors, gaussian_window, pow2_scale

# Below this weighted variance, sigma is taken as 0 (its sqrt would have an infinite gradient);
# sigma < 1e-10 is far below any eps used in the max(c, sigma, eps) floor.
_TINY_VARIANCE = 1e-20


def _spatial_sum(x1, w):
    """Zero-padded, centred window sum of a one-channel `(N, H, W, 1)` map with `(k, k)` weights."""
    k = w.shape[0]
    return lax.conv_general_dilated(
        x1, w[:, :, None, None], (1, 1), ((k // 2, k // 2), (k // 2, k // 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _window_mean(hw, channels, window, dtype):
    """The weighted window mean over all channels: a function of `(N, H, W, C)` to
    `(N, H, W, 1)`, the window sum of the channel sum with weights `window / channels`, divided
    by the border coefficient `coef` (the window sum of ones, with weights `window`)."""
    w = window.astype(dtype)
    coef = _spatial_sum(jnp.ones((1,) + tuple(hw) + (1,), dtype), w)

    def mean(v):
        return _spatial_sum(v.sum(-1, keepdims=True), w / channels) / coef

    return mean


def _max_min(x):
    """Each image's max and min, `(N, 1, 1, 1)` each, in one pass over `(N, H, W, C)` x."""
    inf = jnp.array(jnp.inf, x.dtype)
    hi, lo = lax.reduce((x, x), (-inf, inf),
                        lambda a, b: (jnp.maximum(a[0], b[0]), jnp.minimum(a[1], b[1])), (1, 2, 3))
    return hi[:, None, None, None], lo[:, None, None, None]


def local_contrast_norm(x, kernel_size=9, sigma=None, *, eps=1e-4):
    """Local contrast normalization: subtractive then divisive, across all channels.

    With w the `kernel_size^2` Gaussian of std `sigma` (sum 1) divided by C, zero padding and
    `coef[j,k] = sum_{i,p,q} w[p,q] * inside(j+p, k+q)` (border renormalization):

      m = (sum_{i,p,q} w * x[i, j+p, k+q]) / coef,     v = x - m   (one m for all channels)
      sigma = sqrt((sum_{i,p,q} w * v^2[i, j+p, k+q]) / coef),  c = mean_{j,k} sigma (per image)
      y = v / max(c, sigma, eps)

    So `y(a*x + b) == y(x)` for a > 0 (while the eps floor is inactive) and a constant image
    maps to 0. Each centred image is divided by a power of two near its largest |value| (exact
    in floating point; eps is divided by the same), so squares cannot overflow: any finite
    float32 input gives a finite output and gradient.

    The window sums are one-channel convolutions, or with the CPU lowering
    (`jaxconv.functional.lowering`) two banded matmuls per image (the Gaussian is separable)
    with `coef` a NumPy constant: same values up to rounding.

    Args:
      x: `(*batch, height, width, channels)` floating.
      kernel_size: odd window size (centred on the pixel), default 9 as in Jarrett et al.
      sigma: Gaussian std in pixels; default `0.25 * kernel_size` (Torch7's image.gaussian).
      eps: floor of the divisor.

    Returns:
      `(*batch, height, width, channels)` in x's dtype.

    References:
      Jarrett, Kavukcuoglu, Ranzato & LeCun, "What is the best multi-stage architecture for
      object recognition?", ICCV 2009, §2 (N layer); Pinto et al. 2008. This is Torch7's
      `nn.SpatialContrastiveNormalization` with a Gaussian kernel and the per-image mean
      threshold.
    """
    check_image(x)
    if (not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1
            or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    xf, batch = flatten_batch(x)
    rd = reduction_dtype(x.dtype)
    # Centre each image first. y does not change (m shifts with x: coef renormalizes), but an
    # offset no longer rounds into fake contrast in the window sums, which the eps floor would
    # amplify (a constant 255 image gave |y| ~ 0.8 instead of 0 in float32). The centre is the
    # mid-range max/2 + min/2: exactly the value of a constant image (a mean rounds, and a
    # constant 1e10 image then gave |y| ~ 1.7), and it cannot overflow. Then divide by a power
    # of two near the largest |value|, (max - min) / 2 (exact), so squares cannot overflow; eps
    # is divided too. Max and min come from one variadic reduce: one pass over x.
    xf = xf.astype(rd)
    hi, lo = _max_min(lax.stop_gradient(xf))  # y does not depend on them: no gradient
    xf = (xf - (hi / 2 + lo / 2)) / pow2_scale(hi / 2 - lo / 2)
    c = xf.shape[-1]
    if use_cpu_forms():
        window_mean = cpu_norm.window_mean(xf.shape[1:3], c, *gaussian_factors(kernel_size, sigma),
                                           rd)
    else:
        window_mean = _window_mean(xf.shape[1:3], c, gaussian_window(kernel_size, sigma), rd)
    mean = window_mean(xf)
    v = xf - mean
    var = window_mean(jnp.square(v))
    positive = var > _TINY_VARIANCE
    std = jnp.where(positive, jnp.sqrt(jnp.where(positive, var, 1.0)), 0.0)
    image_mean = std.mean(axis=(1, 2), keepdims=True)
    y = v / jnp.maximum(jnp.maximum(image_mean, std), eps / pow2_scale(hi / 2 - lo / 2))
    return unflatten_batch(y.astype(x.dtype), batch)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """AlexNet's local response normalization across channels (a sum, not a mean).

    `b_c = a_c / (k + alpha * sum_{c'} a_{c'}^2)^beta` over `c' = c - size//2 ... c + (size-1)//2`,
    clipped at the ends. Equals `torch.nn.LocalResponseNorm(size, alpha * size, beta, k)`.

    Args:
      x: `(*batch, height, width, channels)`.
      size: channels in the window (AlexNet: n = 5).
      alpha, beta, k: AlexNet's 1e-4, 0.75, 2; `alpha >= 0`, `k >= 0`. With `k > 0` the output
        and gradient are finite for every finite input; where `sum x^2` overflows float32
        (|x| > ~1e19) the output is 0 instead of its true value (below ~1e-6 with AlexNet's
        parameters). `k = 0` is undefined (NaN) where a window is all zero.

    Returns:
      same shape and dtype as x.

    References:
      Krizhevsky, Sutskever & Hinton, "ImageNet classification with deep convolutional neural
      networks", NeurIPS 2012, §3.3.
    """
    check_image(x)
    size = check_positive_int(size, "size")
    for name, value in (("alpha", alpha), ("k", k)):
        if not isinstance(value, numbers.Real) or not value >= 0 or math.isinf(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not isinstance(beta, numbers.Real) or not math.isfinite(beta):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    rd = reduction_dtype(x.dtype)
    sq = jnp.square(x.astype(rd))
    c = x.shape[-1]
    padded = jnp.pad(sq, [(0, 0)] * (x.ndim - 1) + [(size // 2, (size - 1) // 2)])
    total = sum(padded[..., i : i + c] for i in range(size))
    return (x.astype(rd) / (k + alpha * total) ** beta).astype(x.dtype)
