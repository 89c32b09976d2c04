"""Convolution: the shared-weight layer of a CNN, as a pure op on NHWC arrays.

`conv2d` is XLA's `lax.conv_general_dilated`; `jaxconv.functional.locally_connected2d` is the
same layer with unshared weights and resolves stride/padding/dilation through the same code
(`args.resolve_padding`), so an LC layer whose per-position kernels are all equal is exactly
the conv. With the CPU lowering (`jaxconv.functional.lowering`), `cpu.conv.conv2d` picks a
form tuned for XLA:CPU (a banded matmul for few, narrow channels; patches + one matmul for one
channel), and `cpu.conv.add_bias` adds the bias (its gradient a matrix-vector product).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxconv.functional.args import (
    Padding,
    check_bias,
    check_image,
    check_kernel,
    check_positive_int,
    flatten_batch,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional.cpu import conv as cpu_conv
from jaxconv.functional.lowerings import use_cpu_forms


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

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.functional import conv2d
      >>> x = jnp.ones((2, 8, 8, 3)); k = jnp.ones((3, 3, 3, 4))
      >>> conv2d(x, k, padding="VALID").shape
      (2, 6, 6, 4)

    References:
      LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
      recognition", Proc. IEEE 1998 (convolutional layers, shared weights); Krizhevsky,
      Sutskever & Hinton, NeurIPS 2012 (grouped convolutions: the two GPU towers).
    """
    check_image(x)
    check_kernel(kernel, 4, "(kh, kw, in_channels // groups, out_channels)")
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
    bias = check_bias(bias, (cout,))
    dtype = jnp.promote_types(x.dtype, kernel.dtype)  # lax.conv wants one dtype for both
    xf, batch = flatten_batch(x.astype(dtype))
    kernel = kernel.astype(dtype)
    if use_cpu_forms():
        y = cpu_conv.conv2d(xf, kernel, s, pads, d, groups)
        if bias is not None:
            y = cpu_conv.add_bias(y, bias)
    else:
        y = lax.conv_general_dilated(
            xf, kernel, window_strides=s, padding=pads, rhs_dilation=d,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
        )
        if bias is not None:
            y = y + bias
    return unflatten_batch(y, batch)
