"""The worker processes of `_gpu_step.py` (the accelerator benchmark run by ``gpu.sh``).

One jax worker per variant (a process: XLA flags must be set before jax starts) and torch
workers for groups of torch kinds. Each builds its models on request, compiles (or warms up)
their train steps, measures the step's peak device memory, and times chunks of steps when
the parent asks (`_common.serve`). The step is the one of `train_step.py`: softmax
cross-entropy, SGD momentum 0.9 + coupled weight decay 5e-4, dropout active, parameters in
float32 (mixed precision keeps float32 master weights).

jax variant tokens (``+``-joined): ``f32`` or ``bf16`` (the models' ``dtype``: convs, matmuls,
pooling and normalization in bfloat16, float32 parameters and logits), ``det`` (the parent
sets ``--xla_gpu_deterministic_ops=true`` in this worker's ``XLA_FLAGS``).
torch kind tokens: ``eager`` (NCHW float32), ``channels_last``, ``amp`` (``torch.autocast``
bfloat16, float32 parameters), ``compile`` (``torch.compile``); e.g. ``amp+channels_last``.

Peak memory, in bytes, of one model's step with its input batch, parameters, optimizer state,
gradients and activations: jax, XLA's buffer plan of the compiled step (arguments + temporaries
+ outputs not aliased to donated arguments); torch, ``torch.cuda.max_memory_allocated()`` above
what was allocated before the model was copied to the device (CUDA only).
"""

from __future__ import annotations

import copy
import os
import time

import _common
import _models

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
JAX_DTYPES = {"f32": "float32", "bf16": "bfloat16"}
TORCH_TOKENS = ("eager", "channels_last", "amp", "compile")


def batch_size(args, name: str) -> int:
    """`args.batch`, or the model's own batch size (`_models.SPECS`) when it is 0."""
    return args.batch or _models.SPECS[name].batch


def jax_dtype_name(variant: str) -> str:
    """``"float32"`` or ``"bfloat16"`` from a jax variant's tokens.

    Raises:
      ValueError: no dtype token, two of them, or an unknown token.
    """
    tokens = variant.split("+")
    unknown = [t for t in tokens if t not in (*JAX_DTYPES, "det")]
    dtypes = [JAX_DTYPES[t] for t in tokens if t in JAX_DTYPES]
    if unknown or len(dtypes) != 1:
        raise ValueError(f"jax variant {variant!r}: give one of {list(JAX_DTYPES)}, "
                         f"optionally +det (unknown: {unknown})")
    return dtypes[0]


def torch_tokens(kind: str) -> set[str]:
    """The tokens of a torch kind, checked (``eager`` alone means none of the others).

    Raises:
      ValueError: an unknown token.
    """
    tokens = set(kind.split("+"))
    if not tokens <= set(TORCH_TOKENS):
        raise ValueError(f"torch kind {kind!r}: tokens must be from {TORCH_TOKENS}")
    return tokens - {"eager"}


def _jax_step(tx, graphdef):
    """The train step on ``(params, opt_state, rest, x, y)`` (as `train_step.py`'s)."""
    import jax.numpy as jnp
    import optax
    from flax import nnx

    def train_step(params, opt_state, rest, x, y):
        # Merge at the jit level; nnx.value_and_grad carries the dropout RNG counts out.
        m = nnx.merge(graphdef, params, rest)

        def loss_fn(m):
            logits = m(x).astype(jnp.float32)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(m)
        updates, opt_state = tx.update(grads, opt_state, params)
        rest = nnx.split(m, nnx.Param, ...)[2]
        return optax.apply_updates(params, updates), opt_state, rest, loss

    return train_step


def _xla_peak_bytes(compiled) -> int | None:
    mem = compiled.memory_analysis()
    if mem is None:
        return None
    return int(mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
               - mem.alias_size_in_bytes)


