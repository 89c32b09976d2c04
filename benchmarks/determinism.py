"""Determinism of training: run to run, and 1 device vs 4 (jit and pmap), same seed.

    python benchmarks/determinism.py               # 20 steps, 2 runs per mode
    python benchmarks/determinism.py --dropout 0   # pmap then matches 1 device too

Trains the default config (digits StageNet, hidden layer with dropout 0.5, random distortions
on) from one seed in three modes, all in this process (4 fake CPU devices; XLA_FLAGS is set
before JAX starts, and train.py's CPU flags are applied): jit on 1 device, jit on 4, pmap on 4.
Each run is a fresh `jaxconv.training.setup` (freshly compiled steps, fresh data iterator).
It prints, per mode, the largest difference between repeated runs (params, per-step train
metrics, eval metrics: 0 means bit-identical), and against jit on 1 device the largest
absolute and relative parameter differences and metric differences (float32 sums split
over 4 shards round differently). ``tests/reliability/test_determinism.py`` asserts both.
pmap draws each device's dropout mask from its own key (`jaxconv.training.steps`), so with
dropout its runs are reproducible but not equal to 1 device; distortions are per example and
jit's dropout mask is global, so those do not depend on the device count.
"""

from __future__ import annotations

import argparse
import os
import sys

import _common  # noqa: F401 - puts the repository root on sys.path.

DEVICE_FLAG = "--xla_force_host_platform_device_count=4"
if DEVICE_FLAG not in os.environ.get("XLA_FLAGS", ""):  # No-op when imported by the tests.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {DEVICE_FLAG}".strip()

if __name__ == "__main__":
    from jaxconv.runtime import xla_flags

    xla_flags.apply_cpu_performance_flags()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import default as default_lib  # noqa: E402
from jaxconv import training  # noqa: E402

MODES = {"jit, 1 device": ("jit", 1), "jit, 4 devices": ("jit", 4),
         "pmap, 4 devices": ("pmap", 4)}


def make_config(data_dir: str, steps: int, dropout: float = 0.5):
    """The default config, shrunk: batch 32, a 16-unit hidden layer with `dropout`, random
    distortions on, `steps` steps."""
    c = default_lib.get_config()
    c.data_dir = data_dir
    c.batch_size, c.eval_batch_size = 32, 300
    c.num_train_steps = steps
    c.model_kwargs.hidden, c.model_kwargs.dropout = (16,), dropout
    return c


def train(config, parallelism: str, num_devices: int) -> dict[str, dict[str, np.ndarray]]:
    """One fresh run: ``{"params": {path: array}, "train": {name: per-step array},
    "eval": {name: value}}`` after ``config.num_train_steps`` steps.

    Args:
      config: from `make_config`.
      parallelism: "jit" or "pmap".
      num_devices: how many of this process's devices to use.
    """
    config.parallelism = parallelism
    job = training.setup(config, devices=jax.devices()[:num_devices])
    state = job.par.put_state(job.state)
    metrics = []
    for _ in range(job.total_steps):
        state, m = job.train_fn(state, job.par.put_batch(next(job.train_it)))
        metrics.append(m)
    metrics = job.par.to_host(metrics)
    params = jax.tree_util.tree_leaves_with_path(jax.device_get(job.par.host_state(state).params))
    return {
        "params": {jax.tree_util.keystr(p): np.asarray(x) for p, x in params},
        "train": {k: np.array([float(m[k]) for m in metrics]) for k in metrics[0]},
        "eval": {k: np.float64(v) for k, v in training.evaluate(job, state).items()},
    }


def max_diffs(a: dict, b: dict) -> dict[str, float]:
    """Largest absolute differences between two `train` results (and relative for params)."""
    out = {"params_abs": 0.0, "params_rel": 0.0}
    for key, x in a["params"].items():
        d = np.abs(x.astype(np.float64) - b["params"][key])
        out["params_abs"] = max(out["params_abs"], float(d.max()))
        out["params_rel"] = max(out["params_rel"], float(d.max() / max(np.abs(x).max(), 1e-30)))
    for group in ("train", "eval"):
        for key, x in a[group].items():
            out[f"{group}_{key}"] = float(np.max(np.abs(x - b[group][key])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--data_dir", default="~/tensorflow_datasets")
    args = parser.parse_args()
    config = make_config(os.path.expanduser(args.data_dir), args.steps, args.dropout)
    print(f"{jax.device_count()} devices, {args.steps} steps, {args.runs} runs per mode, "
          f"dropout {args.dropout}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS')}", flush=True)
    results = {name: [train(config, *mode) for _ in range(args.runs)]
               for name, mode in MODES.items()}
    reference = results["jit, 1 device"][0]
    fmt = "{:<16} {:>22} {:>12} {:>12} {:>11} {:>11}"
    print(fmt.format("mode", "run-to-run max diff", "param abs", "param rel", "train loss",
                     "eval loss"))
    for name, runs in results.items():
        rerun = max(max(max_diffs(runs[0], r).values()) for r in runs[1:]) if runs[1:] else 0
        d = max_diffs(reference, runs[0])
        print(fmt.format(name, f"{rerun:.3g}", f"{d['params_abs']:.3g}",
                         f"{d['params_rel']:.3g}", f"{d['train_loss']:.3g}",
                         f"{d['eval_loss']:.3g}"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
