"""Tests for `jaxconv.runtime.malloc`: page faults per XLA call, counted by the kernel.

Each case runs a child Python (malloc settings and XLA's thread pool are per process) that
calls a jitted function writing a fresh 48 MiB output 30 times and reports the median of the
minor page faults (`getrusage`) of the last 10 calls. Without the settings every call faults in
every 4 KiB page of the new buffer; with them the heap grows for the first dozen calls, then the
freed buffers are reused and nothing faults (the median: on a loaded machine the heap was seen
to grow once more, in one of the last 10 calls).
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxconv.runtime import malloc

REPO = Path(__file__).resolve().parent.parent
PAGES = 48 * 2**20 // 4096

_CHILD = textwrap.dedent("""
    import resource, statistics, sys
    from jaxconv.runtime import malloc
    print("APPLIED", malloc.reuse_freed_memory())
    import jax, jax.numpy as jnp
    x = jnp.ones((48 * 2**20 // 4,), jnp.float32)
    f = jax.jit(lambda x: x * 2)
    for _ in range(20):  # the heap grows for the first ~12 calls, then is reused
        f(x).block_until_ready()
    faults = []
    for _ in range(10):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print("FAULTS", statistics.median(faults))
""")


def _faults(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
    env.pop(malloc.DISABLE_ENV, None)
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    return lines["APPLIED"] == "True", float(lines["FAULTS"])


@pytest.mark.slow
@pytest.mark.skipif(malloc.glibc() is None, reason="needs Linux with glibc")
def test_freed_xla_buffers_are_reused_without_page_faults():
    applied, tuned = _faults({})
    not_applied, default = _faults({malloc.DISABLE_ENV: "1"})
    assert applied and not not_applied
    assert default > 0.9 * PAGES  # every page of each fresh 48 MiB output (12,288 pages)
    assert tuned < 0.05 * PAGES


def test_opt_out_and_other_platforms_do_nothing(monkeypatch):
    monkeypatch.setenv(malloc.DISABLE_ENV, "1")
    assert malloc.reuse_freed_memory() is False
    monkeypatch.delenv(malloc.DISABLE_ENV)
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert malloc.reuse_freed_memory() is False


def test_too_late_once_backends_started(monkeypatch, caplog):
    import jax

    monkeypatch.delenv(malloc.DISABLE_ENV, raising=False)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    jax.devices()
    with caplog.at_level("WARNING", logger="jaxconv.runtime.malloc"):
        assert malloc.reuse_freed_memory() is False
    if malloc.glibc() is not None:
        assert "already started" in caplog.text
