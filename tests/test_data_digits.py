"""Tests for jaxconv.data.digits: the fixed split, the stored values, the TFDS builder."""

import collections
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxconv.data import DATASETS, digits, sources


@pytest.fixture(scope="module")
def arrays():
    return digits.load_arrays()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = digits.Digits(data_dir=str(data_dir))
    builder.download_and_prepare()
    return data_dir, builder


def _multiset(images, labels):
    return collections.Counter((im.tobytes(), int(y)) for im, y in zip(images, labels))


def test_load_arrays_values(arrays):
    from sklearn.datasets import load_digits

    images, labels = arrays
    assert images.shape == (1797, 8, 8, 1) and images.dtype == np.uint8
    assert labels.shape == (1797,)
    raw = load_digits().images
    np.testing.assert_array_equal(images[..., 0], np.round(raw * 255 / 16).astype(np.uint8))
    assert images[raw == 16].min() == 255 and images[raw == 0].max() == 0


def test_split_is_fixed_stratified_and_disjoint(arrays):
    _, labels = arrays
    train, test = digits.split_indices(labels)
    assert len(train) == 1500 and len(test) == 297
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1797))
    # Largest-remainder quotas of 297 over the class counts (documented in the module).
    assert np.bincount(labels[test]).tolist() == [29, 30, 29, 30, 30, 30, 30, 30, 29, 30]
    # Pinned: a change here changes every reported accuracy.
    assert test[:10].tolist() == [6, 14, 18, 22, 26, 32, 36, 38, 40, 45]
    assert int(test.sum()) == 247337
    again_train, again_test = digits.split_indices(labels)
    np.testing.assert_array_equal(again_test, test)
    np.testing.assert_array_equal(again_train, train)


def test_builder_writes_array_record_without_tensorflow(prepared):
    _, builder = prepared
    assert "tensorflow" not in sys.modules
    assert builder.info.file_format.value == "array_record"
    assert builder.info.splits["train"].num_examples == 1500
    assert builder.info.splits["test"].num_examples == 297
    features = builder.info.features
    assert features["image"].shape == (8, 8, 1) and features["image"].np_dtype == np.uint8
    assert features["label"].names == [str(i) for i in range(10)]


@pytest.mark.parametrize("split", ["train", "test"])
def test_builder_examples_match_sklearn(prepared, arrays, split):
    _, builder = prepared
    images, labels = arrays
    train, test = digits.split_indices(labels)
    indices = train if split == "train" else test
    source = builder.as_data_source(split=split)
    examples = [source[i] for i in range(len(source))]
    got = _multiset([ex["image"] for ex in examples], [ex["label"] for ex in examples])
    assert got == _multiset(images[indices], labels[indices])


def test_prepare_is_idempotent_and_registered(prepared):
    data_dir, builder = prepared
    files = sorted(p.stat().st_mtime_ns for p in data_dir.rglob("*.array_record*"))
    digits.Digits(data_dir=str(data_dir)).download_and_prepare()
    assert sorted(p.stat().st_mtime_ns for p in data_dir.rglob("*.array_record*")) == files
    source = tfds.data_source("digits", split="test", data_dir=str(data_dir), download=False)
    assert len(source) == 297


def test_dataset_mean_std_match_train_split(arrays):
    images, labels = arrays
    train, _ = digits.split_indices(labels)
    x = images[train].astype(np.float64) / 255
    spec = DATASETS["digits"]
    np.testing.assert_allclose(spec.mean, [x.mean()], atol=1e-4)
    np.testing.assert_allclose(spec.std, [x.std()], atol=1e-4)


def test_first_build_announces_itself_as_offline(tmp_path, capfd, caplog):
    """No "Downloading ... Unknown size" and no missing-dataset_info.json warning: the data
    ship with scikit-learn, and the message says so (issue: first run looked like a download)."""
    caplog.set_level("INFO")
    builder, (train,) = sources.open_sources("digits", str(tmp_path), ["train"])
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    assert len(train) == 1500
    assert "offline from scikit-learn's bundled copy" in text and str(tmp_path) in text
    assert "Downloading" not in text and "Unknown size" not in text
    assert "dataset_info.json" not in text and "Variant folder" not in text
