"""The one guard every CPU runtime tuning of `jaxconv.runtime` goes through.

A tuning (XLA flags, malloc settings) runs only when its opt-out variable is unset (or "0"),
when `JAX_PLATFORMS`, if set, includes "cpu", and before jax's backends start: XLA reads its
flags, and creates the thread pool whose heaps malloc settings shape, when the first backend
starts (the first computation or `jax.devices()`), not when jax is imported.
"""

from __future__ import annotations

import os

try:  # private jax API (no public equivalent); if it moves, backends_started assumes the worst
    from jax._src import xla_bridge
except ImportError:
    xla_bridge = None


def tuning_allowed(disable_env: str) -> bool:
    """Whether a CPU tuning opted out by `disable_env` may run in this process.

    Args:
      disable_env: name of the tuning's opt-out environment variable (e.g.
        "JAXCONV_NO_XLA_FLAGS"); any value but "" or "0" turns the tuning off.

    Returns:
      False when `disable_env` is set, or when `JAX_PLATFORMS` is set without "cpu" (the
      tunings are CPU-only); True otherwise.
    """
    if os.environ.get(disable_env, "") not in ("", "0"):
        return False
    platforms = os.environ.get("JAX_PLATFORMS", "")
    return not platforms or "cpu" in platforms.lower().split(",")


def backends_started() -> bool:
    """Whether jax has started a backend, after which a tuning is too late to take effect.

    Returns:
      True once the first backend is up (or when jax's private probe has moved: assume the
      worst); False before.
    """
    try:
        return xla_bridge.backends_are_initialized()
    except AttributeError:  # xla_bridge is None, or the function was renamed
        return True
