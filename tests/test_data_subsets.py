"""jaxconv.data.subsets: training on some classes only (labels renumbered in `classes` order)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxconv import data
from jaxconv.data import digits as digits_lib
from jaxconv.data.subsets import ClassSubset, check_classes

LABELS = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5])


def _source():
    return [{"image": np.full((2, 2, 1), i, np.uint8), "label": int(y)}
            for i, y in enumerate(LABELS)]


def test_class_subset_keeps_order_and_renumbers_in_classes_order():
    subset = ClassSubset(_source(), (5, 1))
    kept = [i for i, y in enumerate(LABELS) if y in (5, 1)]  # Positions 1, 3, 4, 8, 10.
    assert len(subset) == len(kept) == 5
    for k, i in enumerate(kept):
        assert subset[k]["image"][0, 0, 0] == i
        assert subset[k]["label"] == {5: 0, 1: 1}[LABELS[i]]


@pytest.mark.parametrize("classes, match", [
    ((3, 10), r"\[10\] outside the labels of 'digits' \[0, 10\)"),
    ((-1, 2), r"\[-1\] outside"),
    ((2, 2), "at least 2 distinct"),
    ((4,), "at least 2 distinct"),
    ((1.0, 2), "must be integer labels"),
    ((True, 2), "must be integer labels"),
])
def test_check_classes_errors(classes, match):
    with pytest.raises(ValueError, match=match):
        check_classes(classes, 10, "digits")


def test_digits_subset_sizes_match_sklearn_split(digits_dir):
    _, labels = load_digits(return_X_y=True)
    train_idx, test_idx = digits_lib.split_indices(labels)
    info = data.ensure_prepared("digits", digits_dir, classes=(5, 6, 7, 8, 9))
    assert info.num_classes == 5
    assert info.class_names == ("5", "6", "7", "8", "9")
    assert info.num_train == int(np.sum(labels[train_idx] >= 5)) == 747
    assert info.num_test == int(np.sum(labels[test_idx] >= 5)) == 149


def test_digits_subset_eval_batches_are_the_filtered_full_split(digits_dir):
    full = next(iter(data.eval_batches("digits", digits_dir, batch_size=300)))
    part = data.eval_batches("digits", digits_dir, batch_size=300, classes=(7, 2))
    (batch,) = list(part)
    keep = np.isin(full["label"], (7, 2)) & full["mask"]
    n = int(keep.sum())
    assert part.num_examples == n
    np.testing.assert_array_equal(batch["image"][:n], full["image"][keep])
    np.testing.assert_array_equal(batch["label"][:n], np.where(full["label"][keep] == 7, 0, 1))
    assert not batch["mask"][n:].any()


def test_digits_subset_train_iterator_yields_only_renumbered_labels(digits_dir):
    it = data.train_iterator("digits", digits_dir, global_batch_size=64, seed=0,
                             classes=(0, 1, 2))
    labels = np.concatenate([next(it)["label"] for _ in range(10)])
    assert set(labels.tolist()) == {0, 1, 2}
