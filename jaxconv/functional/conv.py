"""Convolution (shared weights) and locally-connected (unshared weights) layers as pure ops.

Both resolve stride/padding/dilation through the same code (`_args.resolve_padding`), so an LC
layer whose per-position kernels are all equal is exactly the conv.

With the CPU lowering (`jaxconv.functional.lowering`), a single-input-channel convolution is
patches + one matmul (XLA:CPU's convolution reached 3-4 GFLOP/s there) and the LC contraction is
a matmul batched over positions with position-major patches.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.functional._args import (
    Padding,
    check_image,
    check_positive_int,
    flatten_batch,
    output_size,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional._lowering import use_cpu_forms

_NHWC = ("NHWC", "HWIO", "NHWC")


def _check_kernel(kernel, ndim: int, layout: str) -> None:
    if getattr(kernel, "ndim", None) != ndim:
        raise ValueError(f"kernel must be {layout}, got shape {getattr(kernel, 'shape', None)}")
    if 0 in kernel.shape:
        raise ValueError(f"kernel has an empty dim: shape {kernel.shape}, expected {layout}")


def _check_bias(bias, shape):
    """`bias` as an array of `shape`, or None."""
    if bias is None:
        return None
    bias = jnp.asarray(bias)
    if bias.shape != shape:
        raise ValueError(f"bias must have shape {shape}, got {bias.shape}")
    return bias


def conv2d(x, kernel, bias=None, *, stride=1, padding: Padding = "SAME", dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in every DL framework) of NHWC images.

    Args:
      x: `(*batch, height, width, in_channels)` floating array.
      kernel: `(kh, kw, in_channels // groups, out_channels)`.
      bias: optional `(out_channels,)`.
      stride: int or `(sh, sw)`, default 1.
      padding: "SAME" (default), "VALID", int, `(ph, pw)` or `((top, bottom), (left, right))`.
      dilation: int or `(dh, dw)` kernel dilation.
      groups: feature groups (AlexNet's two towers are `groups=2`); `in_channels` and
        `out_channels` must both be divisible by it.

    Returns:
      `(*batch, out_h, out_w, out_channels)` in the promoted dtype of `x` and `kernel`.

    Example:
      >>> x = jnp.ones((2, 8, 8, 3)); k = jnp.ones((3, 3, 3, 4))
      >>> conv2d(x, k, padding="VALID").shape
      (2, 6, 6, 4)
    """
    check_image(x)
    _check_kernel(kernel, 4, "(kh, kw, in_channels // groups, out_channels)")
    groups = check_positive_int(groups, "groups")
    cin, cout = x.shape[-1], kernel.shape[-1]
    if cin % groups or cout % groups:
        raise ValueError(
            f"in_channels {cin} and out_channels {cout} must be divisible by groups={groups}"
        )
    if kernel.shape[2] * groups != cin:
        raise ValueError(
            f"kernel shape {kernel.shape} expects {kernel.shape[2] * groups} input channels "
            f"(kernel in-dim {kernel.shape[2]} x groups {groups}), got x with {cin}"
        )
    window = kernel.shape[:2]
    s, d = to_pair(stride, "stride"), to_pair(dilation, "dilation")
    pads = resolve_padding(padding, x.shape[-3:-1], window, s, d)
    bias = _check_bias(bias, (cout,))
    dtype = jnp.promote_types(x.dtype, kernel.dtype)  # lax.conv wants one dtype for both
    xf, batch = flatten_batch(x.astype(dtype))
    form = _cpu_form(cin, groups, window, s, d, x.shape[-2] + sum(pads[1]))
    if form == "tiled":
        # LeNet's C1 (1 -> 6, 5x5, 32 padded columns): one channel, wide rows.
        y = tiled_banded_conv(xf, kernel.astype(dtype), pads)
    elif form == "banded":
        # LeNet's C3 (6 -> 16, 5x5, 14 columns): XLA:CPU's convolution and the im2col patches
        # both vectorise badly on so few channels.
        y = banded_conv(xf, kernel.astype(dtype), s, pads, d)
    elif cin == 1 and use_cpu_forms():
        # A one-channel conv too wide for the banded form: patches + one matmul.
        y = im2col_conv(xf, kernel.astype(dtype), s, pads, d)
    else:
        y = lax.conv_general_dilated(
            xf, kernel.astype(dtype), window_strides=s, padding=pads, rhs_dilation=d,
            dimension_numbers=_NHWC, feature_group_count=groups,
        )
    if bias is not None:
        y = y + bias
    return unflatten_batch(y, batch)


