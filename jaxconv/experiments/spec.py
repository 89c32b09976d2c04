"""What an experiment is: a base training config, named variants, seeds, claims.

An experiment config is a Python file with a ``get_experiment()`` function returning an
`Experiment` (``configs/experiments/*.py``; docs/experiments.md describes the format).
A `Variant` either trains (the base config with its ``overrides``) or re-evaluates the runs of
another variant on transformed test images (``eval_of`` + ``eval_transform``): the pooling
claim trains "max" once and evaluates it on test images shifted by 1, 2 and 3 pixels.
A `Claim` compares two rows on one metric with a verdict rule fixed before anything runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import numpy as np

# uint8 (N, H, W, C) test images -> uint8 images of the same shape.
EvalTransform = Callable[[np.ndarray], np.ndarray]
METRICS = ("test_accuracy", "train_accuracy", "gap", "drop", "feature_similarity",
           "steps_to_target", "num_params")


@dataclasses.dataclass(frozen=True)
class RunOf:
    """An override value: the workdir of `variant`'s run with the same seed.

    ``{"init.checkpoint": RunOf("pretrain")}`` fine-tunes from the run of the earlier
    training variant "pretrain" with the same seed (transfer learning inside one experiment).
    """

    variant: str


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of the report.

    Attributes:
      name: unique in the experiment; also its folder, ``<workdir>/<name>/seed<k>``, so it
        may contain letters, digits, ``-``, ``_``, ``.`` and ``=`` only.
      overrides: dotted config keys -> values applied to the base config
        (``{"model_kwargs.pool": "avg", "optimizer.momentum": 0.0}``); a `RunOf` value
        becomes the path of another variant's run with the same seed.
      eval_of: the name of an earlier training variant whose runs this row evaluates instead
        of training its own; "" for a training variant.
      eval_transform: applied to the test images before evaluating (``eval_of`` variants
        only): uint8 ``(N, H, W, C)`` -> uint8, same shape. Its row's ``drop`` is the
        training variant's clean test accuracy minus this one, per seed.
      description: one line for the report.
    """

    name: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval_of: str = ""
    eval_transform: EvalTransform | None = None
    description: str = ""

    @property
    def trains(self) -> bool:
        """Whether this variant trains its own runs (else it evaluates `eval_of`'s)."""
        return not self.eval_of


