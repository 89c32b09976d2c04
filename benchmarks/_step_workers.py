"""The worker processes of `train_step.py`: one jax variant, or torch's kinds, per process.

Each worker builds its models on request, compiles (or warms up) their train steps and times
chunks of steps when the parent asks (`_common.serve`); `train_step.py` documents the variant
tokens and the measurement.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import _common
import _models

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4


def batch_size(args, name):
    return args.batch or _models.SPECS[name].batch


def torch_worker_name(kinds: str) -> str:
    """Torch kinds with the `heap` token (all or none of a worker's) share a tuned process."""
    return "torch+heap" if "heap" in kinds.replace(",", "+").split("+") else "torch"


def reuse_freed_memory():
    from jaxconv.runtime import malloc

    if not malloc.reuse_freed_memory():
        raise SystemExit("malloc.reuse_freed_memory() did not apply")


def make_jax_step(name, batch, *, bf16=False, conv_fn=None):
    """The compiled jax train step of model `name` and what it runs on.

    Returns `(compiled, state, (x, y), fwd_flops, compile_s)`: `compiled(*state, x, y)` returns
    the new state (a 3-list: params, optimizer state, the rest) and the loss, with `state`
    donated. `conv_fn` goes into every `Conv` layer (a lever of `levers.py`).
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from jaxconv import layers as L

    spec = _models.SPECS[name]
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                     optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    model = _models.build_jax(name, dtype=jnp.bfloat16 if bf16 else None)
    fwd, _ = _models.forward_flops(model, spec.image)
    for _, layer in model.named_leaves():
        if conv_fn is not None and isinstance(layer, L.Conv):
            layer.conv_fn = conv_fn
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

    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (batch,) + spec.image, jnp.float32)
    y = jax.random.randint(ky, (batch,), 0, spec.classes)
    state = [params, tx.init(params), rest]
    t0 = time.perf_counter()
    compiled = jax.jit(train_step, donate_argnums=(0, 1, 2)).lower(*state, x, y).compile()
    return compiled, state, (x, y), fwd, time.perf_counter() - t0


# ----------------------------------------------------------------------------------- jax side


def jax_worker(args):
    if args.jaxconv_root:  # `--baseline`: this worker runs another checkout's jaxconv
        sys.path.insert(0, os.path.abspath(args.jaxconv_root))
    tokens = set(args.variant.split("+"))
    if "apply" in tokens:
        from jaxconv.runtime import xla_flags

        xla_flags.apply_cpu_performance_flags()
    if "heap" in tokens:
        reuse_freed_memory()
    import jax
    import levers

    import jaxconv.functional as F

    if "xla" in tokens:
        F.set_lowering("xla")
    # A conv variant goes into each Conv layer as its `conv_fn` (of several, the last here).
    conv_fns = {"im2col": levers.conv2d_im2col, "unbanded": levers.conv2d_unbanded,
                "untiled": levers.conv2d_untiled, "sumbias": levers.conv2d_sum_bias}
    if "onednn_ffi" in tokens:  # the oneDNN prototype (bash benchmarks/onednn/build.sh first)
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "onednn"))
        import onednn_conv

        conv_fns["onednn_ffi"] = onednn_conv.conv2d_like_jaxconv
    conv_fn = ([conv_fns[t] for t in conv_fns if t in tokens] or [None])[-1]
    runs = {}

    def setup(name):
        bf16 = "bf16" in tokens or args.dtype == "bfloat16"
        compiled, state, (x, y), fwd, compile_s = make_jax_step(
            name, batch_size(args, name), bf16=bf16, conv_fn=conv_fn)
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
        return _common.time_chunks(run, steps, msg["reps"])

    info = {"backend": jax.default_backend(), "device": str(jax.devices()[0]),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jaxconv": os.path.dirname(os.path.dirname(os.path.abspath(F.__file__)))}
    _common.serve({"info": lambda _: info, "setup": lambda m: setup(m["model"]),
                   "time": time_model})


# --------------------------------------------------------------------------------- torch side


def torch_worker(args):
    os.environ["JAX_PLATFORMS"] = "cpu"  # jax only builds the reference model here
    if torch_worker_name(args.variant) == "torch+heap":
        reuse_freed_memory()
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
        batch = batch_size(args, name)
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
        return _common.time_chunks(run, steps, msg["reps"])

    info = {"torch_threads": torch.get_num_threads(), "device": str(dev)}
    _common.serve({"info": lambda _: info, "setup": setup, "time": time_model})
