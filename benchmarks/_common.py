"""Helpers shared by the benchmarks: machine description, fp32 peak, timing, tables.

Imported as `_common` by scripts run as `python benchmarks/<name>.py` (their directory is on
`sys.path`); it also puts the repository root on `sys.path` so `import jaxconv` works without
installing the package. Importing this module never imports jax or torch.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# The flags jaxconv.runtime.xla_flags applies (duplicated here so the benchmark can force them
# on/off in subprocesses without importing jaxconv first).
YNN_OFF_FLAG = (
    "--xla_cpu_experimental_ynn_fusion_type="
    "-individual_convolution,-individual_dot,-dot,-eltwise,-reduce"
)
# Variant tokens of train_step.py that add an XLA flag (in the worker's XLA_FLAGS).
XLA_FLAG_TOKENS = {
    "ynn_off": YNN_OFF_FLAG,
    "vw512": "--xla_cpu_prefer_vector_width=512",
    "onednn": "--xla_cpu_use_onednn=true",
}


def cpu_count() -> int:
    """Cores this process may run on (affinity), not the host's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def fp32_peak() -> tuple[float | None, str]:
    """Nominal fp32 peak in GFLOP/s and how it was derived (None when the clock is unknown).

    cores x 2 FMA units x SIMD lanes (8 for AVX2, 16 for AVX-512) x 2 FLOP/FMA x clock. The
    clock is /proc/cpuinfo's "cpu MHz" (under a hypervisor: the nominal clock, boost unknown),
    so the true peak can be higher and "% of peak" is then an upper bound.
    """
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma = 2 if "fma" in flags else 1
    mhz = info.get("cpu MHz")
    if mhz is None:
        return None, "clock unknown (no 'cpu MHz' in /proc/cpuinfo)"
    ghz = float(mhz) / 1000
    cores = cpu_count()
    peak = cores * fma * lanes * 2 * ghz
    how = (f"{cores} cores x {fma} FMA units x {lanes} fp32 lanes "
           f"({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}) x 2 FLOP x "
           f"{ghz:.3f} GHz ('cpu MHz' in /proc/cpuinfo) = {peak:.1f} GFLOP/s")
    return peak, how


def machine_header(extra: dict[str, str] | None = None) -> str:
    """Multi-line description: CPU model, cores, load, Python and library versions."""
    lines = [
        f"machine: {platform.node()} {platform.machine()} | CPU: {cpu_model()} | "
        f"cores usable: {cpu_count()} | load avg: {os.getloadavg()[0]:.2f}",
        f"python {platform.python_version()} | " + " | ".join(
            f"{k} {v}" for k, v in versions().items()),
    ]
    for key, value in (extra or {}).items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """Installed versions of jax, jaxlib, flax, optax, torch (without importing them)."""
    from importlib import metadata

    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def time_calls(fn, *, reps: int, warmup: int = 1) -> list[float]:
    """Seconds per call of `fn()` (which must block until its work is done), `reps` times."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def time_chunks(fn, steps: int, reps: int) -> dict[str, list[float]]:
    """Wall and process-CPU seconds per step of `reps` chunks of `fn(steps)`.

    Process CPU time (every thread of this process) moves less than wall time when other
    processes load the machine: it counts the work, not the waiting.
    """
    wall, cpu = [], []
    for _ in range(reps):
        c0, t0 = time.process_time(), time.perf_counter()
        fn(steps)
        wall.append((time.perf_counter() - t0) / steps)
        cpu.append((time.process_time() - c0) / steps)
    return {"step_s": wall, "cpu_s": cpu}


def median(values) -> float:
    return statistics.median(values)


def format_table(header: list[str], rows: list[list]) -> str:
    """A GitHub-markdown table (also readable in a terminal)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


class Worker:
    """A child process speaking one JSON object per line on stdin/stdout.

    The child prints `@@{json}` lines (anything else on stdout is passed through to stderr), so
    libraries' chatter cannot break the protocol.
    """

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name = name
        self.proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            cwd=str(REPO_ROOT),
        )

    def request(self, message: dict) -> dict:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def receive(self) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.name} exited (rc={self.proc.wait()})")
            if line.startswith("@@"):
                return json.loads(line[2:])
            sys.stderr.write(f"[{self.name}] {line}")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def serve(handlers: dict) -> None:
    """Child side of `Worker`: answers `{"cmd": name, ...}` lines with `handlers[name](msg)`."""
    print("@@" + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            reply = handlers[msg["cmd"]](msg)
        except Exception as e:  # report, keep serving: one failing variant must not stop a run
            reply = {"error": f"{type(e).__name__}: {e}"}
        print("@@" + json.dumps(reply), flush=True)
