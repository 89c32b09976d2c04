"""The CPU forms of `jaxconv.functional`'s overlapping max pool and weighted Lp pool sums.

Both are written with strided slices (`strided_taps`) instead of `lax.reduce_window` or a
depthwise convolution: on XLA:CPU they ran 5-25x faster forward+backward
(`docs/performance.md`). Inputs are `(N, H, W, C)`, `window` and `stride` pairs and `pads`
explicit `((top, bottom), (left, right))`, as the pooling ops resolve them.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.functional.args import output_size


def strided_taps(xp, axis: int, k: int, s: int, out: int) -> list:
    """The k slices `xp[..., a + s*i, ...]` (i < out) along `axis`, for a = 0 .. k-1."""
    taps = []
    for a in range(k):
        start, limit, strides = [0] * xp.ndim, list(xp.shape), [1] * xp.ndim
        start[axis], limit[axis], strides[axis] = a, a + (out - 1) * s + 1, s
        taps.append(lax.slice(xp, start, limit, strides))
    return taps


def max_pool(xf, window, stride, pads):
    """Max over the kh row taps, then over the kw column taps, of -inf-padded `xf`.

    Bit-identical to `lax.reduce_window`'s max. Its gradient is elementwise selects, where
    `reduce_window`'s (`select_and_scatter`) ran 5-8x slower on XLA:CPU; at exact ties it is
    split among the tied taps instead of going to the first. Measured and not kept (Zen 4,
    `docs/performance.md`): a max over all kh*kw taps at once for the overlapping 3/2 pools
    (2.3-3.1x slower forward+backward at AlexNet's shapes), and strided slices for the
    non-overlapping 2x2 pools, which `jaxconv.functional.max_pool` keeps as the max of a
    reshaped view: faster alone, slower in the CIFAR StageNet step (XLA split the slices'
    forward into three fusions and their gradient into pads and adds).

    Returns:
      `(N, out_h, out_w, C)`.
    """
    oh, ow = output_size(xf.shape[1:3], pads, window, stride)
    xp = jnp.pad(xf, ((0, 0),) + pads + ((0, 0),), constant_values=-np.inf)
    rows = functools.reduce(jnp.maximum, strided_taps(xp, 1, window[0], stride[0], oh))
    return functools.reduce(jnp.maximum, strided_taps(rows, 2, window[1], stride[1], ow))


def weighted_window_sum(v, weights, window, stride, pads):
    """`sum_{a,b} weights[a, b] * v_padded[:, i*sh + a, j*sw + b, :]`, zero padding.

    The kh*kw weighted strided slices are summed in one fused loop (25x faster
    forward+backward on XLA:CPU than the depthwise convolution).

    Returns:
      `(N, out_h, out_w, C)`.
    """
    oh, ow = output_size(v.shape[1:3], pads, window, stride)
    vp = jnp.pad(v, ((0, 0),) + pads + ((0, 0),))
    terms = (weights[a, b] * tap
             for a, row in enumerate(strided_taps(vp, 1, window[0], stride[0], oh))
             for b, tap in enumerate(strided_taps(row, 2, window[1], stride[1], ow)))
    return functools.reduce(jnp.add, terms)
