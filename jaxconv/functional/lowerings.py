"""The lowering switch of the windowed ops: XLA's native ops, or forms tuned for XLA:CPU.

Public as `jaxconv.functional.{LOWERINGS, set_lowering, get_lowering, lowering}`; the ops ask
`use_cpu_forms()` when they are traced, and then take their CPU form from
`jaxconv.functional.cpu`. See `lowering` for what each mode does.
"""

from __future__ import annotations

import contextlib

import jax

LOWERINGS = ("auto", "xla", "cpu")

_mode = "auto"


def _check(mode):
    if mode not in LOWERINGS:
        raise ValueError(f"lowering must be one of {LOWERINGS}, got {mode!r}")
    return mode


def set_lowering(mode: str) -> str:
    """Sets the lowering (`"auto"`, `"xla"` or `"cpu"`) for ops traced from now on.

    Returns:
      The previous mode, so a caller can restore it.
    """
    global _mode
    previous, _mode = _mode, _check(mode)
    return previous


def get_lowering() -> str:
    """The mode as set (`"auto"`, `"xla"` or `"cpu"`), not resolved for the backend."""
    return _mode


@contextlib.contextmanager
def lowering(mode: str):
    """Ops traced inside the block use lowering `mode`; the previous one is restored after.

    On XLA:CPU some of XLA's own windowed ops ran far slower than the same sums or maxima
    written as strided slices or matmuls (`docs/performance.md`, 2 cores, batch 128,
    forward+backward): an overlapping `lax.reduce_window` max pool (its gradient is
    `select_and_scatter`), a conv bias's gradient (a reduce-window fusion), the depthwise
    convolution of a weighted Lp pool, LCN's one-channel Gaussian convolutions, a
    one-input-channel convolution, the locally-connected einsum. GPU and TPU compilers handle
    those ops well (cuDNN, fused windows), so there jaxconv keeps them.
    The ops choose when they are traced, from `jax.default_backend()`:

    - `"auto"` (the default): `"cpu"` when the default backend is the CPU, else `"xla"`.
    - `"xla"`: XLA's native ops on every platform (the reference lowering).
    - `"cpu"`: the CPU-tuned forms on every platform.

    Both give the same values up to float rounding, and the same gradients, except a max pool's
    at exact ties (the CPU form splits it among the tied taps, `reduce_window` gives it all to
    the first). `jax.jit` caches traces, so the mode applies to functions traced after it is
    set: set it before a jitted function's first call, or inside the traced function. A
    function jitted for a non-default device (`jax.jit(..., device=gpu)` with a CPU default
    backend) needs the mode set explicitly.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import jaxconv.functional as F
      >>> x = jnp.ones((1, 8, 8, 3))
      >>> with F.lowering("xla"):  # lax.reduce_window even on CPU
      ...     y = jax.jit(lambda x: F.max_pool(x, 3, 2))(x)
      >>> y.shape
      (1, 3, 3, 3)
    """
    previous = set_lowering(mode)
    try:
        yield
    finally:
        set_lowering(previous)


def use_cpu_forms() -> bool:
    """True when ops traced now should use the CPU-tuned forms (the mode, resolved)."""
    if _mode == "auto":
        return jax.default_backend() == "cpu"
    return _mode == "cpu"
