"""oneDNN through XLA's FFI vs XLA's own convolution vs PyTorch: correctness, then speed.

Run from the repository root after `bash benchmarks/onednn/build.sh`::

    python benchmarks/onednn/bench.py                      # check + bare conv + StageNet step
    python benchmarks/onednn/bench.py --cases=conv --dtypes=float32 --rounds=5
    python benchmarks/onednn/bench.py --cases=alexnet --dtypes=float32   # AlexNet's 5 convs

1. **check**: `onednn_conv.conv2d` against `lax.conv_general_dilated` (forward, input and
   weight gradients of a random cotangent) over strides/paddings/kernel sizes, float32 and
   bfloat16; bfloat16 is also compared with the float32 result, next to XLA's own bfloat16.
2. **conv**: the bare 3x3 conv of issue 21, 128x32x32x64 -> 128, SAME, forward + both
   gradients: XLA (the YNN-off flags that `train.py` applies), oneDNN via FFI, torch
   channels_last and torch NCHW, interleaved round by round in one process.
3. **step**: a CIFAR StageNet-shaped train step written here with plain jax (3x3 conv + bias
   -> ReLU -> 2x2 max pool, 64-128-256, dense 10, softmax cross-entropy, SGD momentum 0.9),
   batch 128, with XLA's convs or oneDNN's; the same network as
   `benchmarks/train_step.py --models=stagenet_cifar` up to its (reshape) max pool.
4. **alexnet** (not in the default cases): torchvision AlexNet's five convolutions at batch
   16, forward + both gradients, XLA vs oneDNN vs torch channels_last, one table each.

Prints the machine header, oneDNN's ISA, medians and minima in ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import _common  # noqa: E402

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "--xla_cpu_experimental_ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _common.YNN_OFF_FLAG)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import onednn_conv as oc  # noqa: E402

SAME3 = ((1, 1), (1, 1))


def check(dtypes) -> None:
    rng = np.random.default_rng(0)
    cases = [  # (n, h, w, c, k, o, stride, padding)
        (2, 8, 8, 3, 3, 5, (1, 1), SAME3),
        (4, 9, 7, 6, 5, 8, (2, 1), ((2, 1), (0, 2))),
        (3, 16, 16, 16, 3, 32, (2, 2), ((0, 0), (0, 0))),
        (2, 12, 12, 64, 1, 24, (1, 1), ((0, 0), (0, 0))),
        (8, 32, 32, 64, 3, 128, (1, 1), SAME3),
    ]
    print("check: max |oneDNN - XLA| / max |XLA| (forward, d input, d kernel)")
    for n, h, w, c, k, o, stride, pad in cases:
        x = rng.standard_normal((n, h, w, c), np.float32)
        kern = rng.standard_normal((k, k, c, o), np.float32) / np.sqrt(k * k * c)
        ref, dy32 = None, None
        for dtype in dtypes:
            xx, ww = jnp.asarray(x, dtype), jnp.asarray(kern, dtype)
            outs = {}
            for name, fn in (("onednn", oc.conv2d), ("xla", oc.lax_conv2d)):
                f = jax.jit(lambda a, b, fn=fn, s=stride, p=pad: fn(a, b, s, p))
                y, vjp = jax.vjp(f, xx, ww)
                if dy32 is None:  # one cotangent for every dtype and both implementations
                    dy32 = rng.standard_normal(y.shape, np.float32)
                outs[name] = (y, *vjp(jnp.asarray(dy32, dtype)))
            rel = [float(jnp.max(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)))
                         / jnp.max(jnp.abs(b.astype(jnp.float32))))
                   for a, b in zip(outs["onednn"][:3], outs["xla"][:3])]
            line = f"  {n}x{h}x{w}x{c} k{k} -> {o} s{stride} p{pad} {jnp.dtype(dtype).name}: " \
                   + ", ".join(f"{r:.1e}" for r in rel)
            if jnp.dtype(dtype) == jnp.float32:
                ref = outs["xla"][:3]
                assert max(rel) < 1e-5, rel
            elif ref is not None:
                errs = {name: max(float(jnp.max(jnp.abs(a.astype(jnp.float32) - r)) /
                                        jnp.max(jnp.abs(r))) for a, r in zip(outs[name][:3], ref))
                        for name in ("onednn", "xla")}
                line += (f" | vs float32: oneDNN {errs['onednn']:.1e}, "
                         f"XLA {errs['xla']:.1e}")
            print(line)


def _conv_fns(dtype):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((128, 32, 32, 64), np.float32), dtype)
    w = jnp.asarray(rng.standard_normal((3, 3, 64, 128), np.float32) * 0.05, dtype)
    dy = jnp.asarray(rng.standard_normal((128, 32, 32, 128), np.float32), dtype)
    fns = {}
    for name, conv in (("xla", oc.lax_conv2d), ("onednn", oc.conv2d)):
        def fwd_bwd(x, w, dy, conv=conv):
            y, vjp = jax.vjp(lambda a, b: conv(a, b, (1, 1), SAME3), x, w)
            return vjp(dy)
        f = jax.jit(fwd_bwd)
        fns[f"jax {name}"] = lambda f=f: jax.block_until_ready(f(x, w, dy))
    try:
        import torch
    except ImportError:
        return fns
    torch.manual_seed(0)
    tdt = torch.bfloat16 if jnp.dtype(dtype) == jnp.bfloat16 else torch.float32
    for name, fmt in (("torch channels_last", torch.channels_last),
                      ("torch NCHW", torch.contiguous_format)):
        tx = torch.randn(128, 64, 32, 32, dtype=tdt).to(memory_format=fmt).requires_grad_()
        tw = (torch.randn(128, 64, 3, 3, dtype=tdt) * 0.05).to(memory_format=fmt)
        tw.requires_grad_()
        tdy = torch.randn(128, 128, 32, 32, dtype=tdt).to(memory_format=fmt)

        def step(tx=tx, tw=tw, tdy=tdy):
            y = torch.nn.functional.conv2d(tx, tw, padding=1)
            tx.grad = tw.grad = None
            y.backward(tdy)
        fns[name] = step
    return fns


# torchvision AlexNet's convolutions at batch 16: (H=W, C_in, C_out, k, stride, pad).
ALEXNET_CONVS = [(224, 3, 64, 11, 4, 2), (27, 64, 192, 5, 1, 2), (13, 192, 384, 3, 1, 1),
                 (13, 384, 256, 3, 1, 1), (13, 256, 256, 3, 1, 1)]


def _layer_fns(dtype, hw, cin, cout, k, stride, pad, batch=16):
    """Forward + both gradients of one conv: XLA, oneDNN via FFI, torch channels_last."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((batch, hw, hw, cin), np.float32), dtype)
    w = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32) * 0.05, dtype)
    s, p = (stride, stride), ((pad, pad), (pad, pad))
    out = jax.eval_shape(lambda: oc.lax_conv2d(x, w, s, p)).shape
    dy = jnp.asarray(rng.standard_normal(out, np.float32), dtype)
    fns = {}
    for name, conv in (("jax xla", oc.lax_conv2d), ("jax onednn", oc.conv2d)):
        f = jax.jit(lambda x, w, dy, conv=conv: jax.vjp(lambda a, b: conv(a, b, s, p), x, w)[1](dy))
        fns[name] = lambda f=f: jax.block_until_ready(f(x, w, dy))
    try:
        import torch
    except ImportError:
        return fns
    tdt = torch.bfloat16 if jnp.dtype(dtype) == jnp.bfloat16 else torch.float32
    cl = torch.channels_last
    tx = torch.randn(batch, cin, hw, hw, dtype=tdt).to(memory_format=cl).requires_grad_()
    tw = (torch.randn(cout, cin, k, k, dtype=tdt) * 0.05).to(memory_format=cl).requires_grad_()
    tdy = torch.randn(batch, cout, out[1], out[2], dtype=tdt).to(memory_format=cl)

    def step():
        tx.grad = tw.grad = None
        torch.nn.functional.conv2d(tx, tw, stride=stride, padding=pad).backward(tdy)
    fns["torch channels_last"] = step
    return fns


