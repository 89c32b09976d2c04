"""Keep freed host memory in the process, so XLA:CPU's per-step buffers stop page-faulting.

XLA:CPU allocates each execution's temporary buffer (95 MB for the CIFAR StageNet train step
at batch 128) and every large output afresh, from its worker threads. glibc serves an
allocation that large with a new ``mmap`` and unmaps it when freed, so the kernel zero-fills
every page again on first touch: 24,500 page faults per CIFAR step (one per 4 KiB page of the
temp buffer), measured with ``getrusage``, and about 20 ms of a 25 ms ``x * 2`` on a 33 MB
array (2 ms when the buffer is reused). `reuse_freed_memory` tells glibc's allocator to keep
freed memory for reuse instead:

- ``M_ARENA_MAX = 1``: one heap for all threads. glibc's per-thread heaps are at most 64 MB
  and fall back to ``mmap`` for anything larger whatever the other settings;
- ``M_MMAP_MAX = 0``: large blocks come from that heap, not from ``mmap``;
- ``M_TRIM_THRESHOLD = 2 GiB - 1``: freed memory at the top of the heap is not returned to the
  system.

After it, the CIFAR step takes 0 page faults and runs about 10 % faster. The cost: the
process keeps its peak host memory until it exits (as with PyTorch's or jemalloc's caching
allocators), more of it while the heap settles (resident memory 441 -> 708 MB for the CIFAR
step above, 1.24 -> 1.89 GB for AlexNet at batch 16), and all threads share one allocator
lock. Figures: `docs/performance.md`.

Like `jaxconv.runtime.xla_flags`, this is for entry points (`train.py`, the CLIs, through
`jaxconv.runtime.tune_cpu`), called before jax starts its backend (its thread pool must be
created after ``M_ARENA_MAX``): importing the module changes nothing.
Linux with glibc only; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from jaxconv.runtime import guard

logger = logging.getLogger(__name__)

DISABLE_ENV = "JAXCONV_NO_MALLOC_TUNING"  # set to 1 to make reuse_freed_memory a no-op
# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
SETTINGS: tuple[tuple[str, int, int], ...] = (
    ("M_ARENA_MAX", _M_ARENA_MAX, 1),
    ("M_MMAP_MAX", _M_MMAP_MAX, 0),
    ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, 2**31 - 1),
)


def glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc on Linux (the one `mallopt` here knows).

    Returns:
      The loaded library, or None elsewhere (other systems, musl).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (musl and others lack it)
        return libc
    except (OSError, AttributeError):
        return None


def reuse_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory (`SETTINGS`) so XLA buffers reuse warm pages.

    Does nothing (returns False) when `JAXCONV_NO_MALLOC_TUNING=1`, when `JAX_PLATFORMS` is set
    without "cpu", off Linux/glibc, or when jax's backends have already started (a warning is
    logged: XLA's threads would keep their own heaps).

    Returns:
      Whether every setting was applied.
    """
    if not guard.tuning_allowed(DISABLE_ENV):
        return False
    libc = glibc()
    if libc is None:
        return False
    if guard.backends_started():
        logger.warning("jax backends already started: host malloc not tuned (call "
                       "reuse_freed_memory before using jax)")
        return False
    applied = [name for name, param, value in SETTINGS if libc.mallopt(param, value) == 1]
    if len(applied) != len(SETTINGS):
        logger.info("mallopt applied only %s", applied)
        return False
    return True
