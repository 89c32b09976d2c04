"""Where a train step's time goes: XLA's per-op times next to PyTorch's, by category.

Run from the repository root (2 cores: about 2 minutes per model)::

    python benchmarks/profile_step.py                                  # CIFAR StageNet, AlexNet
    python benchmarks/profile_step.py --models=stagenet_cifar_lcn --steps=5 --top=20
    python benchmarks/profile_step.py --torch=''                       # jax only

jax: the train step of `train_step.py` (variant `ynn_off+heap`, as `train.py` runs it) traced
with `jax.profiler` for `--steps` steps; every XLA:CPU thunk's time (the trace's events named
after the optimized HLO's instructions) is summed per instruction and sorted into categories
read off the HLO: convolution forward / input gradient / weight gradient (a convolution whose
output is not batch-major), dots, transposes and copies (the layout changes XLA inserts around
weight-gradient convolutions), reductions (bias gradients, the loss, max-pool's forward max,
LCN's sums), the elementwise fusions of the backward pass (ReLU and max-pool gradients: selects
and compares) and of the forward pass, and the optimizer update. torch: the same network with
the same weights (`_models.to_torch`), channels_last, `torch.profiler` self CPU time per aten
op, sorted the same way. Both tables are ms per step; the thunk times of XLA can overlap (its
executor runs independent thunks concurrently), so the XLA column is summed thunk time next to
the measured wall time of the traced steps.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import _common
import _models

CATEGORIES = ("conv forward", "conv input grad", "conv weight grad", "dot (dense)",
              "transpose / copy", "reduce (bias grads, pool max, loss, LCN sums)",
              "backward elementwise (ReLU / pool grads)", "forward elementwise",
              "optimizer update", "other")
ASYNC = "convolutions (asynchronous: wall - the rest)"


def _instructions(hlo_text: str) -> dict[str, dict]:
    """Instruction name -> {opcode, shape, op_name, calls} of the optimized HLO's entry and
    fused computations' callers (the thunks are named after these)."""
    out = {}
    pattern = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?)(?:\{[^}]*\})? ([\w\-]+)\((.*)$")
    for line in hlo_text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        name, shape, opcode, rest = m.groups()
        op_name = re.search(r'op_name="([^"]*)"', rest)
        calls = re.search(r"calls=%?([\w.\-]+)", rest)
        out[name] = dict(opcode=opcode, shape=shape, op_name=op_name.group(1) if op_name else "",
                         calls=calls.group(1) if calls else None)
    return out


def _computation_opcodes(hlo_text: str) -> dict[str, set[str]]:
    """Fused computation name -> the opcodes in its body."""
    out, current = {}, None
    for line in hlo_text.splitlines():
        head = re.match(r"^%?([\w.\-]+) .*\{$", line)
        if head and not line.startswith(" "):
            current = head.group(1)
            out[current] = set()
        elif current and line.strip() == "}":
            current = None
        elif current:
            m = re.match(r"^\s*(?:ROOT )?%?[\w.\-]+ = \S+ ([\w\-]+)\(", line)
            if m:
                out[current].add(m.group(1))
    return out


def categorize(name: str, info: dict, body: set[str], batch: int) -> str:
    """The category of one optimized-HLO instruction (see the module docstring).

    `op_name` tells the pass: under `jvp(` the forward, under `transpose(` the backward, and
    outside both the optimizer (optax runs after `value_and_grad`).
    """
    op, op_name = info["opcode"], info["op_name"]
    backward = "transpose(" in op_name
    dims = re.findall(r"\[([\d,]*)\]", info["shape"])
    first = int(dims[0].split(",")[0]) if dims and dims[0] else 0
    if op == "convolution" or (op == "fusion" and "convolution" in body):
        if first != batch:
            return "conv weight grad"
        return "conv input grad" if backward else "conv forward"
    if op in ("dot", "custom-call") or (op == "fusion" and "dot" in body):
        return "dot (dense)"
    if op in ("transpose", "copy") or "transpose" in name or "copy" in name:
        return "transpose / copy"
    if op_name and "jvp(" not in op_name:
        return "optimizer update"
    if op in ("reduce", "reduce-window") or "reduce" in body or "reduce-window" in body:
        return "reduce (bias grads, pool max, loss, LCN sums)"
    if op == "fusion" or op in ("select", "compare", "add", "multiply"):
        return "backward elementwise (ReLU / pool grads)" if backward \
            else "forward elementwise"
    return "other"


def profile_jax(name: str, steps: int) -> tuple[dict, list, float]:
    import jax
    from _step_workers import make_jax_step

    batch = _models.SPECS[name].batch
    compiled, state, (x, y), _, _ = make_jax_step(name, batch)

    def run(n):
        loss = None
        for _ in range(n):
            *new, loss = compiled(*state, x, y)
            state[:] = new
        jax.block_until_ready((state, loss))

    run(3)
    hlo = compiled.as_text()
    instructions, bodies = _instructions(hlo), _computation_opcodes(hlo)
    with tempfile.TemporaryDirectory() as logdir:
        with jax.profiler.trace(logdir, create_perfetto_trace=True):
            t0 = time.perf_counter()
            run(steps)
            wall = (time.perf_counter() - t0) / steps
        path = glob.glob(os.path.join(logdir, "**", "*perfetto_trace.json.gz"), recursive=True)[0]
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    per_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in instructions:
            per_op[e["name"]] += e.get("dur", 0.0) / 1e3 / steps
    cats = collections.Counter()
    top = []
    for op, ms in per_op.most_common():
        info = instructions[op]
        cat = categorize(op, info, bodies.get(info["calls"], set()), batch)
        cats[cat] += ms
        top.append((op, info["opcode"], info["shape"][:40], info["op_name"][-60:], cat, ms))
    # XLA:CPU runs convolutions as asynchronous thunks: their trace events mark the launch,
    # not the work, so the convolutions' time is what the synchronous thunks leave of the wall.
    sync = sum(ms for c, ms in cats.items() if not c.startswith("conv "))
    cats[ASYNC] = max(0.0, wall * 1e3 - sync)
    for c in [c for c in cats if c.startswith("conv ")]:
        del cats[c]
    return cats, top, wall


TORCH_CATEGORIES = [  # (category, regex on the aten op name), first match wins
    ("conv forward", r"aten::(mkldnn_convolution|_convolution|convolution|conv2d)$"),
    ("conv backward (input + weight + bias grads)", r"convolution_backward"),
    ("dot (dense)", r"aten::(addmm|mm|linear|matmul|bmm)$"),
    ("max pool forward", r"max_pool2d(_with_indices)?$"),
    ("max pool backward", r"max_pool2d_with_indices_backward"),
    ("ReLU fwd / bwd", r"relu|threshold|clamp_min"),
    ("bias add, zeroing grads", r"aten::(add|fill_|zero_)$"),
    ("optimizer update", r"_foreach|sgd|add_$|mul_$|aten::lerp"),
    ("transpose / copy", r"copy_|contiguous|clone|permute|transpose|to$|_to_copy"),
    ("reduce", r"sum|mean|log_softmax|nll_loss|_softmax"),
]


def profile_torch(name: str, steps: int) -> tuple[dict, list, float]:
    import numpy as np
    import torch
    import torch.nn.functional as tf
    from _step_workers import LEARNING_RATE, MOMENTUM, WEIGHT_DECAY
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(_common.cpu_count())
    spec = _models.SPECS[name]
    model = _models.to_torch(_models.build_jax(name), spec.image)
    model = model.to(memory_format=torch.channels_last)
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((spec.batch,) + spec.image, np.float32))
    x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    y = torch.tensor(rng.integers(0, spec.classes, spec.batch))
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                          weight_decay=WEIGHT_DECAY)

    def run(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            tf.cross_entropy(model(x), y).backward()
            opt.step()

    run(3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run(steps)
        wall = (time.perf_counter() - t0) / steps
    cats, top = collections.Counter(), []
    for avg in sorted(prof.key_averages(), key=lambda a: -a.self_cpu_time_total):
        ms = avg.self_cpu_time_total / 1e3 / steps
        if ms <= 0:
            continue
        cat = next((c for c, pat in TORCH_CATEGORIES if re.search(pat, avg.key)), "other")
        cats[cat] += ms
        top.append((avg.key, "", "", "", cat, ms))
    return cats, top, wall


def _print(title, cats, top, wall, n_top):
    total = sum(cats.values())
    print(f"\n{title}: wall {wall * 1e3:.1f} ms/step, summed op time {total:.1f} ms/step "
          f"(load avg {os.getloadavg()[0]:.2f})")
    rows = [[c, f"{ms:.1f}", f"{100 * ms / total:.0f}%"] for c, ms in cats.most_common()]
    print(_common.format_table(["category", "ms/step", "share"], rows))
    rows = [[op[:40], opcode, shape, op_name, cat, f"{ms:.2f}"]
            for op, opcode, shape, op_name, cat, ms in top[:n_top]]
    print(_common.format_table(["op", "opcode", "shape", "op_name (tail)", "category", "ms"],
                               rows))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="stagenet_cifar,alexnet")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--torch", default="channels_last", help="'' for none")
    args = p.parse_args()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _common.YNN_OFF_FLAG)
    from jaxconv.runtime import malloc

    malloc.reuse_freed_memory()
    print(_common.machine_header({"command": " ".join(["python"] + sys.argv),
                                  "XLA_FLAGS": os.environ["XLA_FLAGS"].strip()}))
    for name in args.models.split(","):
        _print(f"{name} jax (XLA thunks)", *profile_jax(name, args.steps), args.top)
        if args.torch:
            _print(f"{name} torch channels_last (aten self time)",
                   *profile_torch(name, args.steps), args.top)


if __name__ == "__main__":
    main()
