"""`Digits`: a TFDS builder over scikit-learn's bundled handwritten digits (no download).

The data are the 1,797 8x8 grey-level images of `sklearn.datasets.load_digits`, the test part of
the UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998): 32x32
bitmaps of digits written by 43 people, each 4x4 block counted into one pixel (0..16).

Features:
  - ``image``: ``tfds.features.Tensor(shape=(8, 8, 1), dtype=uint8)``, the sklearn value
    ``v`` in 0..16 stored as ``round(v * 255 / 16)`` (so 16 -> 255; ``np.round`` rounds halves
    to even).
  - ``label``: ``tfds.features.ClassLabel`` with names ``"0"`` .. ``"9"``.

Split (fixed, version 1.0.0): a seeded, stratified random split, 1500 train / 297 test
(`jaxconv.data.offline.stratified_split`).
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

import numpy as np
import tensorflow_datasets as tfds

from jaxconv.data.offline import OfflineBuilder, stratified_split

NUM_EXAMPLES = 1797
NUM_TEST = 297
SPLIT_SEED = 0
CLASS_NAMES = tuple(str(i) for i in range(10))


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split of the module docstring (`offline.stratified_split`).

    Args:
      labels: int array ``(num_examples,)`` in sklearn's order (``load_digits().target``).

    Returns:
      ``(train_indices, test_indices)``, each sorted ascending, disjoint, covering all examples.
    """
    return stratified_split(labels, NUM_TEST, SPLIT_SEED, len(CLASS_NAMES))


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


class Digits(OfflineBuilder):
    """sklearn's 8x8 digits as a TFDS dataset (``array_record``, no TensorFlow needed).

    Preparing it prints one line saying it is built offline from scikit-learn's bundled copy
    (TFDS's "Downloading and preparing dataset Unknown size" does not apply to it).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Stratified random split, 1500 train / 297 test, seed 0."}
    SOURCE = "scikit-learn's bundled copy"
    NUM_EXAMPLES = NUM_EXAMPLES

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
