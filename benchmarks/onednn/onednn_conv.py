"""oneDNN's 2-D convolution inside jitted JAX through `jax.ffi` (issue 21 prototype).

Not part of jaxconv and never imported by it: `bash benchmarks/onednn/build.sh` builds
`_onednn_conv.so` (see that script for the pip packages), then::

    import onednn_conv                      # with benchmarks/onednn on sys.path
    y = onednn_conv.conv2d(x, w, stride=(1, 1), padding=((1, 1), (1, 1)))

`conv2d` is a `jax.custom_vjp` whose forward, input gradient and weight gradient are each one
FFI custom call into oneDNN (`conv_ffi.cc`), so `jax.grad` of a jitted function runs oneDNN's
three kernels where XLA would run its own convolutions.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import jax
import numpy as np

LIBRARY = Path(__file__).resolve().parent / "_onednn_conv.so"
_TARGETS = {"onednn_conv_fwd": "OnednnConvFwd", "onednn_conv_bwd_data": "OnednnConvBwdData",
            "onednn_conv_bwd_weights": "OnednnConvBwdWeights"}
# dnnl::cpu_isa values of oneDNN 3.2 (dnnl_cpu_isa_t) that the benchmark header names.
_ISA = {0x0: "default", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0xf: "avx2_vnni",
        0x1f: "avx2_vnni_2", 0x27: "avx512_core", 0x67: "avx512_core_vnni",
        0xe7: "avx512_core_bf16", 0x1e7: "avx512_core_fp16", 0x3e7: "avx512_core_amx",
        0x7e7: "avx512_core_amx_fp16"}


@functools.cache
def _library() -> ctypes.CDLL:
    if not LIBRARY.exists():
        raise FileNotFoundError(f"{LIBRARY} is not built: run bash benchmarks/onednn/build.sh")
    lib = ctypes.cdll.LoadLibrary(str(LIBRARY))
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)),
                                    platform="cpu")
    return lib


def available() -> bool:
    """Whether the prototype is built (and loads)."""
    try:
        _library()
    except (FileNotFoundError, OSError):
        return False
    return True


def isa() -> str:
    """The instruction set oneDNN dispatches to on this CPU (e.g. `avx512_core_bf16`)."""
    code = _library().OnednnIsa()
    return _ISA.get(code, hex(code))


def _attrs(stride, padding):
    (pt, pb), (pl, pr) = padding
    return dict(stride_h=np.int64(stride[0]), stride_w=np.int64(stride[1]),
                pad_top=np.int64(pt), pad_bottom=np.int64(pb), pad_left=np.int64(pl),
                pad_right=np.int64(pr))


def _out_hw(h, w, kh, kw, stride, padding):
    (pt, pb), (pl, pr) = padding
    return (h + pt + pb - kh) // stride[0] + 1, (w + pl + pr - kw) // stride[1] + 1


def _fwd_call(x, w, stride, padding):
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    oh, ow = _out_hw(h, wd, kh, kw, stride, padding)
    _library()
    out = jax.ShapeDtypeStruct((n, oh, ow, o), x.dtype)
    return jax.ffi.ffi_call("onednn_conv_fwd", out)(x, w, **_attrs(stride, padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, w, stride=(1, 1), padding=((0, 0), (0, 0))):
    """oneDNN convolution: `x (N, H, W, C)`, `w (kh, kw, C, O)` -> `(N, oh, ow, O)`.

    The same function as `lax.conv_general_dilated(x, w, stride, padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))` for float32 or bfloat16 (`x` and `w` of one
    dtype); no dilation, no groups. `stride` a pair, `padding` explicit
    `((top, bottom), (left, right))`.
    """
    return _fwd_call(x, w, stride, padding)


def _conv_fwd(x, w, stride, padding):
    return _fwd_call(x, w, stride, padding), (x, w)


def _conv_bwd(stride, padding, res, dy):
    x, w = res
    dy = dy.astype(x.dtype)
    attrs = _attrs(stride, padding)
    dx = jax.ffi.ffi_call("onednn_conv_bwd_data", jax.ShapeDtypeStruct(x.shape, x.dtype))(
        dy, w, **attrs)
    dw = jax.ffi.ffi_call("onednn_conv_bwd_weights", jax.ShapeDtypeStruct(w.shape, w.dtype))(
        x, dy, **attrs)
    return dx, dw


conv2d.defvjp(_conv_fwd, _conv_bwd)


def lax_conv2d(x, w, stride=(1, 1), padding=((0, 0), (0, 0))):
    """The reference: XLA's convolution with the same arguments as `conv2d`."""
    return jax.lax.conv_general_dilated(x, w, stride, padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


__all__ = ["LIBRARY", "available", "conv2d", "conv2d_like_jaxconv", "isa", "lax_conv2d"]


def conv2d_like_jaxconv(x, kernel, bias=None, *, stride=1, padding="SAME", dilation=1,
                        groups=1):
    """`jaxconv.functional.conv2d`'s signature over oneDNN's `conv2d`, for a `Conv` layer's
    `conv_fn` (`benchmarks/train_step.py --jax=ynn_off+heap+onednn_ffi`).

    Dilated or grouped convolutions fall back to `jaxconv.functional.conv2d`.
    """
    import jaxconv.functional as F
    from jaxconv.functional.args import flatten_batch, resolve_padding, to_pair, unflatten_batch

    s, d = to_pair(stride, "stride"), to_pair(dilation, "dilation")
    if d != (1, 1) or groups != 1:
        return F.conv2d(x, kernel, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)
    pads = resolve_padding(padding, x.shape[-3:-1], kernel.shape[:2], s, d)
    xf, batch = flatten_batch(x)
    dtype = jax.numpy.promote_types(x.dtype, kernel.dtype)
    y = conv2d(xf.astype(dtype), kernel.astype(dtype), s, tuple(map(tuple, pads)))
    if bias is not None:
        y = y + bias
    return unflatten_batch(y, batch)
