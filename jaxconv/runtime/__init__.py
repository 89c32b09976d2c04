"""Process settings for entry points: CPU tuning (XLA flags, malloc) and the compilation cache.

- `jaxconv.runtime.xla_flags`: `apply_cpu_performance_flags` (convolutions on every core;
  flags chosen per CPU class; opt out with `JAXCONV_NO_XLA_FLAGS=1`).
- `jaxconv.runtime.cpu_class`: `cpu_class` (AVX2 / AVX-512 / AMX from `/proc/cpuinfo`,
  `JAXCONV_CPU_CLASS` overrides) and `bf16_advice` (the warning for bfloat16 compute on a CPU
  where XLA's bfloat16 convolutions do not pay).
- `jaxconv.runtime.malloc`: `reuse_freed_memory` (no page faults on XLA's per-step buffers;
  opt out with `JAXCONV_NO_MALLOC_TUNING=1`).
- `jaxconv.runtime.guard`: the one check both go through (opt-out variable, `JAX_PLATFORMS`,
  backends already started).
- `jaxconv.runtime.compile_cache`: `enable_compilation_cache` (jax's persistent compilation
  cache in `~/.cache/jaxconv/jax`, so a rerun loads its compiled programs; any platform;
  `JAXCONV_COMPILATION_CACHE=0` turns it off, `=DIR` moves it).

An entry point calls `tune_cpu()` and `enable_compilation_cache()` before its first jax
computation::

    from jaxconv import runtime
    runtime.tune_cpu()
    runtime.enable_compilation_cache()

Importing this package changes nothing; library modules never call it.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxconv.runtime import compile_cache, cpu_class, guard, malloc, xla_flags
from jaxconv.runtime.compile_cache import enable_compilation_cache
from jaxconv.runtime.cpu_class import bf16_advice
from jaxconv.runtime.malloc import reuse_freed_memory
from jaxconv.runtime.xla_flags import apply_cpu_performance_flags


class CpuTuning(NamedTuple):
    """What `tune_cpu` applied."""

    xla_flags: list[str]  # the flags added to XLA_FLAGS (empty when none was)
    malloc: bool  # whether glibc's malloc now keeps freed memory


def tune_cpu() -> CpuTuning:
    """Applies the XLA flags, then the malloc settings; each is skipped as its module says.

    Call it before jax starts its backend (the first computation or `jax.devices()`); after,
    each logs a warning and applies nothing. CPU-only; the user's `XLA_FLAGS` win.

    Returns:
      A `CpuTuning` with what was applied.
    """
    return CpuTuning(apply_cpu_performance_flags(), reuse_freed_memory())


__all__ = [
    "CpuTuning",
    "apply_cpu_performance_flags",
    "bf16_advice",
    "compile_cache",
    "cpu_class",
    "enable_compilation_cache",
    "guard",
    "malloc",
    "reuse_freed_memory",
    "tune_cpu",
    "xla_flags",
]
