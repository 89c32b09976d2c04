"""Candidate speed levers not (or not yet) in `jaxconv.functional`, for the benchmarks to swap in.

Each function has the signature and results of the `jaxconv.functional` op it could replace
(tested in `tests/test_benchmark_levers.py`). A benchmark swaps a conv variant into a model
per layer through `jaxconv.layers.Conv`'s `conv_fn` (`layer.conv_fn = levers.conv2d_im2col`)
and calls the others directly; nothing reassigns a module attribute or constant. The winners
measured so far live in the library as its CPU lowering (`F.lowering`, the kernels in
`jaxconv.functional.cpu`): separable max pool, sliced weighted Lp pool, position-major LC,
separable LCN window sums, banded and im2col convs, the conv bias gradient as a matrix-vector
product (`conv2d_sum_bias` is the form before it, to measure it against).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconv.functional as F
from jaxconv.functional.args import (
    check_image,
    flatten_batch,
    resolve_padding,
    to_pair,
    unflatten_batch,
)
from jaxconv.functional.cpu import conv as cpu_conv
from jaxconv.functional.lowerings import use_cpu_forms


def _flat_conv_args(x, kernel, bias, stride, padding, dilation, groups):
    """`F.conv2d`'s checks (same errors, traced for shapes only) and resolved arguments.

    Returns:
      `(xf, kernel, stride, pads, dilation, bias, batch)`: `xf` `(N, H, W, C)` and `kernel` in
      the promoted dtype, `stride`/`dilation` pairs, explicit `pads`, `bias` an array or None.
    """
    jax.eval_shape(functools.partial(F.conv2d, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups), x, kernel, bias)
    dtype = jnp.promote_types(x.dtype, kernel.dtype)
    s, d = to_pair(stride, "stride"), to_pair(dilation, "dilation")
    pads = resolve_padding(padding, x.shape[-3:-1], kernel.shape[:2], s, d)
    xf, batch = flatten_batch(x.astype(dtype))
    bias = None if bias is None else jnp.asarray(bias)
    return xf, kernel.astype(dtype), s, pads, d, bias, batch


def _with_bias(y, bias, batch):
    return unflatten_batch(y if bias is None else y + bias, batch)


def conv2d_im2col(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` as patches + one matmul `(N*oh*ow, kh*kw*C) @ (kh*kw*C, O)` for every C_in.

    The library does this only for C_in = 1 on CPU; from 64 input channels on it was 1.6x
    slower than lax.conv with the XLA flags on. Grouped convolutions fall back to `F.conv2d`.
    Same arguments, shapes and results (up to float rounding: the sum order differs).
    """
    if groups != 1:
        return F.conv2d(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)
    xf, kernel, s, pads, d, bias, batch = _flat_conv_args(x, kernel, bias, stride, padding,
                                                          dilation, groups)
    return _with_bias(cpu_conv.im2col_conv(xf, kernel, s, pads, d), bias, batch)


def _conv2d_tuned(x, kernel, bias, *, stride, padding, dilation, groups, **thresholds):
    """`F.conv2d` whose CPU form `jaxconv.functional.cpu.conv.form` picks with `thresholds`.

    With the XLA lowering (no CPU forms) it is `F.conv2d` itself.
    """
    if not use_cpu_forms():
        return F.conv2d(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)
    xf, kernel, s, pads, d, bias, batch = _flat_conv_args(x, kernel, bias, stride, padding,
                                                          dilation, groups)
    y = cpu_conv.conv2d(xf, kernel, s, pads, d, groups, **thresholds)
    return _with_bias(y, bias, batch)


def conv2d_unbanded(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` without the banded CPU forms (`cpu.conv.banded_conv`,
    `cpu.conv.tiled_banded_conv`): the lowering before them.

    im2col for C_in = 1 on CPU, `lax.conv` otherwise; the reference the banded form was
    measured against.
    """
    return _conv2d_tuned(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, banded_max_cin=0)


def conv2d_untiled(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` with whole bands only (`cpu.conv.banded_conv` where
    `cpu.conv.tiled_banded_conv` would run, e.g. LeNet's C1): the lowering before the tiles."""
    return _conv2d_tuned(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, tile_above=float("inf"))


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


def conv2d_sum_bias(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1, groups=1):
    """`F.conv2d` with `y + bias` added outside it: the bias gradient is XLA's own sum over N,
    H, W (a reduce-window fusion on XLA:CPU), as before the CPU lowering's `cpu.conv.add_bias`
    (a matrix-vector product from `cpu.conv.DOT_BIAS_MIN_CHANNELS` channels on).

    Same arguments, shapes and results (up to float rounding).
    """
    y = F.conv2d(x, kernel, None, stride=stride, padding=padding, dilation=dilation,
                 groups=groups)
    return y if bias is None else y + jnp.asarray(bias).astype(y.dtype)
