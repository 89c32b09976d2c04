"""Locally-connected layers: convolutions whose weights differ at every output position.

`extract_patches` cuts NHWC images into the windows a conv or an LC layer sees;
`locally_connected2d` contracts each position's patch with that position's own kernel. Both
resolve stride/padding/dilation through the same code as `jaxconv.functional.conv2d`
(`args.resolve_padding`, `args.output_size`), so an LC layer whose per-position kernels are all
equal is exactly the conv. With the CPU lowering (`jaxconv.functional.lowering`) the
contraction is a matmul batched over positions (`cpu.locally_connected`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxconv.functional.args import (
    Padding,
    check_bias,
    check_image,
    check_kernel,
    flatten_batch,
    output_size,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional.cpu import locally_connected as cpu_lc
from jaxconv.functional.lowerings import use_cpu_forms


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
    check_kernel(kernel, 6, "(out_h, out_w, kh, kw, in_channels, out_channels)")
    s, d = to_pair(stride, "stride"), to_pair(dilation, "dilation")
    pads = resolve_padding(padding, x.shape[-3:-1], k, s, d)
    out_hw = output_size(x.shape[-3:-1], pads, k, s, d)
    expected = out_hw + k + (x.shape[-1],)
    if tuple(kernel.shape[:5]) != expected:
        raise ValueError(
            f"kernel shape {kernel.shape} does not fit this input: expected {expected + ('O',)} "
            f"for x of shape {x.shape}, kernel_size {k}, stride {s}, padding {pads}"
        )
    bias = check_bias(bias, out_hw + (kernel.shape[-1],))
    xf, batch = flatten_batch(x)
    patches = extract_patches(xf, k, stride=s, padding=pads, dilation=d)
    if use_cpu_forms():
        y = cpu_lc.position_major(patches, kernel)
    else:
        y = jnp.einsum("nijabc,ijabco->nijo", patches, kernel)
    if bias is not None:
        y = y + bias
    return unflatten_batch(y, batch)
