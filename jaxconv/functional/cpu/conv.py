"""The CPU forms of `jaxconv.functional.conv2d`: banded, tiled banded and im2col convolutions,
and the bias add whose gradient is a matrix-vector product.

`conv2d` picks one (`form`) from the conv's shape and runs it; few, narrow input channels go
to a banded (Toeplitz) matmul, a single input channel too wide for a band to patches + one
matmul, everything else to XLA's own convolution. The thresholds are this module's constants
and `form`'s keyword arguments. `add_bias` adds the bias (`y + bias`) with a bias gradient that
runs on XLA:CPU's matmul instead of a reduce-window fusion.

Every function takes `(N, H, W, C)` inputs whose kernel has the input's dtype, `stride` and
`dilation` as pairs and `pads` explicit `((top, bottom), (left, right))`, as `conv2d` resolves
them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.functional.args import ExplicitPadding, Pair, output_size
from jaxconv.functional.locally_connected import extract_patches

# The banded form multiplies by a `(kh*Wp*C, ow*O)` matrix that is zero except for kw of every
# Wp rows, so it does Wp/kw times the convolution's FLOPs: worth it only for few, narrow
# channels.
BANDED_MAX_CIN = 16
BANDED_MAX_WASTE = 8

# Above this many kernel widths of padded columns (and at stride and dilation 1) the band is
# cut into tiles of `TILE` output columns (`tiled_banded_conv`).
TILE_ABOVE = 4
TILE = 4

FORMS = ("tiled", "banded", "im2col", "lax")

# `add_bias` takes the bias gradient as a matmul from this many channels on; below, `y + bias`'s
# own sum. LeNet-5's convs (6 and 16 channels) ran their step slower with the matmul (min 12.7
# -> 16.5 ms), the CIFAR StageNet's (64-256) faster (`docs/performance.md`).
DOT_BIAS_MIN_CHANNELS = 32


def form(cin: int, groups: int, window: Pair, stride: Pair, dilation: Pair, padded_width: int,
         *, banded_max_cin: float = BANDED_MAX_CIN, banded_max_waste: float = BANDED_MAX_WASTE,
         tile_above: float = TILE_ABOVE) -> str:
    """The CPU form of a conv, one of `FORMS`.

    "banded" (`banded_conv`) for an ungrouped conv with at most `banded_max_cin` input channels
    while the band wastes at most `banded_max_waste`x the FLOPs; "tiled" (`tiled_banded_conv`)
    instead where it would waste over `tile_above`x at stride and dilation 1; else "im2col"
    (`im2col_conv`) for one input channel and "lax" (XLA's convolution) for more. Measured,
    forward+backward at batch 128 (2 cores, `lax.conv` in brackets): LeNet C1 (28x28x1 -> 6,
    5x5, pad 2) 4.5 ms banded, 2.6 ms tiled (9.5); C3 (14x14x6 -> 16, 5x5) 4.5 ms banded,
    6.2 ms tiled (5.5). LeNet step 10.0 -> 8.9 ms with C1 tiled. Wider rows keep `lax.conv`:
    the CIFAR nets' first conv (32x32x3 -> 64, 3x3) tiled measured the same step time (266 vs
    272 ms, noise).

    Args:
      cin: input channels.
      groups: feature groups.
      window: kernel `(kh, kw)`.
      stride, dilation: pairs.
      padded_width: input width plus left and right padding.
      banded_max_cin, banded_max_waste, tile_above: the thresholds above (0 or `inf` turn a
        form off).

    Returns:
      "tiled", "banded", "im2col" or "lax".
    """
    kw = window[1]
    if groups == 1 and cin <= banded_max_cin and padded_width <= banded_max_waste * kw:
        if stride == dilation == (1, 1) and padded_width > tile_above * kw:
            return "tiled"
        return "banded"
    # A one-channel conv too wide for the banded form: XLA:CPU's convolution reached 3-4
    # GFLOP/s there, patches + one matmul ran faster.
    return "im2col" if cin == 1 else "lax"


def conv2d(xf, kernel, stride: Pair, pads: ExplicitPadding, dilation: Pair, groups: int = 1,
           *, tile: int = TILE, **thresholds):
    """`lax.conv_general_dilated` of `(N, H, W, C)` NHWC/HWIO in the CPU form `form` picks.

    Args:
      xf: `(N, H, W, C)`.
      kernel: `(kh, kw, C // groups, O)`, the dtype of `xf`.
      stride, pads, dilation: as resolved by `jaxconv.functional.conv2d`.
      groups: feature groups (grouped convs are always "lax").
      tile: output columns per tile of the tiled form.
      **thresholds: `form`'s keyword arguments.

    Returns:
      `(N, out_h, out_w, O)`.
    """
    padded_width = xf.shape[2] + sum(pads[1])
    chosen = form(xf.shape[-1], groups, kernel.shape[:2], stride, dilation, padded_width,
                  **thresholds)
    if chosen == "tiled":
        # LeNet's C1 (1 -> 6, 5x5, 32 padded columns): one channel, wide rows.
        return tiled_banded_conv(xf, kernel, pads, tile)
    if chosen == "banded":
        # LeNet's C3 (6 -> 16, 5x5, 14 columns): XLA:CPU's convolution and the im2col patches
        # both vectorise badly on so few channels.
        return banded_conv(xf, kernel, stride, pads, dilation)
    if chosen == "im2col":
        return im2col_conv(xf, kernel, stride, pads, dilation)
    return lax.conv_general_dilated(
        xf, kernel, window_strides=stride, padding=pads, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
    )


def banded_conv(xf, kernel, stride, pads, dilation):
    """An ungrouped conv of `(N, H, W, C)` as kh row slices + one banded (Toeplitz) matmul.

    `y[n, i] (ow*O) = concat_a xp[n, i*sh + a*dh] (kh*Wp*C) @ T`, with
    `T[(a, v, c), (j, o)] = kernel[a, b, c, o]` where `v = j*sw + b*dw`, else 0. The operands
    are whole padded rows (contiguous copies, no per-tap gather), the matmul is
    `(N*oh, kh*Wp*C) @ (kh*Wp*C, ow*O)`, and the input gradient is that matmul transposed
    plus kh row adds.
    """
    n, h, w, c = xf.shape
    kh, kw, _, cout = kernel.shape
    oh, ow = output_size((h, w), pads, (kh, kw), stride, dilation)
    xp = jnp.pad(xf, ((0, 0),) + pads + ((0, 0),))
    wp = xp.shape[2]
    rows = [
        lax.slice(xp, (0, a * dilation[0], 0, 0),
                  (n, a * dilation[0] + (oh - 1) * stride[0] + 1, wp, c), (1, stride[0], 1, 1))
        for a in range(kh)
    ]
    r = jnp.stack(rows, axis=2).reshape(n * oh, kh * wp * c)
    return (r @ _band(kernel, wp, ow, stride[1], dilation[1])).reshape(n, oh, ow, cout)


def _band(kernel, in_cols, out_cols, stride, dilation):
    """`(kh*in_cols*C, out_cols*O)` banded matrix: `T[(a, v, c), (j, o)] = kernel[a, b, c, o]`
    where `v = j*stride + b*dilation`, else 0."""
    kh, kw, c, cout = kernel.shape
    sel = np.zeros((in_cols, out_cols, kw), kernel.dtype)
    for b in range(kw):
        sel[np.arange(out_cols) * stride + b * dilation, np.arange(out_cols), b] = 1
    band = jnp.einsum("vjb,abco->avcjo", sel, kernel)
    return band.reshape(kh * in_cols * c, out_cols * cout)


def tiled_banded_conv(xf, kernel, pads, tile=TILE):
    """A stride-1 ungrouped conv of `(N, H, W, C)` as `banded_conv` on tiles of output columns.

    Output columns ``[t*tile, (t+1)*tile)`` read padded columns ``[t*tile, t*tile + q*tile)``
    with ``q = 1 + ceil((kw - 1) / tile)``: q consecutive chunks of `tile` columns. So every
    tile is one row of ``(N*oh*n_tiles, kh*q*tile*C) @ (kh*q*tile*C, tile*O)``, the same band
    for every tile; the band wastes ``q*tile / kw`` times the FLOPs instead of ``Wp / kw``. The
    columns are padded on the right up to whole tiles and the extra outputs sliced off.
    """
    n, h, w, c = xf.shape
    kh, kw, _, cout = kernel.shape
    oh, ow = output_size((h, w), pads, (kh, kw), (1, 1), (1, 1))
    n_tiles = -(-ow // tile)
    q = 1 + -(-(kw - 1) // tile)
    width = (n_tiles + q - 1) * tile
    xp = jnp.pad(xf, ((0, 0), pads[0], (pads[1][0], width - w - pads[1][0]), (0, 0)))
    rows = jnp.stack([lax.slice_in_dim(xp, a, a + oh, axis=1) for a in range(kh)], axis=2)
    chunks = rows.reshape(n, oh, kh, n_tiles + q - 1, tile, c)
    tiles = jnp.stack([lax.slice_in_dim(chunks, i, i + n_tiles, axis=3) for i in range(q)], 4)
    operand = tiles.transpose(0, 1, 3, 2, 4, 5, 6).reshape(n * oh * n_tiles, kh * q * tile * c)
    y = (operand @ _band(kernel, q * tile, tile, 1, 1)).reshape(n, oh, n_tiles * tile, cout)
    return y[:, :, :ow]


def im2col_conv(xf, kernel, stride, pads, dilation):
    """An ungrouped conv of `(N, H, W, C)` as patches + one `(N*oh*ow, kh*kw*C) @ (kh*kw*C, O)`.

    The patches are `jaxconv.functional.extract_patches`'.
    """
    patches = extract_patches(xf, kernel.shape[:2], stride=stride, padding=pads,
                              dilation=dilation)
    n, oh, ow = patches.shape[:3]
    cout = kernel.shape[-1]
    y = patches.reshape(n * oh * ow, kernel[..., 0].size) @ kernel.reshape(-1, cout)
    return y.reshape(n, oh, ow, cout)


def add_bias(y, bias, *, min_channels: float = DOT_BIAS_MIN_CHANNELS):
    """`y + bias` whose bias gradient is `ones @ dy.reshape(-1, C)`, accumulated in float32.

    `y + bias`'s own gradient sums the output gradient over N, H and W; XLA:CPU compiles that
    sum to a reduce-window fusion (11.3 ms for the CIFAR StageNet's three conv biases at batch
    128, Zen 4). A `(1, N*H*W) @ (N*H*W, C)` product runs on its multi-threaded matmul instead
    (`docs/performance.md`). Same values as `y + bias`, gradients equal up to float rounding
    (the sum order differs).

    Args:
      y: `(..., C)`, e.g. a conv output `(N, H, W, C)`.
      bias: `(C,)`.
      min_channels: below this many channels (or for a non-float bias) it is plain
        `y + bias`.

    Returns:
      `y + bias`, in their promoted dtype.
    """
    if bias.shape[-1] < min_channels or not jnp.issubdtype(bias.dtype, jnp.floating):
        return y + bias
    return _add_bias(jnp.dtype(y.dtype), jnp.dtype(bias.dtype), y, bias)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _add_bias(y_dtype, bias_dtype, y, bias):
    return y + bias


def _add_bias_fwd(y_dtype, bias_dtype, y, bias):
    return y + bias, None


def _add_bias_bwd(y_dtype, bias_dtype, _, dy):
    rows = dy.reshape(-1, dy.shape[-1])
    ones = jnp.ones((rows.shape[0],), rows.dtype)
    dbias = jnp.dot(ones, rows, preferred_element_type=jnp.float32)
    return dy.astype(y_dtype), dbias.astype(bias_dtype)


_add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)