# The banded form multiplies by a `(kh*Wp*C, ow*O)` matrix that is zero except for kw of every
# Wp rows, so it does Wp/kw times the convolution's FLOPs: worth it only for few, narrow
# channels.
_BANDED_MAX_CIN = 16
_BANDED_MAX_WASTE = 8


# Above this many kernel widths of padded columns (and at stride and dilation 1) the band is
# cut into tiles of `_TILE` output columns (`tiled_banded_conv`).
_TILE_ABOVE = 4
_TILE = 4


def _cpu_form(cin, groups, window, stride, dilation, padded_width):
    """The CPU lowering's form of an ungrouped few-channel conv, or None for `lax.conv`.

    "banded" (`banded_conv`) while the band wastes at most `_BANDED_MAX_WASTE`x the FLOPs,
    "tiled" (`tiled_banded_conv`) instead where it would waste over `_TILE_ABOVE`x at stride
    and dilation 1. Measured, forward+backward at batch 128 (2 cores, `lax.conv` in brackets):
    LeNet C1 (28x28x1 -> 6, 5x5, pad 2) 4.5 ms banded, 2.6 ms tiled (9.5); C3 (14x14x6 -> 16,
    5x5) 4.5 ms banded, 6.2 ms tiled (5.5). LeNet step 10.0 -> 8.9 ms with C1 tiled. Wider
    rows keep `lax.conv`: the CIFAR nets' first conv (32x32x3 -> 64, 3x3) tiled measured the
    same step time (266 vs 272 ms, noise).
    """
    if not use_cpu_forms() or groups != 1 or cin > _BANDED_MAX_CIN:
        return None
    if padded_width > _BANDED_MAX_WASTE * window[1]:
        return None
    if stride == dilation == (1, 1) and padded_width > _TILE_ABOVE * window[1]:
        return "tiled"
    return "banded"


def banded_conv(xf, kernel, stride, pads, dilation):
    """An ungrouped conv of `(N, H, W, C)` as kh row slices + one banded (Toeplitz) matmul.

    `y[n, i] (ow*O) = concat_a xp[n, i*sh + a*dh] (kh*Wp*C) @ T`, with
    `T[(a, v, c), (j, o)] = kernel[a, b, c, o]` where `v = j*sw + b*dw`, else 0. The operands
    are whole padded rows (contiguous copies, no per-tap gather), the matmul is
    `(N*oh, kh*Wp*C) @ (kh*Wp*C, ow*O)`, and the input gradient is that matmul transposed
    plus kh row adds. `stride`, `dilation` are pairs and `pads` explicit; x and kernel share
    one dtype.
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


def tiled_banded_conv(xf, kernel, pads, tile=_TILE):
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

    `stride`, `dilation` are pairs and `pads` explicit; x and kernel share one dtype.
    """
    patches = extract_patches(xf, kernel.shape[:2], stride=stride, padding=pads,
                              dilation=dilation)
    n, oh, ow = patches.shape[:3]
    cout = kernel.shape[-1]
    y = patches.reshape(n * oh * ow, kernel[..., 0].size) @ kernel.reshape(-1, cout)
    return y.reshape(n, oh, ow, cout)


