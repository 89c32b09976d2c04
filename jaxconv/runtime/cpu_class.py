"""Which class of x86 CPU this is (AVX2, AVX-512, AMX), and what that means for bfloat16.

XLA:CPU's speed, and PyTorch's, depend on the vector units: the CPU settings of
`jaxconv.runtime.xla_flags` are chosen per class, and `bf16_advice` says when
`compute_dtype=bfloat16` will not pay on this CPU. The class comes from the `flags` line of
`/proc/cpuinfo` (Linux); `JAXCONV_CPU_CLASS` overrides the detection. Nothing here starts jax.

Measured (jaxlib 0.10.2, 2 cores, bare 3x3 conv 128x32x32x64 -> 128 forward + both gradients,
XLA with the YNN-off flags; `docs/performance.md`): XLA:CPU's bfloat16 convolution is no faster
than its float32 one on every class we had, while PyTorch's oneDNN uses the bfloat16 units:

| class | CPU | XLA float32 | XLA bfloat16 | torch channels_last bfloat16 |
|---|---|---|---|---|
| `avx512` with AVX512-BF16, no AMX | AMD EPYC (Zen 4) | 286.6 ms | 283.7 ms | 153.3 ms |
| `amx` | Intel Xeon, AMX | 328 ms | 333 ms | 172 ms |

(Shared machines: load average 3.6-4.0 for the first row, quiet for the second; the ratio
within a row is what counts.) In the CIFAR StageNet-shaped step of `benchmarks/onednn/bench.py`
XLA's bfloat16 step took 268.4 ms against 229.2 ms in float32 on the Zen 4. AVX2 CPUs have no
bfloat16 arithmetic: XLA converts to float32 and back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CLASSES = ("amx", "avx512", "avx2", "baseline")  # best first
CLASS_ENV = "JAXCONV_CPU_CLASS"  # one of CLASSES: overrides the detection
NO_BF16_WARNING_ENV = "JAXCONV_NO_BF16_WARNING"  # set to 1 to silence `bf16_advice`

# bfloat16 / float32 time of XLA:CPU's 3x3 conv forward+backward per class (jaxlib 0.10.2; the
# module docstring's table). A class is missing where it was not measured; at or above
# `BF16_PAYS_BELOW` bfloat16 compute does not pay.
BF16_CONV_TIME_RATIO = {"avx512": 283.7 / 286.6, "amx": 333 / 328}
BF16_PAYS_BELOW = 0.8
_MEASURED = {"avx512": "283.7 vs 286.6 ms on an AMD EPYC with AVX512-BF16",
             "amx": "333 vs 328 ms on an Intel Xeon with AMX"}


def read_cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the first `flags` line of `/proc/cpuinfo`.

    Args:
      cpuinfo: the file's text (None: read `/proc/cpuinfo`; empty where it does not exist).

    Returns:
      The flags, e.g. `{"avx2", "fma", "avx512f", ...}`; empty when unknown.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_class(flags: Iterable[str] | None = None) -> str:
    """The class of a CPU from its flags, one of `CLASSES`.

    "amx" with AMX tiles and their bfloat16 instructions (`amx_tile`, `amx_bf16`), else
    "avx512" with `avx512f`, else "avx2" with `avx2` and `fma`, else "baseline".
    `JAXCONV_CPU_CLASS`, when set to one of `CLASSES`, wins over the flags.

    Args:
      flags: CPU flags (None: `read_cpu_flags()`).

    Raises:
      ValueError: `JAXCONV_CPU_CLASS` is set to something else.
    """
    forced = os.environ.get(CLASS_ENV, "")
    if forced:
        if forced not in CLASSES:
            raise ValueError(f"{CLASS_ENV}={forced!r}: expected one of {list(CLASSES)}")
        return forced
    flags = read_cpu_flags() if flags is None else frozenset(flags)
    if {"amx_tile", "amx_bf16"} <= flags:
        return "amx"
    if "avx512f" in flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "baseline"


def bf16_advice(flags: Iterable[str] | None, compute_dtype, platform: str = "cpu", *,
                conv_time_ratio: dict[str, float] | None = None) -> str | None:
    """A warning when bfloat16 compute will not make training faster on this CPU, else None.

    The condition: the platform is CPU, `compute_dtype` is bfloat16, `JAXCONV_NO_BF16_WARNING`
    is unset (or "0"), and the CPU's class has no bfloat16 arithmetic ("avx2", "baseline") or
    XLA:CPU's bfloat16 convolution measured at least `BF16_PAYS_BELOW` x its float32 time
    there (`BF16_CONV_TIME_RATIO`). A class without a measurement gets no warning.

    Args:
      flags: CPU flags (None: `read_cpu_flags()`).
      compute_dtype: the models' compute dtype (a name or a dtype; None means float32).
      platform: jax's default backend ("cpu", "gpu", "tpu").
      conv_time_ratio: bfloat16 / float32 conv time per class (None: `BF16_CONV_TIME_RATIO`).

    Returns:
      One line to log (why, and how to turn bfloat16 or the warning off), or None.
    """
    if platform != "cpu" or compute_dtype is None or "bfloat16" not in str(compute_dtype):
        return None
    if os.environ.get(NO_BF16_WARNING_ENV, "") not in ("", "0"):
        return None
    cls = cpu_class(flags)
    ratio = (BF16_CONV_TIME_RATIO if conv_time_ratio is None else conv_time_ratio).get(cls)
    if cls in ("avx2", "baseline"):
        why = (f"this CPU ({cls}) has no bfloat16 arithmetic: XLA:CPU converts to float32 "
               "and back, so each op gets slower")
    elif ratio is not None and ratio >= BF16_PAYS_BELOW:
        detail = _MEASURED.get(cls) if conv_time_ratio is None else None
        why = (f"on this CPU class ({cls}) XLA:CPU's bfloat16 convolutions took {ratio:.2f}x "
               f"float32's time ({detail + ', ' if detail else ''}3x3 conv forward+backward, "
               "jaxlib 0.10.2)")
    else:
        return None
    return (f"compute_dtype=bfloat16 on CPU will not speed training up: {why}; it only costs "
            "precision. Use config.compute_dtype='float32' (or set "
            f"{NO_BF16_WARNING_ENV}=1 to silence this).")
