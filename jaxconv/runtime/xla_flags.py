"""XLA:CPU flags that make jaxconv's convolutions use every core; for entry points only.

With jaxlib 0.10.x, XLA:CPU hands convolutions (and dots, elementwise ops, reductions around
them) to its YNNPACK fusion, which ran on one core on our 2-core machine. Turning those
fusions off sends convolutions to XLA's Eigen path, which uses every core. Measured by
`benchmarks/train_step.py` (medians, interleaved, same run; `docs/performance.md`): train
step 2.4-2.5x faster on the CIFAR StageNet, 2.1x with LCN, 1.3x on AlexNet, 1.2x on LeNet-5;
3x3 convs reach 110-140 GFLOP/s instead of 25-60. Only the kernels change (results equal to
float rounding; the project's functional, layer and model tests pass with the flags on); the
flags are CPU-only, so GPU/TPU runs are unaffected.

XLA reads `XLA_FLAGS` when the first backend starts (the first computation or
`jax.devices()`), not when jax is imported, so an entry point calls
`apply_cpu_performance_flags()` (or `jaxconv.runtime.tune_cpu()`, which also tunes malloc)
before it computes anything::

    from jaxconv import runtime
    runtime.tune_cpu()
    import jax

The flags are chosen per CPU class (`jaxconv.runtime.cpu_class`: AVX2, AVX-512, AMX, detected
from `/proc/cpuinfo`, overridden by `JAXCONV_CPU_CLASS`); `FLAGS_BY_CLASS` records the
measurement behind each choice, and the call logs the class and the flags it applied.

Importing this module changes nothing (it imports `jaxconv`, hence jax, but starts no
backend); only the call does: library modules never configure JAX at import.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from jaxconv.runtime import cpu_class as cpu_class_lib
from jaxconv.runtime import guard

logger = logging.getLogger(__name__)

# Each entry: (flag name, value). Value syntax: XLA's LibraryFusionType list, "-" removes a type.
CPU_PERFORMANCE_FLAGS: tuple[tuple[str, str], ...] = (
    ("--xla_cpu_experimental_ynn_fusion_type",
     "-individual_convolution,-individual_dot,-dot,-eltwise,-reduce"),
)
# The flags per CPU class (`cpu_class.CLASSES`), each with the measurement that chose it
# (`benchmarks/train_step.py`, 2 cores, jaxlib 0.10.2; docs/performance.md, CHANGELOG.md). On
# every class measured the YNN-off flags won and nothing else did: `--xla_cpu_use_onednn` was
# slower on AVX-512 (498 vs 441 ms, bare conv) and changed nothing on AMX;
# `--xla_cpu_prefer_vector_width=512` was within noise on AVX-512 (Zen 4).
FLAGS_BY_CLASS: dict[str, tuple[tuple[str, str], ...]] = {
    "avx2": CPU_PERFORMANCE_FLAGS,  # Zen 3: CIFAR StageNet step 2.4x faster, AlexNet 1.3x
    "avx512": CPU_PERFORMANCE_FLAGS,  # Zen 4: CIFAR StageNet step 220 vs 354 ms
    "amx": CPU_PERFORMANCE_FLAGS,  # Xeon with AMX: bare 3x3 conv fwd+bwd 328 vs 739 ms
    "baseline": CPU_PERFORMANCE_FLAGS,  # not measured: Eigen's convolutions run on any x86
}
DISABLE_ENV = "JAXCONV_NO_XLA_FLAGS"  # set to 1 to make apply_cpu_performance_flags a no-op
_CHECK_TIMEOUT_S = 120


def _jaxlib_version() -> str | None:
    try:
        return metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None


def _cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "jaxconv" / "xla_flags.json"


def _read_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    try:
        path = _cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)
    except OSError:  # a read-only home: check again next time
        pass


def jaxlib_accepts(flags: str, *, use_cache: bool = True) -> bool:
    """Whether the installed jaxlib starts its CPU backend with `XLA_FLAGS=flags`.

    XLA aborts the whole process on an unknown flag or value, so the check runs in a child
    Python (about a second); the answer is cached per jaxlib version in
    `$XDG_CACHE_HOME/jaxconv/xla_flags.json` (default `~/.cache`).
    """
    version = _jaxlib_version()
    if version is None:
        return False
    key = f"{version} {flags}"
    cache = _read_cache() if use_cache else {}
    if key in cache:
        return bool(cache[key])
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import jax; jax.devices('cpu')"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=_CHECK_TIMEOUT_S,
        )
        accepted = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False  # unknown: do not cache
    if use_cache:
        cache[key] = accepted
        _write_cache(cache)
    return accepted


def flags_for(cls: str) -> tuple[tuple[str, str], ...]:
    """The `(flag name, value)` pairs chosen for CPU class `cls` (one of `cpu_class.CLASSES`).

    Raises:
      ValueError: an unknown class.
    """
    if cls not in FLAGS_BY_CLASS:
        raise ValueError(f"unknown CPU class {cls!r}; expected one of {list(FLAGS_BY_CLASS)}")
    return FLAGS_BY_CLASS[cls]


def choose_flags(cpu_flags: frozenset[str] | None = None,
                 current: str = "") -> tuple[str, list[str]]:
    """The CPU class and the `--name=value` flags to add to `XLA_FLAGS=current` for it.

    Args:
      cpu_flags: the CPU's flags (None: read `/proc/cpuinfo`; `JAXCONV_CPU_CLASS` overrides).
      current: the user's `XLA_FLAGS`; a flag it already names is left out (theirs wins).

    Returns:
      `(class, flags)`, the class one of `cpu_class.CLASSES`.
    """
    cls = cpu_class_lib.cpu_class(cpu_flags)
    named = {f.split("=", 1)[0] for f in current.split()}
    return cls, [f"{name}={value}" for name, value in flags_for(cls) if name not in named]


def apply_cpu_performance_flags(*, use_cache: bool = True,
                                cpu_flags: frozenset[str] | None = None) -> list[str]:
    """Appends this CPU class's flags (`flags_for`) to `XLA_FLAGS` where safe and not yet chosen.

    A flag is skipped when the user's `XLA_FLAGS` already names it (their value wins). Nothing
    is applied when `JAXCONV_NO_XLA_FLAGS=1`, when `JAX_PLATFORMS` is set without "cpu", when
    jax's backends have already started (too late: XLA has parsed its flags; a warning is
    logged), or when the installed jaxlib rejects the flags (`jaxlib_accepts`).

    The CPU class (`cpu_class.cpu_class`: from `cpu_flags`, `/proc/cpuinfo` or
    `JAXCONV_CPU_CLASS`) and the flags applied are logged at INFO level.

    Args:
      use_cache: reuse / store the `jaxlib_accepts` answer on disk.
      cpu_flags: the CPU's flags (None: read `/proc/cpuinfo`).

    Returns:
      The flags added (empty when none was).
    """
    if not guard.tuning_allowed(DISABLE_ENV):
        return []
    current = os.environ.get("XLA_FLAGS", "")
    cls, new = choose_flags(cpu_flags, current)
    if not new:
        return []
    if guard.backends_started():
        logger.warning("jax backends already started: XLA flags %s not applied (call "
                       "apply_cpu_performance_flags before using jax)", new)
        return []
    if not jaxlib_accepts(" ".join(new), use_cache=use_cache):
        logger.info("jaxlib %s rejects %s: not applied", _jaxlib_version(), new)
        return []
    os.environ["XLA_FLAGS"] = " ".join([current] + new).strip()
    logger.info("CPU class %s (%s overrides): XLA flags %s applied (%s=1 turns them off)",
                cls, cpu_class_lib.CLASS_ENV, new, DISABLE_ENV)
    return new
