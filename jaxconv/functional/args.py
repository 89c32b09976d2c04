"""Argument normalisation shared by every op: pairs, padding, rank, kernel and dtype checks.

Conv, locally-connected and pooling ops all resolve `padding`/`stride`/`dilation` here, so
"SAME", "VALID", ints, pairs and explicit ((top, bottom), (left, right)) mean the same thing
everywhere. `jaxconv.layers`, `jaxconv.summary` and the benchmarks use the same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp

Pair = tuple[int, int]
Padding = str | int | Sequence[int] | Sequence[Sequence[int]]
ExplicitPadding = tuple[tuple[int, int], tuple[int, int]]


def _is_int(v) -> bool:
    """An int or an integer-like scalar (NumPy ints), never a bool or a float."""
    return not isinstance(v, bool) and (isinstance(v, int) or hasattr(v, "__index__"))


def to_pair(value: int | Sequence[int], name: str, *, minimum: int = 1) -> Pair:
    """Returns `(h, w)` from an int or a pair, each checked to be an int ≥ `minimum`."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"{name} must be an int or a pair (h, w) of ints, got {value!r}")
    for v in pair:
        if not _is_int(v):
            raise ValueError(f"{name} must hold ints, got {value!r}")
        if int(v) < minimum:
            raise ValueError(f"{name} must be >= {minimum} on each axis, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_positive_int(value, name: str) -> int:
    """Returns `value` as an int, checked to be an int (not a bool) >= 1."""
    if not _is_int(value) or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def effective_window(window: Pair, dilation: Pair) -> Pair:
    """Extent of a dilated window: `(k - 1) * d + 1` per axis."""
    return tuple((k - 1) * d + 1 for k, d in zip(window, dilation))  # type: ignore[return-value]


def resolve_padding(
    padding: Padding,
    in_hw: Pair,
    window: Pair,
    stride: Pair,
    dilation: Pair = (1, 1),
) -> ExplicitPadding:
    """Turns any accepted `padding` into `((top, bottom), (left, right))` and validates it.

    Args:
      padding: "SAME" (TF/XLA: output `ceil(in / stride)`, odd total pad goes to the end),
        "VALID", an int (every side), a pair `(ph, pw)` (symmetric per axis) or
        `((top, bottom), (left, right))`.
      in_hw: input `(height, width)`.
      window: window / kernel size `(kh, kw)`.
      stride: `(sh, sw)`.
      dilation: `(dh, dw)`.

    Returns:
      `((top, bottom), (left, right))`.

    Raises:
      ValueError: unknown padding, a negative pad, a pad ≥ the (dilated) window on some side,
        or a window larger than the padded input.
    """
    eff = effective_window(window, dilation)
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            pads = ((0, 0), (0, 0))
        elif mode == "SAME":
            pads = []
            for n, k, s in zip(in_hw, eff, stride):
                out = math.ceil(n / s)
                total = max((out - 1) * s + k - n, 0)
                pads.append((total // 2, total - total // 2))
            pads = tuple(pads)
        else:
            raise ValueError(f'padding must be "SAME", "VALID", an int or pairs, got {padding!r}')
    elif isinstance(padding, int) and not isinstance(padding, bool):
        pads = ((padding, padding), (padding, padding))
    elif isinstance(padding, Sequence) and len(padding) == 2:
        if all(isinstance(p, int) and not isinstance(p, bool) for p in padding):
            pads = ((padding[0], padding[0]), (padding[1], padding[1]))
        elif all(isinstance(p, Sequence) and len(p) == 2 and all(_is_int(v) for v in p)
                 for p in padding):
            pads = tuple((int(a), int(b)) for a, b in padding)
        else:
            raise ValueError(
                "padding must be an int, (ph, pw) or ((top, bottom), (left, right)), "
                f"got {padding!r}"
            )
    else:
        raise ValueError(
            f'padding must be "SAME", "VALID", an int, (ph, pw) or ((top, bottom), (left, right)),'
            f" got {padding!r}"
        )
    for (lo, hi), k, axis in zip(pads, eff, ("height", "width")):
        if lo < 0 or hi < 0:
            raise ValueError(f"padding must be >= 0, got {pads} on {axis}")
        if lo >= k or hi >= k:
            raise ValueError(
                f"padding {pads} is >= the window {k} on {axis}: such a window could cover only "
                f"padding; use a padding < {k}"
            )
    for n, (lo, hi), k, axis in zip(in_hw, pads, eff, ("height", "width")):
        if n + lo + hi < k:
            raise ValueError(
                f"window {k} (dilated) is larger than the padded input {n + lo + hi} on {axis} "
                f"(input {n}, padding {(lo, hi)})"
            )
    return pads  # type: ignore[return-value]


def output_size(in_hw: Pair, pads: ExplicitPadding, window: Pair, stride: Pair,
                dilation: Pair = (1, 1)) -> Pair:
    """Output `(height, width)`: `floor((n + lo + hi - k_eff) / s) + 1` per axis."""
    eff = effective_window(window, dilation)
    return tuple(  # type: ignore[return-value]
        (n + lo + hi - k) // s + 1 for n, (lo, hi), k, s in zip(in_hw, pads, eff, stride)
    )


def check_image(x, name: str = "x") -> None:
    """Checks `x` is a floating NHWC array of rank ≥ 3 with non-empty spatial/channel dims."""
    if not hasattr(x, "ndim"):
        raise ValueError(
            f"{name} must be an array (*batch, height, width, channels), got {type(x)}"
        )
    if x.ndim < 3:
        raise ValueError(
            f"{name} must have rank >= 3 (*batch, height, width, channels), got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be a floating array (e.g. images scaled to float32), got dtype {x.dtype}"
        )
    if min(x.shape[-3:]) == 0:
        raise ValueError(f"{name} has an empty height/width/channel dim: shape {x.shape}")


def check_kernel(kernel, ndim: int, layout: str) -> None:
    """Checks `kernel` is an array of rank `ndim` with no empty dim; `layout` names the dims."""
    if getattr(kernel, "ndim", None) != ndim:
        raise ValueError(f"kernel must be {layout}, got shape {getattr(kernel, 'shape', None)}")
    if 0 in kernel.shape:
        raise ValueError(f"kernel has an empty dim: shape {kernel.shape}, expected {layout}")


def check_bias(bias, shape):
    """Returns `bias` as an array checked to have `shape`, or None when `bias` is None."""
    if bias is None:
        return None
    bias = jnp.asarray(bias)
    if bias.shape != shape:
        raise ValueError(f"bias must have shape {shape}, got {bias.shape}")
    return bias


def flatten_batch(x):
    """Reshapes `(*batch, H, W, C)` to `(N, H, W, C)`; returns it and the batch shape."""
    batch = x.shape[:-3]
    return x.reshape((-1,) + x.shape[-3:]), batch


def unflatten_batch(y, batch):
    """Inverse of `flatten_batch` for an output `(N, H', W', C')`."""
    return y.reshape(batch + y.shape[1:])


def reduction_dtype(dtype):
    """float32 for low-precision inputs (bf16/f16), else the input dtype (f32/f64)."""
    return jnp.promote_types(dtype, jnp.float32)
