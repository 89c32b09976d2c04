"""Micro-benchmarks of jaxconv's layers, forward and forward+backward, on this machine.

Run from the repository root (CPU: about 2-3 minutes on 2 cores)::

    python benchmarks/layers.py                   # XLA flags of jaxconv.runtime.xla_flags applied
    python benchmarks/layers.py --xla=default     # XLA as installed (YNNPACK fusion on)
    python benchmarks/layers.py --heap=default    # without jaxconv.runtime.malloc's settings
    python benchmarks/layers.py --sections=lc,lcn --batch=64
    python benchmarks/layers.py --device=gpu --dtype=bfloat16   # see gpu.sh

Ops with two lowerings (`jaxconv.functional.lowering`) are timed under both: "xla" (XLA's
native ops, what GPU/TPU use) and "cpu" (the CPU-tuned forms, the default on CPU).

Sections (`--sections`, comma-separated):
  lc    locally-connected (`F.locally_connected2d`: einsum "xla", position-major batched
        matmul "cpu") vs `F.conv2d` at the same shapes: time, and memory (XLA's temp buffer of
        the compiled function next to the params and the patches it must hold).
  lcn   a stage conv3x3 -> ReLU -> LCN -> 2x2 max pool vs the same stage without LCN: LCN's
        share of the stage's forward+backward time (one-channel convs "xla", separable
        shifted slices "cpu").
  pool  max pool (reshape path vs `levers.max_pool_reduce_window`), overlapping 3/2 max pool
        (reduce_window "xla", separable slices "cpu"), L2 pooling, Gaussian-weighted L2
        pooling (depthwise conv "xla", weighted slices "cpu"), feature L2 pooling, maxout.
  around what surrounds a stage's conv: bias add -> ReLU -> 2x2 max pool, fwd+bwd w.r.t. the
        conv output and the bias, with the bias gradient as XLA's sum (`y + b`) or a
        matrix-vector product (`cpu.conv.add_bias`), at the CIFAR StageNet's and LeNet-5's
        shapes.
  conv  lax.conv (`F.conv2d` under "xla") vs `levers.conv2d_im2col`, float32 vs bfloat16
        compute, at LeNet's C1 and the CIFAR StageNet's three convs (on CPU, `F.conv2d`
        itself uses the tiled banded form for LeNet's single-channel C1).

"fwd+bwd" is the VJP with respect to the input and the parameters with a fixed random
cotangent (a `sum` loss would let XLA simplify the backward). Each group's variants are timed
in interleaved rounds, in rotating order; figures are medians (ms per call), compile and one
warm-up call excluded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import _common


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default="lc,lcn,pool,conv,around")
    p.add_argument("--xla", choices=("apply", "default"), default="apply",
                   help="apply = jaxconv.runtime.xla_flags.apply_cpu_performance_flags() first")
    p.add_argument("--heap", choices=("reuse", "default"), default="reuse",
                   help="reuse = jaxconv.runtime.malloc.reuse_freed_memory() first (as train.py)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--chunk_seconds", type=float, default=0.15)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="input/param dtype of every op")
    return p.parse_args()


ARGS = _parse()
if ARGS.device == "cpu":
    os.environ["JAX_PLATFORMS"] = "cpu"
if ARGS.xla == "apply":
    from jaxconv.runtime import xla_flags

    APPLIED = xla_flags.apply_cpu_performance_flags()
else:
    APPLIED = []
if ARGS.heap == "reuse":
    from jaxconv.runtime import malloc

    malloc.reuse_freed_memory()

import jax  # noqa: E402  (XLA flags must be set first)
import jax.numpy as jnp  # noqa: E402
import levers  # noqa: E402
import numpy as np  # noqa: E402

import jaxconv.functional as F  # noqa: E402
from jaxconv.functional.cpu import conv as cpu_conv  # noqa: E402

DTYPE = jnp.bfloat16 if ARGS.dtype == "bfloat16" else jnp.float32
MB = 2**20


def _rand(shape, seed, dtype=None):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return jnp.asarray(x, dtype or DTYPE)


def _fwd_bwd(f, n_params):
    """`(x, *params, ct) -> vjp of f at (x, *params)`: gradients w.r.t. input and params."""

    def g(*args):
        primals, ct = args[:-1], args[-1]
        y, vjp = jax.vjp(f, *primals)
        return y, vjp(ct)

    return g


class Case:
    """A jitted function with its arguments, compiled once; `call()` blocks on the result."""

    def __init__(self, f, *args):
        self.args = args
        self.compiled = jax.jit(f).lower(*args).compile()
        mem = self.compiled.memory_analysis()
        self.temp_bytes = getattr(mem, "temp_size_in_bytes", None)

    def call(self):
        jax.block_until_ready(self.compiled(*self.args))


def _time_group(cases: dict[str, Case]) -> dict[str, float]:
    """Median seconds per call of each case; interleaved rounds, rotating order."""
    steps = {}
    for name, case in cases.items():
        t = min(_common.time_calls(case.call, reps=2, warmup=1))
        steps[name] = max(1, round(ARGS.chunk_seconds / max(t, 1e-6)))
    names = list(cases)
    times = {n: [] for n in names}
    for r in range(ARGS.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            for s in _common.time_calls(lambda n=n: [cases[n].call() for _ in range(steps[n])],
                                        reps=2, warmup=0):
                times[n].append(s / steps[n])
    return {n: _common.median(t) for n, t in times.items()}


def _ms(s):
    return f"{s * 1e3:.2f}"


def _under(mode, f):
    """`f` traced under `F.lowering(mode)`: the lowering is chosen when jit traces."""

    def g(*args, **kwargs):
        with F.lowering(mode):
            return f(*args, **kwargs)

    return g


def _with_grads(f, x, params, seed):
    """Two cases for `f(x, *params)`: forward, and forward+backward with a random cotangent."""
    y = jax.eval_shape(f, x, *params)
    ct = _rand(y.shape, seed, y.dtype)
    return Case(f, x, *params), Case(_fwd_bwd(f, len(params)), x, *params, ct)


# ---------------------------------------------------------------------------------- sections


def section_lc():
    print("\n## Locally-connected vs conv (VALID, stride 1; fwd+bwd = grads w.r.t. x and W)")
    n = ARGS.batch
    rows, ratios = [], []
    for (h, c, o, k) in [(32, 3, 64, 3), (16, 64, 64, 3), (8, 128, 128, 3)]:
        x = _rand((n, h, h, c), 0)
        oh = h - k + 1
        wc = _rand((k, k, c, o), 1) * 0.1
        wl = _rand((oh, oh, k, k, c, o), 2) * 0.1

        def conv(x, w):
            return F.conv2d(x, w, padding="VALID")

        def lc(x, w, k=k):
            return F.locally_connected2d(x, w, kernel_size=k)

        variants = [("conv", conv, wc), ("lc xla", _under("xla", lc), wl),
                    ("lc cpu", _under("cpu", lc), wl)]
        cases = {}
        for name, f, w in variants:
            cases[f"{name} fwd"], cases[f"{name} fwd+bwd"] = _with_grads(f, x, (w,), 3)
        t = _time_group(cases)
        item = jnp.dtype(DTYPE).itemsize
        patches = n * oh * oh * k * k * c * item
        for name, _, w in variants:
            fb = cases[f"{name} fwd+bwd"]
            rows.append([f"{n}x{h}x{h}x{c}->{o} k{k}", name, _ms(t[f"{name} fwd"]),
                         _ms(t[f"{name} fwd+bwd"]),
                         f"{t[f'{name} fwd+bwd'] / t['conv fwd+bwd']:.2f}x",
                         f"{w.size * item / MB:.1f}", f"{patches / MB:.1f}",
                         f"{(fb.temp_bytes or 0) / MB:.1f}"])
        ratios.append(t["lc cpu fwd+bwd"] / t["conv fwd+bwd"])
    print(_common.format_table(
        ["shape", "op", "fwd ms", "fwd+bwd ms", "fwd+bwd / conv", "params MB",
         "patches MB", "XLA temp MB (fwd+bwd)"], rows))
    print(f"LC (cpu) / conv fwd+bwd time: {', '.join(f'{r:.1f}x' for r in ratios)}"
          " (target <= 3x)")


def section_lcn():
    print("\n## LCN's share of a stage (conv3x3 SAME -> ReLU -> [LCN] -> max 2x2), fwd+bwd")
    n = ARGS.batch
    rows = []
    for (h, c, o, k) in [(32, 3, 64, 5), (16, 64, 128, 5), (8, 128, 256, 3)]:
        x0 = _rand((n, h, h, c), 0)
        w0 = _rand((3, 3, c, o), 1) * 0.1

        def stage(lcn, k=k):
            def f(x, w):
                y = jax.nn.relu(F.conv2d(x, w))
                if lcn:
                    y = F.local_contrast_norm(y, k)
                return F.max_pool(y, 2)
            return f

        cases = {}
        for name, lcn, mode in [("no LCN", False, "cpu"), ("LCN xla", True, "xla"),
                                ("LCN cpu", True, "cpu")]:
            cases[name] = _with_grads(_under(mode, stage(lcn)), x0, (w0,), 3)[1]
        t = _time_group(cases)
        for name in cases:
            share = (t[name] - t["no LCN"]) / t[name]
            rows.append([f"{n}x{h}x{h}x{c}->{o}, LCN {k}", name, _ms(t[name]),
                         "-" if name == "no LCN" else f"{100 * share:.0f}%"])
    print(_common.format_table(["stage", "variant", "fwd+bwd ms", "LCN share"], rows))
    print("LCN share = (stage with LCN - stage without) / stage with LCN (target <= 25%)")


def section_pool():
    print("\n## Pooling (window 2, stride 2 unless noted); xla / cpu = F.lowering")
    n = ARGS.batch
    rows = []
    g = F.gaussian_window(2)
    ops = {
        "max (reshape)": lambda x: F.max_pool(x, 2),
        "max (reduce_window, lever)": lambda x: levers.max_pool_reduce_window(x, 2),
        "max 3/2 xla (reduce_window)": _under("xla", lambda x: F.max_pool(x, 3, 2)),
        "max 3/2 cpu (separable)": _under("cpu", lambda x: F.max_pool(x, 3, 2)),
        "L2 (p=2)": lambda x: F.lp_pool(x, 2.0, 2),
        "L2 Gaussian xla (depthwise conv)": _under("xla", lambda x: F.lp_pool(x, 2.0, 2,
                                                                             weights=g)),
        "L2 Gaussian cpu (slices)": _under("cpu", lambda x: F.lp_pool(x, 2.0, 2, weights=g)),
        "feature L2 g=2": lambda x: F.feature_pool(x, 2),
        "feature max g=2 (maxout)": lambda x: F.feature_pool(x, 2, p="max"),
    }
    for (h, c) in [(32, 64), (16, 128)]:
        x = _rand((n, h, h, c), 0)
        cases = {}
        for name, f in ops.items():
            cases[f"{name} fwd"], cases[f"{name} fwd+bwd"] = _with_grads(f, x, (), 3)
        t = _time_group(cases)
        base = t["max (reshape) fwd+bwd"]
        for name in ops:
            rows.append([f"{n}x{h}x{h}x{c}", name, _ms(t[f"{name} fwd"]),
                         _ms(t[f"{name} fwd+bwd"]), f"{t[f'{name} fwd+bwd'] / base:.2f}x"])
    print(_common.format_table(["input", "pool", "fwd ms", "fwd+bwd ms",
                                "fwd+bwd / max (reshape)"], rows))


def section_around():
    print("\n## Around a stage's conv: bias -> ReLU -> max 2x2, fwd+bwd w.r.t. y and bias")
    n = ARGS.batch
    rows = []
    bias_adds = {"y + b": lambda y, b: y + b,
                 "add_bias": lambda y, b: cpu_conv.add_bias(y, b, min_channels=0)}
    for (h, c) in [(32, 128), (16, 256), (8, 256), (28, 6), (10, 16)]:
        y, b = _rand((n, h, h, c), 0), _rand((c,), 1)
        cases = {}
        for bname, add in bias_adds.items():
            def f(y, b, add=add):
                return F.max_pool(jax.nn.relu(add(y, b)), 2)
            cases[bname] = _with_grads(f, y, (b,), 3)[1]
        t = _time_group(cases)
        for name, sec in t.items():
            rows.append([f"{n}x{h}x{h}x{c}", name, _ms(sec), f"{t['y + b'] / sec:.2f}x"])
    print(_common.format_table(["conv output", "bias add", "fwd+bwd ms", "speed vs y + b"],
                               rows))


def section_conv():
    print("\n## Convolution lowering and dtype (fwd+bwd w.r.t. x and W)")
    n = ARGS.batch
    rows = []
    shapes = [  # (h, c_in, c_out, k, padding): LeNet C1, then the CIFAR StageNet's three convs
        (28, 1, 6, 5, 2), (32, 3, 64, 3, "SAME"), (16, 64, 128, 3, "SAME"),
        (8, 128, 256, 3, "SAME"),
    ]
    for (h, c, o, k, pad) in shapes:
        flops = 3 * 2 * n * h * h * o * k * k * c  # SAME-size outputs
        cases = {}
        for dname, dt in [("f32", jnp.float32), ("bf16", jnp.bfloat16)]:
            x = _rand((n, h, h, c), 0, dt)
            w = _rand((k, k, c, o), 1, dt) * 0.1
            for name, f in [("lax.conv", _under("xla", F.conv2d)),
                            ("im2col", levers.conv2d_im2col)]:
                def fn(x, w, f=f, pad=pad):
                    return f(x, w, padding=pad)
                cases[f"{name} {dname}"] = _with_grads(fn, x, (w,), 3)[1]
        t = _time_group(cases)
        base = t["lax.conv f32"]
        for name, s in t.items():
            rows.append([f"{n}x{h}x{h}x{c}->{o} k{k}", name, _ms(s),
                         f"{flops / s / 1e9:.1f}", f"{base / s:.2f}x"])
    print(_common.format_table(["shape", "impl dtype", "fwd+bwd ms", "GFLOP/s",
                                "speed vs lax.conv f32"], rows))


SECTIONS = {"lc": section_lc, "lcn": section_lcn, "pool": section_pool, "conv": section_conv,
            "around": section_around}


def main():
    t0 = time.perf_counter()
    peak, how = _common.fp32_peak()
    print(_common.machine_header({
        "fp32 peak (nominal)": how,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "jax backend": f"{jax.default_backend()} ({jax.devices()[0]})",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") or "(none)",
        "flags applied by jaxconv.runtime.xla_flags": " ".join(APPLIED) or "none",
        "dtype": ARGS.dtype,
        "timing": f"{ARGS.rounds} interleaved rounds x 2 chunks of ~{ARGS.chunk_seconds}s, "
                  "median ms per call",
    }))
    for name in ARGS.sections.split(","):
        if name not in SECTIONS:
            raise SystemExit(f"unknown section {name!r}; valid: {sorted(SECTIONS)}")
        s0 = time.perf_counter()
        SECTIONS[name]()
        print(f"({name}: {time.perf_counter() - s0:.0f} s)")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
