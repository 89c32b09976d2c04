"""Picklable callables that turn example indices into examples or batches (used by grain).

Two ways to read, chosen by `jaxconv.data.pipeline`:

- cached (fixed-size datasets: digits, mnist, cifar10): the split is read once into uint8
  arrays (`load_arrays`) and grain only shuffles, shards and batches int indices; a batch is
  one fancy-indexing gather (`GatherBatch`, `GatherPaddedBatch`). grain costs tens of
  microseconds per element in Python, so this is ~10x faster than reading per example.
- per example (variable-size imagenet2012): `ReadExample` reads, decodes and crops one
  example in grain's reader threads, and grain batches them.

Both read the same index stream, so they yield the same examples in the same order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from jaxconv.data import transforms
from jaxconv.data.transforms import ResizeCrop


def load_arrays(source: Any) -> tuple[np.ndarray, np.ndarray]:
    """Reads a whole split of fixed-size images into memory.

    Args:
      source: a TFDS data source (``len``, ``source[i]`` -> dict with "image", "label").

    Returns:
      ``(images, labels)``: uint8 ``(N, H, W, C)`` and int32 ``(N,)``.
    """
    # Per index: `__getitems__` is ~2x faster but unavailable under tfds.testing.mock_data.
    examples = [source[i] for i in range(len(source))]
    images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples], np.int32)
    return images, labels


@dataclasses.dataclass(frozen=True, eq=False)
class GatherBatch:
    """``indices (B,) -> {"image": uint8 (B, H, W, C), "label": int32 (B,)}`` from arrays."""

    images: np.ndarray
    labels: np.ndarray

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {"image": self.images[indices], "label": self.labels[indices]}


@dataclasses.dataclass(frozen=True, eq=False)
class GatherPaddedBatch:
    """Like `GatherBatch`, with ``"mask"``; indices ``>= N`` give zero padding (mask False)."""

    images: np.ndarray
    labels: np.ndarray

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        mask = indices < len(self.labels)
        safe = np.where(mask, indices, 0)
        images = self.images[safe] * mask[:, None, None, None].astype(np.uint8)
        return {"image": images, "label": np.where(mask, self.labels[safe], 0), "mask": mask}


@dataclasses.dataclass(frozen=True, eq=False)
class ReadExample:
    """``(index, rng) -> {"image", "label"[, "mask"]}`` read from a data source.

    Attributes:
      source: a TFDS data source.
      crop: resize/crop of variable-size images; None keeps the image as stored.
      train: random crop (train) or central crop (eval) when `crop` is set.
      padded: add ``"mask"``, with zero padding for indices ``>= len(source)``.
      image_shape: shape of the padding image, ``(H, W, C)`` (needed when `padded`).
    """

    source: Any
    crop: ResizeCrop | None = None
    train: bool = True
    padded: bool = False
    image_shape: tuple[int, int, int] | None = None

    def __call__(self, index: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        index = int(index)
        if self.padded and index >= len(self.source):
            image = np.zeros(self.image_shape, np.uint8)
            return {"image": image, "label": np.int32(0), "mask": np.False_}
        features = self.source[index]
        image = np.asarray(features["image"], np.uint8)
        if self.crop is not None:
            if self.train:
                image = transforms.random_crop(image, self.crop, rng)
            else:
                image = transforms.center_crop(image, self.crop)
        example = {"image": image, "label": np.int32(features["label"])}
        if self.padded:
            example["mask"] = np.True_
        return example
