"""The CPU form of `jaxconv.functional.local_contrast_norm`'s window means: banded matmuls.

LCN's Gaussian window is separable, so its zero-padded window sum over an `(H, W)` map is
`B_h @ S @ B_w^T` with banded NumPy matrices, and its border coefficient is a NumPy constant.
XLA:CPU ran the one-channel convolutions of the reference slowly (their backward above all);
as shifted slices, the sums were elementwise ops that XLA fused into every per-channel
consumer, recomputing each pixel's window sum once per channel (64x in a CIFAR stage). A matmul
is materialized once, and its gradient is the transposed matmuls (`docs/performance.md`,
"LCN").
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import lax


def window_mean(hw, channels: int, g_rows, g_cols, dtype) -> Callable:
    """The weighted window mean over all channels, as LCN's reference computes it.

    Args:
      hw: `(H, W)` of the maps.
      channels: C; the window's weights are `outer(g_rows, g_cols) / C`.
      g_rows, g_cols: NumPy per-axis Gaussian factors (`pooling.gaussian_factors`).
      dtype: the computation dtype.

    Returns:
      A function of `(N, H, W, C)` to `(N, H, W, 1)`: the window sum of the channel sum
      divided by the border coefficient (the window sum of ones, times C).
    """
    coef = jnp.asarray(border_coef(hw, g_rows, g_cols) * channels, dtype)

    def mean(v):
        return separable_sum(v.sum(-1, keepdims=True), g_rows, g_cols) / coef

    return mean


def separable_sum(x1, g_rows, g_cols):
    """Zero-padded, centred window sum of `(N, H, W, 1)` with weights `outer(g_rows, g_cols)`.

    `B_h @ x1 @ B_w^T` per image, `B_h`, `B_w` the banded `(H, H)`, `(W, W)` NumPy matrices of
    `band`.
    """
    h, w = x1.shape[1:3]
    bh = band(h, g_rows).astype(x1.dtype)
    bw = band(w, g_cols).astype(x1.dtype)
    return jnp.einsum("ih,nhw,jw->nij", bh, x1[..., 0], bw,
                      precision=lax.Precision.HIGHEST)[..., None]


def band(n: int, g) -> np.ndarray:
    """NumPy `(n, n)`: `band[i, j] = g[j - i + r]` within the window, so `band @ v` is the
    zero-padded centred window sum of `v` with weights `g`."""
    r = len(g) // 2
    out = np.zeros((n, n))
    for a, gv in enumerate(g):
        out += gv * np.eye(n, k=a - r)
    return out


def border_coef(hw, g_rows, g_cols) -> np.ndarray:
    """NumPy `(1, H, W, 1)`: the window sum of ones (each axis's in-image weight, multiplied)."""
    cover = []
    for n, g in zip(hw, (g_rows, g_cols)):
        r = len(g) // 2
        inside = np.pad(np.ones(n), r)
        cover.append(np.array([g @ inside[j:j + len(g)] for j in range(n)]))
    return np.outer(*cover)[None, :, :, None]
