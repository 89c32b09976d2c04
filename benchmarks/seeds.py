"""K seeds in one program (``config.num_seeds=K``) vs K separate 1-seed runs: LeNet-5 on mnist5k.

Run from the repository root (CPU, 2 cores: about 4 minutes)::

    python benchmarks/seeds.py
    python benchmarks/seeds.py --seeds=5 --rounds=7 --end_to_end_steps=0   # steps only

Both programs are the trainer's own (`jaxconv.training.setup` of configs/mnist5k_lenet5.py with
``num_seeds=1`` and ``num_seeds=K``): the jitted train step with donated state, fed by the
grain iterators through ``Job.put_train_batch``, as `train_and_evaluate`'s loop feeds it.
After a warm-up (compile, and a calibration of how many steps take about ``--chunk_seconds``),
the two programs are timed in alternation, round after round, starting with the other one each
round, so that both see the same machine load; the figure is the median over the rounds.

images/s per replica = batch size x steps / seconds: each replica of the K-seed program sees
that many images per second, so K separate runs, one after the other, take ``speedup`` times
longer than the K-seed program for the same training. ``--end_to_end_steps=N`` also times whole
runs (`train_and_evaluate`: build, compile, N steps, the final evaluation; no compilation cache):
one K-seed run against K 1-seed runs one after the other, as `jaxconv.experiments` runs seeds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import _common

from jaxconv import runtime

runtime.tune_cpu()  # The XLA:CPU flags and malloc settings train.py applies, before jax starts.

import jax  # noqa: E402

from configs import mnist5k_lenet5  # noqa: E402
from jaxconv import training  # noqa: E402


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="K, the seeds of the one program")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--chunk_seconds", type=float, default=2.0,
                   help="steps per timed chunk are chosen to take about this long")
    p.add_argument("--end_to_end_steps", type=int, default=625,
                   help="steps of the whole-run comparison (0: skip it); 625 = 10 epochs")
    p.add_argument("--data_dir", default="", help="TFDS data_dir (default: the config's)")
    return p.parse_args()


def _config(args, num_seeds: int, steps: int, seed: int = 0):
    c = mnist5k_lenet5.get_config()
    c.seed, c.num_seeds, c.num_train_steps = seed, num_seeds, steps
    c.progress_bar = c.write_plots = False
    c.eval_every_steps, c.checkpoint_every_steps, c.log_every_steps = 0, steps, steps
    if args.data_dir:
        c.data_dir = args.data_dir
    return c


class Program:
    """A job's jitted train step and iterator, state on the devices, compiled and warmed."""

    def __init__(self, args, num_seeds: int):
        self.num_seeds = num_seeds
        self.job = training.setup(_config(args, num_seeds, 10**6))
        self.state = self.job.par.put_state(self.job.state)
        self.steps = 1
        self.run(2)  # Compile, then one warm step.
        seconds = self.run(5) / 5
        self.steps = max(1, round(args.chunk_seconds / seconds))

    def run(self, n: int | None = None) -> float:
        """Seconds for `n` (default: the calibrated chunk) steps, the last one waited for."""
        n = n or self.steps
        t0 = time.perf_counter()
        for _ in range(n):
            batch = self.job.put_train_batch(next(self.job.train_it))
            self.state, metrics = self.job.train_fn(self.state, batch)
        jax.block_until_ready(metrics)
        return time.perf_counter() - t0

    def close(self):
        if hasattr(self.job.train_it, "close"):
            self.job.train_it.close()


def _steps(args) -> list[list]:
    programs = [Program(args, 1), Program(args, args.seeds)]
    rates = {p.num_seeds: [] for p in programs}
    for r in range(args.rounds):
        for p in programs[::-1] if r % 2 else programs:
            rates[p.num_seeds].append(p.steps * p.job.config.batch_size / p.run())
    for p in programs:
        p.close()
    one, many = (_common.median(rates[k]) for k in (1, args.seeds))
    # speedup: the time of K 1-seed runs one after the other over the K-seed program's.
    return [["1 seed per program", f"{one:,.0f}", f"{one:,.0f}", "1.00"],
            [f"{args.seeds} seeds in one program", f"{many:,.0f}",
             f"{many * args.seeds:,.0f}", f"{many * args.seeds / one:.2f}"]]


def _end_to_end(args) -> list[list]:
    def run(num_seeds: int, seed: int = 0) -> float:
        config = _config(args, num_seeds, args.end_to_end_steps, seed)
        with tempfile.TemporaryDirectory() as workdir:
            t0 = time.perf_counter()
            training.train_and_evaluate(config, workdir)
            return time.perf_counter() - t0

    # The 1-seed runs of seeds 0..K-1: the replicas of the K-seed run.
    separate = sum(run(1, seed) for seed in range(args.seeds))
    together = run(args.seeds)
    return [[f"{args.seeds} separate 1-seed runs, one after the other", f"{separate:.1f}", "1.00"],
            [f"one {args.seeds}-seed run", f"{together:.1f}", f"{separate / together:.2f}"]]


def main():
    args = _parse()
    _, peak = _common.fp32_peak()
    print(_common.machine_header({"fp32 peak": peak, "jax devices": str(jax.devices())}),
          flush=True)
    rows = _steps(args)
    print(f"\nLeNet-5 on mnist5k, batch 64, train step only (median of {args.rounds} "
          f"interleaved rounds):")
    print(_common.format_table(["program", "images/s per replica", "images/s, all replicas",
                                "speedup"], rows), flush=True)
    if args.end_to_end_steps:
        rows = _end_to_end(args)
        print(f"\nwhole runs of {args.end_to_end_steps} steps (build, compile, train, final "
              f"evaluation; once each, not interleaved):")
        print(_common.format_table(["runs", "wall seconds", "speedup"], rows))
    print(f"\nload avg at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
