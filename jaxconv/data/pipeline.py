"""Host input pipeline: checkpointable, sharded grain iterators of uint8 batches.

- `train_iterator` shuffles the train split with a seed, reshuffling every epoch, repeats
  (forever by default), and yields ``{"image": uint8 (local_batch, H, W, C),
  "label": int32 (local_batch,)}``. Process ``shard_index`` of ``shard_count`` takes positions
  ``shard_index::shard_count`` of one global shuffled stream, so global batch ``k`` (the union
  over processes of their batch ``k``) holds the same examples whatever the number of
  processes: stream positions ``[k * global_batch_size, (k + 1) * global_batch_size)``.
  Batches are cut from the concatenated epochs (one may straddle an epoch boundary); with a
  finite ``num_epochs`` the incomplete last global batch is dropped, so every process yields
  the same number of batches. ``get_state()`` / ``set_state()`` resume it exactly;
  `iterator_save_args` / `iterator_restore_args` put it in an Orbax checkpoint.
- `eval_batches` covers a split exactly once, in order, in padded batches with a ``mask``.

Fixed-size datasets (digits, mnist, cifar10) are read into memory once and batched by
gathering (`jaxconv.data.readers`); imagenet2012 is read, decoded and cropped per example in
grain's reader threads (`jaxconv.data.transforms`). Both follow the same index stream.
Images stay uint8 on the host (4x less to transfer than float32); normalization and random
distortions run on device (`jaxconv.data.distortions`).

Examples:
  >>> it = train_iterator("digits", "/tmp/tfds", global_batch_size=128, seed=0)
  >>> batch = next(it)
  >>> batch["image"].shape, batch["image"].dtype, batch["label"].dtype
  ((128, 8, 8, 1), dtype('uint8'), dtype('int32'))
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import jax
import numpy as np

from jaxconv.data import index_stream, readers
from jaxconv.data.sources import (
    DATASETS,
    DatasetInfo,
    PathLike,
    ensure_prepared,
    get_spec,
    open_sources,
)
from jaxconv.data.sources import image_shape as _image_shape
from jaxconv.data.transforms import ResizeCrop

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "EvalBatches",
    "ResizeCrop",
    "ensure_prepared",
    "eval_batches",
    "iterator_restore_args",
    "iterator_save_args",
    "train_iterator",
]

# Examples read ahead by grain's threads on the per-example path; batches on the cached path.
_PREFETCH_EXAMPLES = 512
_PREFETCH_BATCHES = 4


def _resolve_shards(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if (shard_index is None) != (shard_count is None):
        raise ValueError("Give both shard_index and shard_count, or neither.")
    if shard_index is None:
        return jax.process_index(), jax.process_count()
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(
            f"Need 0 <= shard_index < shard_count, got shard_index={shard_index}, "
            f"shard_count={shard_count}."
        )
    return shard_index, shard_count


def _local_batch_size(batch_size: int, shard_count: int, what: str) -> int:
    if batch_size < 1 or batch_size % shard_count:
        raise ValueError(
            f"{what}={batch_size} must be a positive multiple of shard_count={shard_count}."
        )
    return batch_size // shard_count


def _resolve_crop(name: str, image_size: int | None, crop: ResizeCrop | None) -> ResizeCrop | None:
    spec = get_spec(name)
    if spec.default_image_size is None:
        if crop is not None or image_size is not None:
            raise ValueError(
                f"image_size/crop are only for variable-size datasets (imagenet2012), not {name!r}."
            )
        return None
    crop = crop or ResizeCrop(image_size=spec.default_image_size)
    if image_size is not None:
        crop = dataclasses.replace(crop, image_size=image_size)
    return crop


def _to_iter(ds: grain.MapDataset, read_threads: int, prefetch: int) -> grain.IterDataset:
    if read_threads < 0:
        raise ValueError(f"read_threads must be >= 0, got {read_threads}.")
    options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch)
    return ds.to_iter_dataset(options)


def _ignore_interrupts(worker_index: int, worker_count: int) -> None:
    """grain worker start-up: a Ctrl-C in a terminal reaches the whole process group; the
    trainer handles it (saves, then closes the workers), so the workers ignore SIGINT
    instead of each printing a KeyboardInterrupt traceback."""
    del worker_index, worker_count
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_iterator(
    name: str,
    data_dir: PathLike | None,
    *,
    global_batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_epochs: int | None = None,
    image_size: int | None = None,
    worker_count: int = 0,
    crop: ResizeCrop | None = None,
    read_threads: int | None = None,
    cache: bool | None = None,
    classes: Sequence[int] | None = None,
) -> grain.DatasetIterator:
    """A checkpointable iterator over shuffled training batches of this process's shard.

    Args:
      name: key in `DATASETS`.
      data_dir: TFDS data directory (local or ``gs://``); None for the TFDS default.
      global_batch_size: examples per step over all processes; a multiple of `shard_count`.
      seed: shuffle seed (epoch ``e`` uses a permutation derived from it and ``e``) and, for
        imagenet2012, the seed of the host-side random crops.
      shard_index: this process's shard; defaults to ``jax.process_index()``.
      shard_count: number of shards; defaults to ``jax.process_count()``.
      num_epochs: passes over the data; None repeats forever.
      image_size: output side for imagenet2012 (default 224); must be None for the others.
      worker_count: grain worker processes (``mp_prefetch``); 0 reads in this process. Workers
        need a ``__main__`` guard and change which examples share a batch (each worker batches
        its own slice), but stay deterministic for a given count.
      crop: imagenet2012 resize/crop settings (`ResizeCrop`); `image_size` overrides its size.
      read_threads: grain reader threads (0: read synchronously); None: 1 on the cached path,
        16 per example.
      cache: read the split into memory once and batch by gathering; None means yes for
        fixed-size datasets (digits, mnist, cifar10). Same batches either way.
      classes: train on these labels only, renumbered ``0..len(classes)-1``; None: all.

    Returns:
      A grain iterator of ``{"image": uint8 (local_batch, H, W, C), "label": int32
      (local_batch,)}`` with ``local_batch = global_batch_size // shard_count``, supporting
      ``get_state()`` / ``set_state(state)``.

    Raises:
      ValueError: unknown dataset, bad sharding, batch size not divisible by `shard_count`,
        non-positive `num_epochs`, `image_size` for a fixed-size dataset, `cache` with
        variable-size images.
      FileNotFoundError: the dataset is not prepared in `data_dir` (the message says how).
    """
    shard_index, shard_count = _resolve_shards(shard_index, shard_count)
    local_batch = _local_batch_size(global_batch_size, shard_count, "global_batch_size")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}.")
    if worker_count < 0:
        raise ValueError(f"worker_count must be >= 0, got {worker_count}.")
    crop = _resolve_crop(name, image_size, crop)
    cache = _resolve_cache(name, cache, crop)
    _, (source,) = open_sources(name, data_dir, [get_spec(name).train_split], classes)

    # The global stream of example indices: one permutation per epoch, derived from `seed`.
    stream = index_stream.ShuffledStream(len(source), seed)
    # Whole global batches only (equal batch counts per process); "forever" is sys.maxsize
    # positions, so positions stay within int64.
    num_positions = len(source) * num_epochs if num_epochs is not None else sys.maxsize
    num_batches = num_positions // global_batch_size
    if cache:
        gather = readers.GatherBatch(*readers.load_arrays(source))
        positions = index_stream.ShardPositions(local_batch, shard_index, shard_count)
        ds = grain.MapDataset.range(num_batches).map(positions).map(stream).map(gather)
        it_ds = _to_iter(ds, 1 if read_threads is None else read_threads, _PREFETCH_BATCHES)
    else:
        # random_map's rng depends on the global stream position: crops ignore sharding.
        read = readers.ReadExample(source, crop)
        ds = grain.MapDataset.range(num_batches * global_batch_size).map(stream.index)
        ds = ds.random_map(read, seed=seed)[shard_index::shard_count]
        it_ds = _to_iter(ds, 16 if read_threads is None else read_threads, _PREFETCH_EXAMPLES)
        it_ds = it_ds.batch(local_batch, drop_remainder=True)
    if worker_count > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count),
                                  worker_init_fn=_ignore_interrupts)
    return iter(it_ds)


def _resolve_cache(name: str, cache: bool | None, crop: ResizeCrop | None) -> bool:
    if cache and crop is not None:
        raise ValueError(f"cache=True needs fixed-size images; {name!r} images vary in size.")
    return crop is None if cache is None else cache


@dataclasses.dataclass(frozen=True)
class EvalBatches:
    """Re-iterable padded evaluation batches (each ``iter()`` starts from the beginning).

    Attributes:
      dataset: the grain dataset behind it.
      num_batches: batches per pass (the same on every process).
      num_examples: real examples in the whole split (over all processes).
      local_batch_size: examples per batch on this process, padding included.
    """

    dataset: grain.IterDataset
    num_batches: int
    num_examples: int
    local_batch_size: int

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.dataset)

    def __len__(self) -> int:
        return self.num_batches


def eval_batches(
    name: str,
    data_dir: PathLike | None,
    *,
    split: str | None = None,
    batch_size: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    image_size: int | None = None,
    crop: ResizeCrop | None = None,
    read_threads: int | None = None,
    cache: bool | None = None,
    classes: Sequence[int] | None = None,
) -> EvalBatches:
    """Padded batches covering every example of `split` exactly once, in order.

    Global batch ``k`` holds split positions ``[k * batch_size, (k + 1) * batch_size)``;
    positions past the end are padding (zero image, label 0, ``mask`` False). Process
    ``shard_index`` takes positions ``shard_index::shard_count`` of each global batch, so
    every process yields the same number of batches (as collectives need).

    Args:
      name: key in `DATASETS`.
      data_dir: TFDS data directory (local or ``gs://``); None for the TFDS default.
      split: TFDS split; None means the dataset's test split (``"validation"`` for
        imagenet2012, ``"test"`` otherwise).
      batch_size: global examples per batch over all processes; a multiple of `shard_count`.
      shard_index: this process's shard; defaults to ``jax.process_index()``.
      shard_count: number of shards; defaults to ``jax.process_count()``.
      image_size: output side for imagenet2012 (resize + central crop); None otherwise.
      crop: imagenet2012 resize/crop settings; `image_size` overrides its size.
      read_threads: grain reader threads (0: synchronous); None: 1 cached, 16 per example.
      cache: read the split into memory once (here, at this call); None means yes for
        fixed-size datasets.
      classes: evaluate on these labels only, renumbered as in `train_iterator`.

    Returns:
      `EvalBatches` of ``{"image": uint8 (local_batch, H, W, C), "label": int32
      (local_batch,), "mask": bool (local_batch,)}``, ``local_batch = batch_size //
      shard_count``.

    Raises:
      ValueError: unknown dataset or split, bad sharding, indivisible batch size.
      FileNotFoundError: the dataset is not prepared in `data_dir` (the message says how).
    """
    shard_index, shard_count = _resolve_shards(shard_index, shard_count)
    local_batch = _local_batch_size(batch_size, shard_count, "batch_size")
    crop = _resolve_crop(name, image_size, crop)
    cache = _resolve_cache(name, cache, crop)
    split = get_spec(name).test_split if split is None else split
    builder, (source,) = open_sources(name, data_dir, [split], classes)
    num_examples = len(source)
    num_batches = -(-num_examples // batch_size)
    positions = grain.MapDataset.range(num_batches * batch_size)[shard_index::shard_count]
    if cache:
        gather = readers.GatherPaddedBatch(*readers.load_arrays(source))
        ds = positions.batch(local_batch, batch_fn=np.asarray).map(gather)
        it_ds = _to_iter(ds, 1 if read_threads is None else read_threads, _PREFETCH_BATCHES)
    else:
        shape = _image_shape(name, builder, crop and crop.image_size)
        read = readers.ReadExample(source, crop, train=False, padded=True, image_shape=shape)
        it_ds = _to_iter(
            positions.map(read), 16 if read_threads is None else read_threads, _PREFETCH_EXAMPLES
        ).batch(local_batch)
    return EvalBatches(it_ds, num_batches, num_examples, local_batch)


def iterator_save_args(iterator: grain.DatasetIterator) -> Any:
    """Orbax save args for a grain iterator, to put in an ``ocp.args.Composite``.

    Each process writes its own ``process_<i>-of-<n>.json`` (grain's CheckpointHandler).

    Examples:
      >>> manager.save(step, args=ocp.args.Composite(
      ...     state=ocp.args.StandardSave(state), data=iterator_save_args(train_it)))
    """
    return grain.checkpoint.CheckpointSave(iterator)


def iterator_restore_args(iterator: grain.DatasetIterator) -> Any:
    """Orbax restore args that set `iterator` (built as for the save) to the saved position.

    Examples:
      >>> restored = manager.restore(step, args=ocp.args.Composite(
      ...     state=ocp.args.StandardRestore(abstract_state),
      ...     data=iterator_restore_args(train_it)))
      >>> train_it = restored["data"]  # the same object, now at the saved position
    """
    return grain.checkpoint.CheckpointRestore(iterator)
