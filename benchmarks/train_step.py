"""Train-step images/s: jaxconv (jit, donated state) vs the same networks in PyTorch.

Run from the repository root (CPU, 2 cores: about 3 minutes quiet, up to 6 under load)::

    python benchmarks/train_step.py
    python benchmarks/train_step.py --models=stagenet_cifar --jax=default,ynn_off,ynn_off+im2col
    python benchmarks/train_step.py --torch=eager,channels_last,compile   # + torch.compile
    python benchmarks/train_step.py --device=gpu --dtype=bfloat16         # see gpu.sh

Each variant runs in its own worker process, started once (XLA flags must be set before jax
is imported, so every jax variant is a process with its own `XLA_FLAGS`); the workers build
and compile (warm-up excluded), then the parent asks them in turn, round after round, in a
rotating order, to time a few steps. So every variant sees the same machine load and the
reported figure is the median over all rounds.

jax variants are `+`-joined tokens: `default` (XLA as installed), `ynn_off` (the YNNPACK fusion
flags of jaxconv.xla_flags forced on), `apply` (the process calls
`jaxconv.xla_flags.apply_cpu_performance_flags()` before importing jax), `xla`
(`jaxconv.functional.set_lowering("xla")`: XLA's native windowed ops instead of the CPU-tuned
forms jaxconv uses on CPU by default), `im2col` (`levers.conv2d_im2col`: every conv as patches
+ one matmul), `unbanded` (`levers.conv2d_unbanded`: the CPU lowering without the banded
convs), `untiled` (`levers.conv2d_untiled`: whole bands, no tiles), `bf16` (convs and dense
layers compute in bfloat16),
`heap` (`jaxconv.host_memory.reuse_freed_memory()` first, as `train.py` does).
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
import copy
import json
import os
import sys
import time

import _common
import _models

DEFAULT_MODELS = "lenet5,stagenet_cifar,alexnet"  # + stagenet_cifar_lcn (slower to compile)
DEFAULT_JAX = "default,ynn_off+xla,ynn_off"
LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


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
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    return p.parse_args()


def _batch(args, name):
    return args.batch or _models.SPECS[name].batch


# ----------------------------------------------------------------------------------- jax side


def _reuse_freed_memory():
    from jaxconv import host_memory

    if not host_memory.reuse_freed_memory():
        raise SystemExit("host_memory.reuse_freed_memory() did not apply")


def _jax_worker(args):
    tokens = set(args.variant.split("+"))
    if "apply" in tokens:
        from jaxconv import xla_flags

        xla_flags.apply_cpu_performance_flags()
    if "heap" in tokens:
        _reuse_freed_memory()
    import jax
    import jax.numpy as jnp
    import levers
    import optax
    from flax import nnx

    import jaxconv.functional as F
    from jaxconv import layers as L

    if "xla" in tokens:
        F.set_lowering("xla")
    if "im2col" in tokens:
        F.conv2d = levers.conv2d_im2col
    if "unbanded" in tokens:
        F.conv2d = levers.conv2d_unbanded
    if "untiled" in tokens:
        F.conv2d = levers.conv2d_untiled
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                     optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    runs = {}

    def setup(name):
        spec = _models.SPECS[name]
        model = _models.build_jax(name)
        fwd, _ = _models.forward_flops(model, spec.image)
        if "bf16" in tokens or args.dtype == "bfloat16":
            for _, layer in model.named_leaves():
                if isinstance(layer, (L.Conv, L.Dense)):
                    layer.dtype = jnp.bfloat16
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def train_step(params, opt_state, rest, x, y):
            # Merge at the jit level; nnx.value_and_grad carries the dropout RNG counts out
            # (a plain jax.grad over a merged module cannot mutate them).
            m = nnx.merge(graphdef, params, rest)

            def loss_fn(m):
                logits = m(x).astype(jnp.float32)
                return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

            loss, grads = nnx.value_and_grad(loss_fn)(m)
            updates, opt_state = tx.update(grads, opt_state, params)
            rest = nnx.split(m, nnx.Param, ...)[2]
            return optax.apply_updates(params, updates), opt_state, rest, loss

        batch = _batch(args, name)
        kx, ky = jax.random.split(jax.random.key(1))
        x = jax.random.normal(kx, (batch,) + spec.image, jnp.float32)
        y = jax.random.randint(ky, (batch,), 0, spec.classes)
        state = [params, tx.init(params), rest]
        t0 = time.perf_counter()
        compiled = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(*state, x, y).compile()
        compile_s = time.perf_counter() - t0
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        mem = compiled.memory_analysis()

        def run(steps):
            loss = None
            for _ in range(steps):
                *new_state, loss = compiled(*state, x, y)
                state[:] = new_state
            jax.block_until_ready((state, loss))
            return float(loss)

        first_loss = run(1)
        t_one = min(_common.time_calls(lambda: run(1), reps=2, warmup=1))
        runs[name] = (run, max(1, round(args.chunk_seconds / t_one)))
        return dict(fwd_flops=fwd, xla_flops=float(cost.get("flops", 0.0)),
                    temp_bytes=getattr(mem, "temp_size_in_bytes", None),
                    compile_s=compile_s, first_loss=first_loss, steps=runs[name][1])

    def time_model(msg):
        run, steps = runs[msg["model"]]
        secs = _common.time_calls(lambda: run(steps), reps=msg["reps"], warmup=0)
        return {"step_s": [s / steps for s in secs]}

    info = {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}
    _common.serve({"info": lambda _: info, "setup": lambda m: setup(m["model"]),
                   "time": time_model})


# --------------------------------------------------------------------------------- torch side


def _torch_worker(args):
    os.environ["JAX_PLATFORMS"] = "cpu"  # jax only builds the reference model here
    if _torch_worker_name(args.variant) == "torch+heap":
        _reuse_freed_memory()
    import numpy as np
    import torch
    import torch.nn.functional as tf

    cuda = args.device == "gpu"
    dev = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(_common.cpu_count())
    kinds = [v for v in args.variant.split(",") if v]
    runs = {}

    def make(name, kind, base, x, y):
        model = copy.deepcopy(base).to(dev)
        xin = x
        base_kind = kind.split("+")[0]
        if base_kind == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            xin = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)
        fwd = torch.compile(model) if base_kind == "compile" else model
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16,
                                  enabled=args.dtype == "bfloat16")

        def run(steps):
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = tf.cross_entropy(fwd(xin).float(), y)
                loss.backward()
                opt.step()
            if cuda:
                torch.cuda.synchronize()
            return float(loss.detach())

        t0 = time.perf_counter()
        first_loss = run(1)  # compiles under torch.compile
        compile_s = time.perf_counter() - t0
        t_one = min(_common.time_calls(lambda: run(1), reps=2, warmup=1))
        runs[(name, kind)] = (run, max(1, round(args.chunk_seconds / t_one)))
        return dict(first_loss=first_loss, compile_s=compile_s, steps=runs[(name, kind)][1])

    def setup(msg):
        name = msg["model"]
        spec = _models.SPECS[name]
        model = _models.build_jax(name)
        base = _models.to_torch(model, spec.image)
        diff = _models.check_same_function(model, base, spec.image)
        rng = np.random.default_rng(1)
        batch = _batch(args, name)
        x = torch.tensor(rng.standard_normal((batch,) + spec.image, np.float32))
        x = x.permute(0, 3, 1, 2).contiguous().to(dev)
        y = torch.tensor(rng.integers(0, spec.classes, batch)).to(dev)
        out = {"max_logit_diff": diff, "kinds": {}}
        for kind in kinds:
            try:
                out["kinds"][kind] = make(name, kind, base, x, y)
            except Exception as e:  # torch.compile without a working toolchain, ...
                out["kinds"][kind] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
        return out

    def time_model(msg):
        key = (msg["model"], msg["variant"])
        if key not in runs:
            return {"error": "not set up"}
        run, steps = runs[key]
        secs = _common.time_calls(lambda: run(steps), reps=msg["reps"], warmup=0)
        return {"step_s": [s / steps for s in secs]}

    info = {"torch_threads": torch.get_num_threads(), "device": str(dev)}
    _common.serve({"info": lambda _: info, "setup": setup, "time": time_model})


# ------------------------------------------------------------------------------------- parent


def _torch_worker_name(kinds: str) -> str:
    """Torch kinds with the `heap` token (all or none of a worker's) share a tuned process."""
    return "torch+heap" if "heap" in kinds.replace(",", "+").split("+") else "torch"


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
    workers = {}
    for variant in [v for v in args.jax.split(",") if v]:
        env = dict(base_env)
        if "ynn_off" in variant.split("+"):
            env["XLA_FLAGS"] = (user_flags + " " + _common.YNN_OFF_FLAG).strip()
        workers[f"jax:{variant}"] = _common.Worker(
            f"jax:{variant}", me + ["--worker=jax", f"--variant={variant}"], env)
    torch_kinds = [v for v in args.torch.split(",") if v]
    if torch_kinds:
        try:
            import importlib.util

            has_torch = importlib.util.find_spec("torch") is not None
        except ValueError:
            has_torch = False
        if has_torch:
            for name in sorted({_torch_worker_name(k) for k in torch_kinds}):
                kinds = ",".join(k for k in torch_kinds if _torch_worker_name(k) == name)
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
    for r in range(args.rounds):
        for model in models:
            keys = [k for k in timed if k[0] == model]
            keys = keys[r % len(keys):] + keys[:r % len(keys)] if keys else keys
            for key in keys:
                variant = key[1]
                w = workers[_torch_worker_name(variant.removeprefix("torch:"))
                            if variant.startswith("torch:") else variant]
                reply = w.request({"cmd": "time", "model": model, "reps": args.reps,
                                   "variant": variant.removeprefix("torch:")})
                if "error" in reply:
                    print(f"{key} timing failed: {reply['error']}")
                    continue
                times[key].extend(reply["step_s"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    return times


def _report(args, models, setups, times, peak):
    rows, summary = [], []
    for model in models:
        batch = _batch(args, model)
        jax_setup = next((v for (m, n), v in setups.items()
                          if m == model and n.startswith("jax:") and "fwd_flops" in v), None)
        flops = 3 * jax_setup["fwd_flops"] * batch if jax_setup else None
        medians = {n: _common.median(t) for (m, n), t in times.items() if m == model and t}
        mins = {n: min(t) for (m, n), t in times.items() if m == model and t}
        torch_eager = medians.get("torch:eager")
        for name, sec in medians.items():
            s = setups[(model, name)]
            gflops = flops / sec / 1e9 if flops else None
            rows.append([
                model, batch, name, f"{sec * 1e3:.1f}", f"{mins[name] * 1e3:.1f}",
                f"{batch / sec:.0f}",
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
        if (model, "torch") in setups:
            diff = setups[(model, "torch")].get("max_logit_diff")
            summary.append(f"{model}: max |logit jax - torch| = {diff:.2e} (same weights)")
        if jax_setup:
            summary.append(f"{model}: analytic step FLOPs {flops / 1e9:.2f} G (3 x fwd "
                           f"{jax_setup['fwd_flops'] / 1e6:.1f} MFLOP/image x {batch})")
    header = ["model", "batch", "variant", "ms/step", "min ms", "img/s", "GFLOP/s", "% peak",
              "vs torch eager", "XLA GFLOP", "compile s"]
    print(_common.format_table(header, rows))
    print()
    print("\n".join(summary))


def main():
    args = _parse()
    if args.worker == "jax":
        return _jax_worker(args)
    if args.worker == "torch":
        return _torch_worker(args)
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
        times = _measure(args, workers, models, timed)
    finally:
        for w in workers.values():
            w.close()
    print()
    _report(args, models, setups, times, peak if args.device == "cpu" else None)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
