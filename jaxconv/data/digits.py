"""`Digits`: a TFDS builder over scikit-learn's bundled handwritten digits (no download).

The data are the 1,797 8x8 grey-level images of `sklearn.datasets.load_digits`, the test part of
the UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998): 32x32
bitmaps of digits written by 43 people, each 4x4 block counted into one pixel (0..16).

Features:
  - ``image``: ``tfds.features.Tensor(shape=(8, 8, 1), dtype=uint8)``, the sklearn value
    ``v`` in 0..16 stored as ``round(v * 255 / 16)`` (so 16 -> 255; ``np.round`` rounds halves
    to even).
  - ``label``: ``tfds.features.ClassLabel`` with names ``"0"`` .. ``"9"``.

Split (fixed, version 1.0.0): a seeded, stratified random split, 1500 train / 297 test.
  1. Per class ``c``, with ``n_c`` images of that class, the test quota is the largest-remainder
     (Hamilton) apportionment of 297 over the class counts: ``floor(297 * n_c / 1797)`` each,
     then one more for the classes with the largest fractional parts (ties: lower ``c``)
     until the quotas sum to 297. This gives test counts
     ``[29, 30, 29, 30, 30, 30, 30, 30, 29, 30]`` for classes 0..9.
  2. The indices (into sklearn's order) of class ``c`` are permuted with
     ``np.random.RandomState(SPLIT_SEED + c).permutation`` (``SPLIT_SEED = 0``); the first
     ``quota_c`` go to test, the rest to train. `split_indices()` returns both index arrays.
  Each example's TFDS key is its index in sklearn's order; TFDS shuffles records by key hash.
  A random split mixes writers across train and test; the last 297 sklearn images come from
  other writers, so a "first 1500 / last 297" split would be harder (writer-independent).

The builder writes ``array_record`` files (the default here) and needs no TensorFlow: the image
is a plain uint8 ``Tensor`` feature, not a PNG-encoded ``Image``. Read it back with
``Digits(data_dir=...).as_data_source(split)`` or ``tfds.data_source("digits", ...)``.
Defining the class registers the name ``"digits"`` with TFDS (the usual TFDS convention).

Examples:
  >>> builder = Digits(data_dir="/tmp/tfds")
  >>> builder.download_and_prepare()  # ~1 s, idempotent
  >>> train = builder.as_data_source("train")
  >>> len(train), train[0]["image"].shape
  (1500, (8, 8, 1))
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

NUM_EXAMPLES = 1797
NUM_TEST = 297
SPLIT_SEED = 0
CLASS_NAMES = tuple(str(i) for i in range(10))


def _test_quotas(labels: np.ndarray, num_test: int) -> np.ndarray:
    """Largest-remainder apportionment of `num_test` over the class counts of `labels`."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    exact = num_test * counts / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = exact - quotas
    # Stable sort on -remainder: largest fractional parts first, ties by lower class index.
    order = np.argsort(-remainder, kind="stable")
    quotas[order[: num_test - quotas.sum()]] += 1
    return quotas


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split of the module docstring.

    Args:
      labels: int array ``(num_examples,)`` in sklearn's order (``load_digits().target``).

    Returns:
      ``(train_indices, test_indices)``, each sorted ascending, disjoint, covering all examples.
    """
    labels = np.asarray(labels)
    quotas = _test_quotas(labels, NUM_TEST)
    test = []
    for c, quota in enumerate(quotas):
        idx = np.flatnonzero(labels == c)
        perm = np.random.RandomState(SPLIT_SEED + c).permutation(len(idx))
        test.append(idx[perm[:quota]])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as stored by the builder.

    Returns:
      ``(images, labels)``: uint8 ``(1797, 8, 8, 1)`` in 0..255 and int64 ``(1797,)``,
      in sklearn's order.
    """
    from sklearn.datasets import load_digits  # Imported lazily: only preparation needs it.

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)


class _DropVariantWarnings(logging.Filter):
    """Drops TFDS's "Variant folder ... has no dataset_info.json" (absl) warnings: before the
    first build the folder is legitimately empty, which TFDS words as a broken dataset."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Variant folder")


@contextlib.contextmanager
def _offline_messages():
    """TFDS's download-oriented chatter (variant warnings, progress bars) off for the block."""
    absl_logger, drop = logging.getLogger("absl"), _DropVariantWarnings()
    absl_logger.addFilter(drop)
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(True)
        absl_logger.removeFilter(drop)


class Digits(tfds.core.GeneratorBasedBuilder):
    """sklearn's 8x8 digits as a TFDS dataset (``array_record``, no TensorFlow needed).

    Preparing it prints one line saying it is built offline from scikit-learn's bundled copy
    (TFDS's "Downloading and preparing dataset Unknown size" does not apply to it).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified random split, 1500 train / 297 test, seed 0."}

    def __init__(self, *, file_format: str | None = None, **kwargs: Any):
        """Same arguments as `tfds.core.GeneratorBasedBuilder`; ``file_format`` defaults to
        ``"array_record"`` (the TFRecord default would need TensorFlow to write)."""
        with _offline_messages():
            super().__init__(file_format=file_format or "array_record", **kwargs)

    def is_prepared(self) -> bool:
        """TFDS's `is_prepared`, without its warning about the not-yet-built folder."""
        with _offline_messages():
            return super().is_prepared()

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        """TFDS's `download_and_prepare` (nothing is downloaded), with offline messages."""
        with _offline_messages():
            super().download_and_prepare(*args, **kwargs)

    def _log_download_bytes(self) -> None:
        print(f"Building the digits dataset offline from scikit-learn's bundled copy "
              f"({NUM_EXAMPLES} images, no download) into {self.data_dir}", file=sys.stderr)

    def _log_download_done(self) -> None:
        print(f"Digits dataset ready in {self.data_dir}; later runs reuse it.", file=sys.stderr)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "1,797 8x8 handwritten digits bundled with scikit-learn (UCI optdigits test "
                "set), pixel values 0..16 scaled to 0..255. Stratified random split "
                "1500/297 with seed 0 (see jaxconv.data.digits)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
            citation=(
                "@misc{alpaydin1998optdigits, author={Alpaydin, E. and Kaynak, C.}, "
                "title={Optical Recognition of Handwritten Digits}, year={1998}, "
                "howpublished={UCI Machine Learning Repository}}"
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: the data ship with scikit-learn.
        images, labels = load_arrays()
        train, test = split_indices(labels)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