def _stagenet_fns(dtype, batch=128):
    rng = np.random.default_rng(2)
    feats = (3, 64, 128, 256)
    params = {}
    for i in range(3):
        params[f"w{i}"] = jnp.asarray(rng.standard_normal((3, 3, feats[i], feats[i + 1]),
                                                          np.float32) / np.sqrt(9 * feats[i]))
        params[f"b{i}"] = jnp.zeros((feats[i + 1],), jnp.float32)
    params["wd"] = jnp.asarray(rng.standard_normal((4 * 4 * 256, 10), np.float32) / 64)
    params["bd"] = jnp.zeros((10,), jnp.float32)
    x = jnp.asarray(rng.standard_normal((batch, 32, 32, 3), np.float32))
    labels = jnp.asarray(rng.integers(0, 10, batch))

    def make(conv):
        def loss(p, x, labels):
            h = x.astype(dtype)
            for i in range(3):
                h = conv(h, p[f"w{i}"].astype(dtype), (1, 1), SAME3) + p[f"b{i}"].astype(dtype)
                h = jax.nn.relu(h)
                n, hh, ww, c = h.shape
                h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).max(axis=(2, 4))
            logits = (h.reshape(batch, -1) @ p["wd"].astype(dtype)).astype(jnp.float32)
            logits = logits + p["bd"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

        def step(p, m, x, labels):
            g = jax.grad(loss)(p, x, labels)
            m = jax.tree.map(lambda m, g: 0.9 * m + g, m, g)
            return jax.tree.map(lambda p, m: p - 0.01 * m, p, m), m
        return jax.jit(step, donate_argnums=(0, 1))

    fns = {}
    for name, conv in (("jax xla", oc.lax_conv2d), ("jax onednn", oc.conv2d)):
        state = [jax.tree.map(jnp.copy, params), jax.tree.map(jnp.zeros_like, params)]
        f = make(conv)

        def run(f=f, state=state):
            state[0], state[1] = f(state[0], state[1], x, labels)
            jax.block_until_ready(state[0])
        fns[name] = run
    return fns


def measure(fns, rounds, reps):
    for fn in fns.values():  # compile + warm up
        fn()
        fn()
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].extend(_common.time_calls(fns[name], reps=reps, warmup=0))
    return times


