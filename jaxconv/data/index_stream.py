"""The shuffled index stream of training: global stream positions -> example indices.

Training reads one endless stream of example indices: epoch ``e`` is a permutation of
``range(num_examples)`` derived from ``(seed, e)`` alone, and the epochs follow each other, so
position ``p`` holds ``permutation(p // num_examples)[p % num_examples]``. `ShuffledStream`
computes that for a whole array of positions at once (one fancy index per epoch touched),
which is what makes the cached pipeline fast: grain handles one int per batch, not one per
example. `ShardPositions` gives the positions of one process's local batches
(`jaxconv.data.pipeline` documents the contract).

Examples:
  >>> stream = ShuffledStream(num_examples=5, seed=0)
  >>> sorted(stream(np.arange(5))) == sorted(stream(np.arange(5, 10))) == [0, 1, 2, 3, 4]
  True
"""

from __future__ import annotations

import collections
import dataclasses
import threading

import numpy as np

# Permutations kept per stream: a batch touches 1-2 epochs unless it is larger than the split.
_CACHED_EPOCHS = 4


class ShuffledStream:
    """``positions (any shape, int) -> example indices (same shape, int64)``.

    Epoch ``e`` is ``np.random.default_rng(np.random.SeedSequence([seed, e]))
    .permutation(num_examples)``; positions may straddle epochs or span several (a batch
    larger than the split). The last few permutations are cached behind a lock, so grain's
    reader threads can share one stream. Picklable (the cache is not pickled).

    Attributes:
      num_examples: examples per epoch (the split's size).
      seed: shuffle seed.
    """

    def __init__(self, num_examples: int, seed: int):
        """Raises ValueError if `num_examples` < 1 or `seed` is not a non-negative int."""
        if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
            raise ValueError(f"num_examples must be an int, got {num_examples!r}.")
        if num_examples < 1:
            raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    def __reduce__(self):
        return ShuffledStream, (self.num_examples, self.seed)

    def __repr__(self) -> str:
        return f"ShuffledStream(num_examples={self.num_examples}, seed={self.seed})"

    def permutation(self, epoch: int) -> np.ndarray:
        """Example indices of epoch `epoch` in stream order: int64 ``(num_examples,)``."""
        epoch = int(epoch)
        with self._lock:
            perm = self._cache.get(epoch)
            if perm is None:
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
                perm = rng.permutation(self.num_examples).astype(np.int64)
                perm.flags.writeable = False
                self._cache[epoch] = perm
                if len(self._cache) > _CACHED_EPOCHS:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(epoch)
            return perm

    def __call__(self, positions: np.ndarray | int) -> np.ndarray:
        """Example indices at global stream `positions` (non-negative ints).

        Raises:
          ValueError: `positions` not integers, or negative.
        """
        positions = np.asarray(positions)
        if positions.dtype.kind not in "iu":
            raise ValueError(f"positions must be integers, got dtype {positions.dtype}.")
        positions = positions.astype(np.int64, copy=False)
        if positions.size == 0:
            return np.zeros(positions.shape, np.int64)
        first, last = positions.min(), positions.max()
        if first < 0:
            raise ValueError(f"positions must be >= 0, got {first}.")
        epochs, within = np.divmod(positions, self.num_examples)
        if first // self.num_examples == last // self.num_examples:  # The usual case.
            return self.permutation(first // self.num_examples)[within]
        out = np.empty_like(within)
        for epoch in np.unique(epochs):
            where = epochs == epoch
            out[where] = self.permutation(epoch)[within[where]]
        return out

    def index(self, position: int) -> int:
        """The example index at one stream position (the per-example path's map)."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}.")
        epoch, within = divmod(int(position), self.num_examples)
        return int(self.permutation(epoch)[within])


@dataclasses.dataclass(frozen=True)
class ShardPositions:
    """``k -> int64 (local_batch,)``: stream positions of local batch `k` of one shard.

    Local batch ``k`` of shard ``s`` of ``c`` holds positions ``s + c * (k * local_batch +
    j)`` for ``j < local_batch``, i.e. positions ``s::c`` of ``[k * global_batch, (k + 1) *
    global_batch)`` with ``global_batch = c * local_batch``: the union over shards of their
    batch ``k`` is global batch ``k``.

    Attributes:
      local_batch: examples per batch on this shard.
      shard_index: this shard, in ``[0, shard_count)``.
      shard_count: number of shards.
    """

    local_batch: int
    shard_index: int
    shard_count: int

    def __post_init__(self):
        if self.local_batch < 1 or not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"Need local_batch >= 1 and 0 <= shard_index < shard_count, got {self}."
            )

    def __call__(self, k: int) -> np.ndarray:
        start = self.shard_index + self.shard_count * self.local_batch * int(k)
        stop = start + self.shard_count * self.local_batch
        return np.arange(start, stop, self.shard_count, dtype=np.int64)
