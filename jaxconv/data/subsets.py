"""Training on a subset of a dataset's classes (e.g. digits 0-4, then 5-9 for fine-tuning).

`ClassSubset` wraps a random-access data source: it keeps the examples whose label is in
``classes`` (in the source's order) and renumbers their labels ``0..len(classes)-1`` in the
order ``classes`` lists them, so a model trained on ``classes=(5, 6, 7, 8, 9)`` has 5 outputs
and output 0 means digit 5. Class names follow the same order (`subset_names`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


def check_classes(classes: Sequence[int], num_classes: int, name: str) -> tuple[int, ...]:
    """`classes` as a tuple after checking it selects >= 2 distinct labels of the dataset.

    Raises:
      ValueError: not ints, a label outside ``[0, num_classes)``, repeated, or fewer than 2.
    """
    classes = tuple(classes)
    if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        raise ValueError(f"classes={classes!r} must be integer labels of {name!r}")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"classes={classes!r}: {bad} outside the labels of {name!r} "
                         f"[0, {num_classes})")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes={classes!r} must list at least 2 distinct labels")
    return tuple(int(c) for c in classes)


def subset_names(names: Sequence[str], classes: Sequence[int]) -> tuple[str, ...]:
    """The class names of the subset, in its label order."""
    return tuple(names[c] for c in classes)


@dataclasses.dataclass(frozen=True, eq=False)
class ClassSubset:
    """The examples of `source` whose label is in `classes`, labels renumbered.

    Reads every example's label once at construction (a pass over the split).

    Attributes:
      source: a random-access data source (``len``, ``source[i]`` -> dict with "label").
      classes: the kept labels; ``classes[k]`` becomes label ``k``.
    """

    source: Any
    classes: tuple[int, ...]
    indices: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self):
        labels = np.asarray([int(self.source[i]["label"]) for i in range(len(self.source))])
        object.__setattr__(self, "indices", np.flatnonzero(np.isin(labels, self.classes)))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = dict(self.source[int(self.indices[index])])
        example["label"] = np.int64(self.classes.index(int(example["label"])))
        return example
