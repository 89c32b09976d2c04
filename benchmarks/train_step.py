"""Train-step images/s: jaxconv (jit, donated state) vs the same networks in PyTorch.

Run from the repository root (CPU, 2 cores: about 3 minutes quiet, up to 6 under load)::

    python benchmarks/train_step.py
    python benchmarks/train_step.py --models=stagenet_cifar --jax=default,ynn_off,ynn_off+im2col
    python benchmarks/train_step.py --torch=eager,channels_last,compile   # + torch.compile
    python benchmarks/train_step.py --device=gpu --dtype=bfloat16         # see gpu.sh
    git worktree add --detach ../base main                                # before/after:
    python benchmarks/train_step.py --jax=ynn_off+heap --baseline=../base

Each variant runs in its own worker process, started once (XLA flags must be set before jax
is imported, so every jax variant is a process with its own `XLA_FLAGS`); the workers build
and compile (warm-up excluded), then the parent asks them in turn, round after round, in a
rotating order, to time a few steps. So every variant sees the same machine load and the
reported figure is the median over all rounds.

jax variants are `+`-joined tokens: `default` (XLA as installed), `ynn_off` (the YNNPACK fusion
flags of jaxconv.runtime.xla_flags forced on), `apply` (the process calls
`jaxconv.runtime.xla_flags.apply_cpu_performance_flags()` before importing jax), `xla`
(`jaxconv.functional.set_lowering("xla")`: XLA's native windowed ops instead of the CPU-tuned
forms jaxconv uses on CPU by default), `im2col` (`levers.conv2d_im2col`: every conv as patches
+ one matmul), `unbanded` (`levers.conv2d_unbanded`: the CPU lowering without the banded
convs), `untiled` (`levers.conv2d_untiled`: whole bands, no tiles), `sumbias`
(`levers.conv2d_sum_bias`: conv bias gradients as XLA's own sum, not the CPU lowering's
matrix-vector product), `onednn_ffi`
(every conv through the oneDNN prototype of `benchmarks/onednn/`, which must be built), `bf16` (the
models' `dtype`, as `config.compute_dtype=bfloat16`: convs, matmuls, pooling and
normalization in bfloat16, float32 parameters and logits),
`heap` (`jaxconv.runtime.malloc.reuse_freed_memory()` first, as `train.py` does), and XLA
flag levers (`_common.XLA_FLAG_TOKENS`): `vw512` (`--xla_cpu_prefer_vector_width=512`: LLVM
codegen at AVX-512's width), `onednn` (`--xla_cpu_use_onednn=true`).
torch variants: `eager` (NCHW), `channels_last`, `compile` (torch.compile, skipped if it fails),
each optionally `+heap` (the same malloc settings, in a second torch process).

The step is the trainer's: softmax cross-entropy, SGD momentum 0.9 + coupled weight decay 5e-4
(`optax.chain(add_decayed_weights, sgd)` / `torch.optim.SGD(weight_decay=...)`), dropout active.
Both sides start from the same weights (`_models.to_torch` copies them; the printed max
|logit difference| checks the two networks compute the same function).
GFLOP/s counts convs and dense layers analytically (`_models.forward_flops`) x 3 for
forward + backward; XLA's own count (`compiled.cost_analysis()`) is printed next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import _common
import _models
from _step_workers import batch_size, jax_worker, torch_worker, torch_worker_name

DEFAULT_MODELS = "lenet5,stagenet_cifar,alexnet"  # + stagenet_cifar_lcn (slower to compile)
DEFAULT_JAX = "default,ynn_off+xla,ynn_off"


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"from {sorted(_models.SPECS)}")
    p.add_argument("--jax", default=DEFAULT_JAX, help="jax variants (comma-separated)")
    p.add_argument("--torch", default="eager,channels_last", help="torch variants; '' = none")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--reps", type=int, default=2, help="timed chunks per round and variant")
    p.add_argument("--chunk_seconds", type=float, default=0.3,
                   help="steps per timed chunk are chosen to take about this long")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute dtype (params stay float32); torch uses autocast")
    p.add_argument("--batch", type=int, default=0, help="override every model's batch size")
    p.add_argument("--baseline", default="",
                   help="a checkout (e.g. a git worktree of main) whose jaxconv the jax variants "
                        "also run with, as 'base:<variant>': a before/after in one run")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--jaxconv_root", default="", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    return p.parse_args()


# ------------------------------------------------------------------------------------- parent


def _start_workers(args, models):
    base_env = dict(os.environ)
    user_flags = " ".join(f for f in base_env.get("XLA_FLAGS", "").split()
                          if not f.startswith("--xla_cpu_experimental_ynn_fusion_type"))
    base_env["XLA_FLAGS"] = user_flags
    base_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.device == "cpu":
        base_env["JAX_PLATFORMS"] = "cpu"
    me = [sys.executable, os.path.abspath(__file__), f"--models={','.join(models)}",
          f"--device={args.device}", f"--dtype={args.dtype}", f"--batch={args.batch}",
          f"--chunk_seconds={args.chunk_seconds}"]
    scripts = {"jax": me}
    if args.baseline:
        scripts["base"] = me + [f"--jaxconv_root={os.path.abspath(args.baseline)}"]
    workers = {}
    for variant in [v for v in args.jax.split(",") if v]:
        env = dict(base_env)
        tokens = variant.split("+")
        extra = [flag for token, flag in _common.XLA_FLAG_TOKENS.items() if token in tokens]
        env["XLA_FLAGS"] = " ".join([user_flags] + extra).strip()
        for prefix, argv in scripts.items():
            workers[f"{prefix}:{variant}"] = _common.Worker(
                f"{prefix}:{variant}", argv + ["--worker=jax", f"--variant={variant}"], env)
    torch_kinds = [v for v in args.torch.split(",") if v]
    if torch_kinds:
        try:
            import importlib.util

            has_torch = importlib.util.find_spec("torch") is not None
        except ValueError:
            has_torch = False
        if has_torch:
            for name in sorted({torch_worker_name(k) for k in torch_kinds}):
                kinds = ",".join(k for k in torch_kinds if torch_worker_name(k) == name)
                workers[name] = _common.Worker(
                    name, me + ["--worker=torch", f"--variant={kinds}"], base_env)
        else:
            print("torch is not installed: torch variants skipped")
    return workers, torch_kinds


def _setup_all(workers, models, torch_kinds):
    """Sets every model up in every worker (in parallel: setup is not timed)."""
    info, setups, timed = {}, {}, []
    for w in workers.values():
        w.receive()  # ready
    for name, w in workers.items():
        info[name] = w.request({"cmd": "info"})
    for model in models:
        for w in workers.values():
            w.proc.stdin.write(json.dumps({"cmd": "setup", "model": model}) + "\n")
            w.proc.stdin.flush()
        for name, w in workers.items():
            reply = w.receive()
            if name.startswith("torch"):
                setups[(model, "torch")] = reply
                for kind, r in reply.get("kinds", {}).items():
                    setups[(model, f"torch:{kind}")] = r
                    if "error" not in r:
                        timed.append((model, f"torch:{kind}"))
                    else:
                        print(f"{model} torch:{kind} skipped: {r['error']}")
            else:
                setups[(model, name)] = reply
                if "error" in reply:
                    print(f"{model} {name} failed: {reply['error']}")
                else:
                    timed.append((model, name))
    return info, setups, timed


def _measure(args, workers, models, timed):
    times = {key: [] for key in timed}
    cpu_times = {key: [] for key in timed}
    for r in range(args.rounds):
        for model in models:
            keys = [k for k in timed if k[0] == model]
            keys = keys[r % len(keys):] + keys[:r % len(keys)] if keys else keys
            for key in keys:
                variant = key[1]
                w = workers[torch_worker_name(variant.removeprefix("torch:"))
                            if variant.startswith("torch:") else variant]
                reply = w.request({"cmd": "time", "model": model, "reps": args.reps,
                                   "variant": variant.removeprefix("torch:")})
                if "error" in reply:
                    print(f"{key} timing failed: {reply['error']}")
                    continue
                times[key].extend(reply["step_s"])
                cpu_times[key].extend(reply.get("cpu_s", []))
        print(f"round {r + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})",
              file=sys.stderr)
    return times, cpu_times


def _report(args, models, setups, times, cpu_times, peak):
    rows, summary = [], []
    for model in models:
        batch = batch_size(args, model)
        jax_setup = next((v for (m, n), v in setups.items()
                          if m == model and n.startswith("jax:") and "fwd_flops" in v), None)
        flops = 3 * jax_setup["fwd_flops"] * batch if jax_setup else None
        medians = {n: _common.median(t) for (m, n), t in times.items() if m == model and t}
        mins = {n: min(t) for (m, n), t in times.items() if m == model and t}
        cpus = {n: _common.median(t) for (m, n), t in cpu_times.items() if m == model and t}
        torch_eager = medians.get("torch:eager")
        for name, sec in medians.items():
            s = setups[(model, name)]
            gflops = flops / sec / 1e9 if flops else None
            rows.append([
                model, batch, name, f"{sec * 1e3:.1f}", f"{mins[name] * 1e3:.1f}",
                f"{cpus[name] * 1e3:.1f}" if name in cpus else "-", f"{batch / sec:.0f}",
                f"{gflops:.1f}" if gflops else "-",
                f"{100 * gflops / peak:.0f}%" if gflops and peak else "-",
                f"{torch_eager / sec:.2f}x" if torch_eager else "-",
                f"{s.get('xla_flops', 0) / 1e9:.2f}" if "xla_flops" in s else "-",
                f"{s.get('compile_s', 0):.1f}",
            ])
        best_jax = min((v, n) for n, v in medians.items() if n.startswith("jax:")) \
            if any(n.startswith("jax:") for n in medians) else None
        best_torch = min((v, n) for n, v in medians.items() if n.startswith("torch:")) \
            if any(n.startswith("torch:") for n in medians) else None
        if best_jax and best_torch:
            summary.append(f"{model}: best jax {best_jax[1]} {best_jax[0] * 1e3:.1f} ms vs best "
                           f"torch {best_torch[1]} {best_torch[0] * 1e3:.1f} ms -> "
                           f"{best_torch[0] / best_jax[0]:.2f}x; vs torch eager "
                           f"{(torch_eager or float('nan')) / best_jax[0]:.2f}x")
        for name in (n for n in medians if n.startswith("base:")):
            after = "jax:" + name.removeprefix("base:")
            if after in medians:
                summary.append(f"{model}: {after} before (baseline) -> after: median "
                               f"{medians[name] * 1e3:.1f} -> {medians[after] * 1e3:.1f} ms, "
                               f"min {mins[name] * 1e3:.1f} -> {mins[after] * 1e3:.1f} ms, "
                               f"CPU {cpus.get(name, 0) * 1e3:.1f} -> "
                               f"{cpus.get(after, 0) * 1e3:.1f} ms")
        if (model, "torch") in setups:
            diff = setups[(model, "torch")].get("max_logit_diff")
            summary.append(f"{model}: max |logit jax - torch| = {diff:.2e} (same weights)")
        if jax_setup:
            summary.append(f"{model}: analytic step FLOPs {flops / 1e9:.2f} G (3 x fwd "
                           f"{jax_setup['fwd_flops'] / 1e6:.1f} MFLOP/image x {batch})")
    header = ["model", "batch", "variant", "ms/step", "min ms", "CPU ms", "img/s", "GFLOP/s",
              "% peak",
              "vs torch eager", "XLA GFLOP", "compile s"]
    print(_common.format_table(header, rows))
    print()
    print("\n".join(summary))


def main():
    args = _parse()
    if args.worker == "jax":
        return jax_worker(args)
    if args.worker == "torch":
        return torch_worker(args)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in _models.SPECS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; valid: {sorted(_models.SPECS)}")
    peak, how = _common.fp32_peak()
    t0 = time.perf_counter()
    workers, torch_kinds = _start_workers(args, models)
    try:
        info, setups, timed = _setup_all(workers, models, torch_kinds)
        print(_common.machine_header({
            "fp32 peak (nominal)": how,
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
            "workers": "; ".join(f"{k}: {v}" for k, v in info.items()),
            "timing": f"{args.rounds} interleaved rounds x {args.reps} chunks, median "
                      f"(chunks of ~{args.chunk_seconds}s), compile + 2 warm-up steps excluded",
        }))
        times, cpu_times = _measure(args, workers, models, timed)
    finally:
        for w in workers.values():
            w.close()
    print()
    _report(args, models, setups, times, cpu_times, peak if args.device == "cpu" else None)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
