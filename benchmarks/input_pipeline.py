"""Input pipeline throughput: host `train_iterator` images/s and on-device `distort` images/s.

Run (CPU, prepares digits into a temporary data_dir, mocks cifar10 with random data)::

    python benchmarks/input_pipeline.py
    python benchmarks/input_pipeline.py --batch_size=256 --steps=100

Prints one line per measurement; medians of `--repeats` timed runs of `--steps` batches each,
after one warm-up batch (and, for `distort`, after compilation). Never asserts.
"""

import statistics
import tempfile
import time

import jax
import numpy as np
import tensorflow_datasets as tfds
from absl import app, flags

from jaxconv import data

_BATCH = flags.DEFINE_integer("batch_size", 128, "Global batch size.")
_STEPS = flags.DEFINE_integer("steps", 50, "Batches per timed run.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed runs; the median is printed.")
_MOCK_EXAMPLES = flags.DEFINE_integer("mock_examples", 2000, "Examples of mock cifar10.")

# (cache, read_threads): the defaults (cached, 1 thread), then the per-example path that
# imagenet2012 uses, with its default 16 threads and synchronously.
VARIANTS = ((True, None), (False, None), (False, 0))

DISTORTIONS = {
    "digits 8x8x1 (rot 10, shift 1 px, scale 0.9-1.1)": (
        (8, 8, 1),
        data.Distortion(rotation_degrees=10, translate=1.0, scale=(0.9, 1.1)),
    ),
    "cifar 32x32x3 (pad-4 crop + flip)": (
        (32, 32, 3),
        data.Distortion(crop_padding=4, horizontal_flip=True),
    ),
    "cifar 32x32x3 (all seven on)": (
        (32, 32, 3),
        data.Distortion(
            rotation_degrees=10,
            translate=2.0,
            scale=(0.9, 1.1),
            horizontal_flip=True,
            crop_padding=4,
            brightness=0.1,
            contrast=0.2,
        ),
    ),
}


def _median_rate(run, images_per_run: int) -> float:
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return images_per_run / statistics.median(times)


def bench_iterator(label: str, make) -> None:
    start = time.perf_counter()
    it = make()
    next(it)  # Warm-up; includes reading the split into memory on the cached path.
    setup = time.perf_counter() - start

    def run():
        for _ in range(_STEPS.value):
            next(it)

    rate = _median_rate(run, _STEPS.value * _BATCH.value)
    print(f"train_iterator {label:<44} {rate:>10,.0f} images/s  (setup {setup:.2f} s)")


def bench_distort(label: str, shape, distortion) -> None:
    fn = jax.jit(data.distort, static_argnames="distortion")
    x = jax.device_put(np.random.default_rng(0).random((_BATCH.value, *shape), np.float32))
    key = jax.random.key(0)
    start = time.perf_counter()
    jax.block_until_ready(fn(key, x, distortion=distortion))
    compile_s = time.perf_counter() - start

    def run():
        out = x
        for step in range(_STEPS.value):
            out = fn(jax.random.fold_in(key, step), x, distortion=distortion)
        jax.block_until_ready(out)

    rate = _median_rate(run, _STEPS.value * _BATCH.value)
    ms = _BATCH.value / rate * 1e3
    print(
        f"distort {label:<51} {rate:>10,.0f} images/s  ({ms:.2f} ms/batch, "
        f"compile {compile_s:.1f} s)"
    )


def main(argv):
    del argv
    batch = _BATCH.value
    print(
        f"batch {batch}, {jax.device_count()} x {jax.devices()[0].platform}, "
        f"{_STEPS.value} batches x median of {_REPEATS.value}"
    )
    with tempfile.TemporaryDirectory() as data_dir:
        data.ensure_prepared("digits", data_dir)
        for cache, threads in VARIANTS:
            bench_iterator(
                f"digits (cache={cache}, read_threads={threads})",
                lambda cache=cache, threads=threads: data.train_iterator(
                    "digits",
                    data_dir,
                    global_batch_size=batch,
                    seed=0,
                    cache=cache,
                    read_threads=threads,
                ),
            )
    with tfds.testing.mock_data(num_examples=_MOCK_EXAMPLES.value):
        for cache, threads in VARIANTS:
            bench_iterator(
                f"mock cifar10 (cache={cache}, read_threads={threads})",
                lambda cache=cache, threads=threads: data.train_iterator(
                    "cifar10",
                    "unused",
                    global_batch_size=batch,
                    seed=0,
                    cache=cache,
                    read_threads=threads,
                ),
            )
    for label, (shape, distortion) in DISTORTIONS.items():
        bench_distort(label, shape, distortion)


if __name__ == "__main__":
    app.run(main)