def extract_patches(x, kernel_size, *, stride=1, padding: Padding = "VALID", dilation=1):
    """Patches of NHWC images by strided slicing: `(*batch, out_h, out_w, kh, kw, C)`.

    `patches[n, i, j, a, b, c] = xp[n, i*sh + a*dh, j*sw + b*dw, c]`, xp zero-padded. Costs
    `kh*kw` slices (no identity-kernel convolution).

    Args:
      x: `(*batch, H, W, C)` floating.
      kernel_size, stride, padding, dilation: as in `conv2d`.

    Returns:
      `(*batch, out_h, out_w, kh, kw, C)`.
    """
    check_image(x)
    x, batch = flatten_batch(x)
    k, s, d = to_pair(kernel_size, "kernel_size"), to_pair(stride, "stride"), to_pair(dilation,
                                                                                      "dilation")
    pads = resolve_padding(padding, x.shape[1:3], k, s, d)
    oh, ow = output_size(x.shape[1:3], pads, k, s, d)
    xp = jnp.pad(x, ((0, 0),) + pads + ((0, 0),))
    rows = []
    for a in range(k[0]):
        cols = []
        for b in range(k[1]):
            h0, w0 = a * d[0], b * d[1]
            cols.append(
                lax.slice(
                    xp, (0, h0, w0, 0),
                    (xp.shape[0], h0 + (oh - 1) * s[0] + 1, w0 + (ow - 1) * s[1] + 1, xp.shape[3]),
                    (1, s[0], s[1], 1),
                )
            )
        rows.append(jnp.stack(cols, axis=3))
    return unflatten_batch(jnp.stack(rows, axis=3), batch)


def locally_connected2d(x, kernel, bias=None, *, kernel_size, stride=1,
                        padding: Padding = "VALID", dilation=1):
    """Locally-connected layer: a convolution whose weights differ at every output position.

    `y[n,i,j,o] = sum_{a,b,c} xp[n, i*sh + a*dh, j*sw + b*dw, c] * W[i,j,a,b,c,o] + bias[i,j,o]`
    with xp the zero-padded input. Patch extraction + one batched contraction over
    `(kh*kw*C)` per position: memory O(input patches + params), never O(batch x params).

    Args:
      x: `(*batch, height, width, in_channels)`.
      kernel: `(out_h, out_w, kh, kw, in_channels, out_channels)`.
      bias: optional `(out_h, out_w, out_channels)`.
      kernel_size: int or `(kh, kw)`; must match the kernel.
      stride, padding (default "VALID"), dilation: as in `conv2d`.

    Returns:
      `(*batch, out_h, out_w, out_channels)`.

    References:
      LeCun et al., "Learning hierarchical features..." (locally-connected / unshared
      convolution); Taigman et al. 2014 (DeepFace) use it for faces.
    """
    check_image(x)
    k = to_pair(kernel_size, "kernel_size")
    _check_kernel(kernel, 6, "(out_h, out_w, kh, kw, in_channels, out_channels)")
    s, d = to_pair(stride, "stride"), to_pair(dilation, "dilation")
    pads = resolve_padding(padding, x.shape[-3:-1], k, s, d)
    out_hw = output_size(x.shape[-3:-1], pads, k, s, d)
    expected = out_hw + k + (x.shape[-1],)
    if tuple(kernel.shape[:5]) != expected:
        raise ValueError(
            f"kernel shape {kernel.shape} does not fit this input: expected {expected + ('O',)} "
            f"for x of shape {x.shape}, kernel_size {k}, stride {s}, padding {pads}"
        )
    bias = _check_bias(bias, out_hw + (kernel.shape[-1],))
    xf, batch = flatten_batch(x)
    patches = extract_patches(xf, k, stride=s, padding=pads, dilation=d)
    if use_cpu_forms():
        y = _lc_position_major(patches, kernel)
    else:
        y = jnp.einsum("nijabc,ijabco->nijo", patches, kernel)
    if bias is not None:
        y = y + bias
    return unflatten_batch(y, batch)


def _lc_position_major(patches, kernel):
    """`einsum("nijabc,ijabco->nijo")` as `(P, N, K) @ (P, K, O)`, P = oh*ow, K = kh*kw*C.

    Laying the patches out position-major makes the contraction a plain batched matmul. On
    XLA:CPU it ran 1.3-1.5x faster forward+backward than the einsum, with 30-45 % less temp
    memory (benchmarks/README.md).
    """
    n, oh, ow = patches.shape[:3]
    cout = kernel.shape[-1]
    kk = kernel[0, 0, ..., 0].size  # kh*kw*C
    dtype = jnp.promote_types(patches.dtype, kernel.dtype)
    p = jnp.moveaxis(patches.astype(dtype).reshape(n, oh * ow, kk), 1, 0)
    w = kernel.astype(dtype).reshape(oh * ow, kk, cout)
    y = lax.dot_general(p, w, (((2,), (1,)), ((0,), (0,))))
    return jnp.moveaxis(y, 0, 1).reshape(n, oh, ow, cout)