def report(title, times):
    print(f"\n{title} (load avg {os.getloadavg()[0]:.2f})")
    rows = [[k, f"{1e3 * _common.median(v):.1f}", f"{1e3 * min(v):.1f}", len(v)]
            for k, v in times.items()]
    print(_common.format_table(["variant", "median ms", "min ms", "n"], rows))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="check,conv,step")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    cases = args.cases.split(",")
    dtypes = [jnp.dtype(d) for d in args.dtypes.split(",")]
    peak, how = _common.fp32_peak()
    print(_common.machine_header({"fp32 peak (nominal)": how, "oneDNN ISA": oc.isa(),
                                 "XLA_FLAGS": os.environ["XLA_FLAGS"].strip(),
                                 "command": " ".join(["python"] + sys.argv)}))
    t0 = time.perf_counter()
    if "check" in cases:
        check(dtypes)
    for dtype in dtypes:
        if "conv" in cases:
            report(f"bare conv 128x32x32x64 -> 128, 3x3 SAME, fwd + both grads, "
                   f"{dtype.name}, ms", measure(_conv_fns(dtype), args.rounds, args.reps))
        if "step" in cases:
            report(f"StageNet-shaped train step, batch 128, {dtype.name}, ms",
                   measure(_stagenet_fns(dtype), args.rounds, args.reps))
        if "alexnet" in cases:
            for layer in ALEXNET_CONVS:
                report(f"AlexNet conv {layer} (H=W, C_in, C_out, k, stride, pad), batch 16, fwd "
                       f"+ both grads, {dtype.name}, ms",
                       measure(_layer_fns(dtype, *layer), args.rounds, args.reps))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