def jax_worker(args):
    """Serves ``setup`` / ``time`` / ``memory`` for one jax variant (`args.variant`)."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    dtype = jnp.dtype(jax_dtype_name(args.variant))
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),
                     optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    runs = {}

    def setup(msg):
        name = msg["model"]
        spec = _models.SPECS[name]
        model = _models.build_jax(name, dtype=dtype)
        fwd, _ = _models.forward_flops(model, spec.image)
        model.train()
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        batch = batch_size(args, name)
        kx, ky = jax.random.split(jax.random.key(1))
        x = jax.random.normal(kx, (batch,) + spec.image, jnp.float32)
        y = jax.random.randint(ky, (batch,), 0, spec.classes)
        state = [params, tx.init(params), rest]
        t0 = time.perf_counter()
        compiled = jax.jit(_jax_step(tx, graphdef), donate_argnums=(0, 1, 2)).lower(
            *state, x, y).compile()
        compile_s = time.perf_counter() - t0

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
        return dict(fwd_flops=fwd, compile_s=compile_s, first_loss=first_loss,
                    peak_bytes=_xla_peak_bytes(compiled), steps=runs[name][1])

    def time_model(msg):
        run, steps = runs[msg["model"]]
        secs = _common.time_calls(lambda: run(steps), reps=msg["reps"], warmup=0)
        return {"step_s": [s / steps for s in secs]}

    def memory(_):
        stats = jax.devices()[0].memory_stats() or {}
        return {"process_peak_bytes": stats.get("peak_bytes_in_use")}

    device = jax.devices()[0]
    info = {"backend": jax.default_backend(), "device": getattr(device, "device_kind", "?"),
            "dtype": dtype.name, "xla_flags": os.environ.get("XLA_FLAGS", "")}
    _common.serve({"info": lambda _: info, "setup": setup, "time": time_model,
                   "memory": memory})


def torch_worker(args):
    """Serves ``setup`` / ``time`` for the torch kinds in `args.variant` (comma-separated)."""
    os.environ["JAX_PLATFORMS"] = "cpu"  # jax only builds the reference model here.
    import numpy as np
    import torch
    import torch.nn.functional as tf

    cuda = args.device == "gpu"
    dev = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True  # Autotuned convs, as XLA autotunes its own.
    else:
        torch.set_num_threads(_common.cpu_count())
    kinds = [k for k in args.variant.split(",") if k]
    for kind in kinds:
        torch_tokens(kind)
    runs = {}

    def make(name, kind, base, x, y):
        tokens = torch_tokens(kind)
        if cuda:
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        model = copy.deepcopy(base).to(dev)
        if "channels_last" in tokens:
            model = model.to(memory_format=torch.channels_last)
            xin = x.contiguous(memory_format=torch.channels_last)
        else:
            xin = x.clone()  # Each kind's own input, so that its memory figure counts it.
        opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)
        fwd = torch.compile(model) if "compile" in tokens else model
        autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled="amp" in tokens)

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
        first_loss = run(1)  # Compiles under torch.compile.
        compile_s = time.perf_counter() - t0
        t_one = min(_common.time_calls(lambda: run(1), reps=2, warmup=1))
        runs[(name, kind)] = (run, max(1, round(args.chunk_seconds / t_one)))
        peak = torch.cuda.max_memory_allocated() - before + y.nbytes if cuda else None
        return dict(first_loss=first_loss, compile_s=compile_s, peak_bytes=peak,
                    steps=runs[(name, kind)][1])

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
                out["kinds"][kind] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        return out

    def time_model(msg):
        run, steps = runs[(msg["model"], msg["variant"])]
        secs = _common.time_calls(lambda: run(steps), reps=msg["reps"], warmup=0)
        return {"step_s": [s / steps for s in secs]}

    info = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if cuda else
            "cpu", "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "tf32_conv": bool(torch.backends.cudnn.allow_tf32),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32)}
    _common.serve({"info": lambda _: info, "setup": setup, "time": time_model})
