"""JAX's persistent compilation cache for entry points: a rerun loads its programs from disk.

XLA compiles every program a process runs (the train and eval steps, the predictor's forward
pass, the plots' feature maps, each eager op) the first time that process runs it: seconds on
a CPU, which a short command pays on every start. With the cache on, jax writes each compiled
program to a directory under a key of its HLO, compile options, device and jax/jaxlib
versions, and a later process that builds the same program loads it instead of compiling.

Where (`cache_dir`):

- ``JAXCONV_COMPILATION_CACHE`` unset (or ``1``): ``$XDG_CACHE_HOME/jaxconv/jax``, i.e.
  ``~/.cache/jaxconv/jax`` by default;
- ``JAXCONV_COMPILATION_CACHE=/some/dir``: that directory;
- ``JAXCONV_COMPILATION_CACHE=0``: off.

A cache directory the user gave jax itself (``JAX_COMPILATION_CACHE_DIR``, or
``jax_compilation_cache_dir`` set in code) wins and is left as it is. The directory holds one
file per program (kilobytes to a few megabytes); beyond `MAX_SIZE_BYTES` the least recently
used are deleted, and a file lock keeps processes that share the directory (parallel tests,
several trainers) from reading an entry another is still writing. Delete it any time. Every
program is cached, however short its compilation (`MIN_COMPILE_TIME_SECS`; jax's default skips
those under a second, most of a small CPU model's). ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``
and ``JAX_COMPILATION_CACHE_MAX_SIZE`` override the two.

``train.py``, ``python -m jaxconv.predict`` and ``python -m jaxconv.plots`` call
`enable_compilation_cache()` before their first computation; importing this module (or any
library module) changes nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping

import jax

from jaxconv.runtime import guard

logger = logging.getLogger(__name__)
LOCK_NAME = ".lockfile"  # The file jax's size-bounded cache locks (filelock) in the directory.

ENV = "JAXCONV_COMPILATION_CACHE"  # unset/1: default directory; 0: off; else a directory
OFF_VALUES = ("0", "off", "false", "no")
DEFAULT_VALUES = ("", "1", "on", "true", "yes")
MIN_COMPILE_TIME_SECS = 0.0  # cache every program (jax's default: only those over 1 s)
# Least recently used entries deleted beyond this. Setting a size also makes jax lock the
# directory (filelock) around every read and write; jax's default (no limit) does neither.
MAX_SIZE_BYTES = 2 * 1024**3
_OVERRIDES = {"jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_TIME_SECS,
              "jax_compilation_cache_max_size": MAX_SIZE_BYTES}


def default_cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/jaxconv/jax`` (``~/.cache/jaxconv/jax`` when XDG_CACHE_HOME is unset).

    Args:
      environ: the environment to read (default `os.environ`).
    """
    env = os.environ if environ is None else environ
    root = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "jaxconv", "jax")


def cache_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The directory ``JAXCONV_COMPILATION_CACHE`` asks for, or None when it turns the cache off.

    Args:
      environ: the environment to read (default `os.environ`).

    Returns:
      `default_cache_dir()` when the variable is unset, empty or ``1``; None for ``0``
      (``off``, ``false``, ``no``); otherwise the variable's value as an absolute path
      (``~`` expanded).
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    if value.lower() in DEFAULT_VALUES:
        return default_cache_dir(env)
    return os.path.abspath(os.path.expanduser(value))


def enable_compilation_cache() -> str | None:
    """Points jax's persistent compilation cache at `cache_dir()`; for entry points only.

    Call it before the first computation (jax decides whether to use the cache at its first
    compilation). Nothing is changed when the cache is off (``JAXCONV_COMPILATION_CACHE=0``),
    when jax already has a cache directory (the user's wins; it is returned), when jax's
    backends have started (too late to be sure: a warning is logged) or when the directory
    cannot be created (a warning is logged).

    Returns:
      The cache directory in use, or None when there is none.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = cache_dir()
    if path is None:
        return None
    if guard.backends_started():
        logger.warning("jax backends already started: compilation cache %s not enabled "
                       "(call enable_compilation_cache before using jax)", path)
        return None
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError("not writable")
        lock = os.path.join(path, LOCK_NAME)
        if os.path.lexists(lock) and not os.path.isfile(lock):  # jax would warn per program.
            raise IsADirectoryError(f"{lock} is not a regular file; remove it")
    except OSError as err:
        logger.warning("compilation cache off: cannot write to %s (%s); set %s=0 or to "
                       "a writable directory", path, err, ENV)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    for name, value in _OVERRIDES.items():
        if name.upper() in os.environ:  # The user's setting wins.
            continue
        if name == "jax_compilation_cache_max_size" and importlib.util.find_spec(
                "filelock") is None:  # jax needs it to bound the size; unbounded without.
            continue
        jax.config.update(name, value)
    return path