@dataclasses.dataclass(frozen=True)
class Claim:
    """A statement of the chapter, tested by comparing two variants on one metric.

    The verdict rule is fixed in advance (`jaxconv.experiments.stats.verdict`): "supported"
    when the two rows' 95 % t-intervals over seeds do not overlap and `better` is on the
    claimed side; "contradicted" when they do not overlap on the other side; "inconclusive"
    when they overlap (or a row has a single seed).

    Attributes:
      name: short label.
      statement: the claim, in the chapter's words.
      better: the variant the claim says wins.
      worse: the variant it is compared with.
      metric: one of `METRICS`.
      higher_is_better: False for metrics where less wins (the gap, the drop under an
        evaluation transform, steps to a target).
    """

    name: str
    statement: str
    better: str
    worse: str
    metric: str = "test_accuracy"
    higher_is_better: bool = True


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A base config, its variants, the seeds, and the claims they test.

    Attributes:
      name: the report's title.
      base: a training config shaped like ``configs/default.py``.
      variants: the rows, in report order; training variants before those evaluating them.
      seeds: values of ``config.seed``, one run per variant and seed.
      claims: statements tested on the results (may be empty).
      quick: overrides for every training variant under ``--quick`` (few steps, small data),
        which also keeps only the first seed.
      quick_variants: the training variants ``--quick`` runs (with the evaluation variants
        of them and the claims between them); () runs them all.
      target_accuracy: the test accuracy that ``steps_to_target`` counts steps to (from the
        evaluations in ``metrics.json``'s history, for runs evaluated more than once: set
        ``eval_every_steps`` in their overrides).
    """

    name: str
    base: ml_collections.ConfigDict
    variants: tuple[Variant, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    claims: tuple[Claim, ...] = ()
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    quick_variants: tuple[str, ...] = ()
    target_accuracy: float = 0.0

    def __post_init__(self):
        check(self)

    def variant(self, name: str) -> Variant:
        """The variant called `name` (`ValueError` listing the names if there is none)."""
        for v in self.variants:
            if v.name == name:
                return v
        raise ValueError(f"no variant {name!r}; variants: {[v.name for v in self.variants]}")


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=")


def check(experiment: Experiment) -> None:
    """Raises `ValueError` naming the first problem of `experiment`'s structure."""
    if not experiment.variants:
        raise ValueError("an experiment needs at least one variant")
    if not experiment.seeds or len(set(experiment.seeds)) != len(experiment.seeds):
        raise ValueError(f"seeds must be distinct and not empty, got {experiment.seeds}")
    seen: dict[str, Variant] = {}
    for v in experiment.variants:
        if not v.name or not set(v.name) <= _NAME_CHARS or v.name.startswith("."):
            raise ValueError(f"variant name {v.name!r}: use letters, digits, - _ . = only")
        if v.name in seen:
            raise ValueError(f"two variants are called {v.name!r}")
        if v.eval_of:
            if v.eval_of not in seen or not seen[v.eval_of].trains:
                raise ValueError(f"variant {v.name!r}: eval_of={v.eval_of!r} must name an "
                                 f"earlier training variant")
            if v.overrides or v.eval_transform is None:
                raise ValueError(f"variant {v.name!r}: an eval_of variant has an "
                                 f"eval_transform and no overrides")
        elif v.eval_transform is not None:
            raise ValueError(f"variant {v.name!r}: eval_transform needs eval_of")
        for value in v.overrides.values():
            if isinstance(value, RunOf) and (value.variant not in seen
                                             or not seen[value.variant].trains):
                raise ValueError(f"variant {v.name!r}: RunOf({value.variant!r}) must name an "
                                 f"earlier training variant")
        seen[v.name] = v
    for name in experiment.quick_variants:
        if name not in seen or not seen[name].trains:
            raise ValueError(f"quick_variants: {name!r} is not a training variant")
        for value in seen[name].overrides.values():
            if isinstance(value, RunOf) and value.variant not in experiment.quick_variants:
                raise ValueError(f"quick_variants: {name!r} needs {value.variant!r} too")
    for claim in experiment.claims:
        for name in (claim.better, claim.worse):
            if name not in seen:
                raise ValueError(f"claim {claim.name!r} names no variant {name!r}")
        if claim.metric not in METRICS:
            raise ValueError(f"claim {claim.name!r}: metric {claim.metric!r} not in {METRICS}")


def quick_subset(experiment: Experiment) -> Experiment:
    """`experiment` reduced to what ``--quick`` runs (`Experiment.quick_variants`)."""
    if not experiment.quick_variants:
        return experiment
    keep = set(experiment.quick_variants)
    variants = tuple(v for v in experiment.variants if (v.eval_of or v.name) in keep)
    names = {v.name for v in variants}
    claims = tuple(c for c in experiment.claims if {c.better, c.worse} <= names)
    return dataclasses.replace(experiment, variants=variants, claims=claims, quick_variants=())


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A copy of `config` with dotted `overrides` set (keys must exist: no new keys).

    Raises:
      KeyError: an override names a key the config does not declare.
    """
    config = ml_collections.ConfigDict(config.to_dict())
    for dotted, value in overrides.items():
        node, *path, last = [config, *dotted.split(".")]
        for part in path:
            node = node[part]
        if last not in node:
            raise KeyError(f"override {dotted!r}: the config has no key {last!r} there")
        node[last] = value
    return config


def load(path: str | os.PathLike) -> Experiment:
    """Runs an experiment config file and returns its ``get_experiment()``.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file has no ``get_experiment`` or it returns no `Experiment`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no experiment config {path!r}")
    spec = importlib.util.spec_from_file_location("_jaxconv_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get = getattr(module, "get_experiment", None)
    if get is None:
        raise ValueError(f"{path} defines no get_experiment()")
    experiment = get()
    if not isinstance(experiment, Experiment):
        raise ValueError(f"{path}: get_experiment() returned {type(experiment).__name__}, "
                         f"not jaxconv.experiments.Experiment")
    return experiment
