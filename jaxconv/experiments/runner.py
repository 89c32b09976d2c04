"""Trains every variant x seed of an `Experiment` and evaluates each run, resuming on rerun.

Layout of the experiment's workdir ``W``::

    W/<variant>/seed<k>/            the trainer's workdir (run.json, checkpoints, metrics.json)
    W/<variant>/seed<k>/result.json this runner's record of the run (see `run_one`)
    W/report.md, W/results.json     written by `jaxconv.experiments.report`

A run whose ``result.json`` exists with the same settings is skipped; a training run that
was stopped resumes from its checkpoint (the trainer's own resume); a finished training run
without ``result.json`` is only evaluated. ``eval_of`` variants train nothing: they load the
checkpoint of their training variant's run with the same seed and evaluate it on transformed
test images. Every run's train accuracy is measured here on the clean (undistorted) training
images (at most `MAX_TRAIN_EVAL` of them), so the train/test gap compares like with like.
Evaluation variants also record ``feature_similarity``: how close the penultimate features of
each transformed test image stay to the clean image's (`jaxconv.experiments.features`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from etils import epath

from jaxconv import run_files, runs, training
from jaxconv.data import readers, sources
from jaxconv.experiments import batching, features
from jaxconv.experiments.spec import Experiment, RunOf, Variant, apply_overrides, quick_subset
from jaxconv.predict import Predictor
from jaxconv.training import config_keys

RESULT_FILE = "result.json"
MAX_TRAIN_EVAL = 10_000  # Training images evaluated for the train accuracy (the first ones).
EVAL_BATCH = 500


class ExperimentError(Exception):
    """A workdir that holds results of other settings (the message says which run)."""


def run_dir(workdir: str | epath.PathLike, variant: str, seed: int) -> epath.Path:
    """``workdir/<variant>/seed<seed>`` (`run_files.path`: local paths made absolute; a
    ``gs://`` workdir without credentials is refused at once)."""
    return run_files.path(workdir) / variant / f"seed{seed}"


def _absolute(path: epath.Path) -> str:
    """`path` as a string, made absolute when local (the trainer may run elsewhere)."""
    text = str(path)
    return text if "://" in text else os.path.abspath(text)


def training_config(experiment: Experiment, variant: Variant, seed: int, quick: bool,
                    workdir: str):
    """The trainer's config for one training run: base + overrides (+ quick), this seed.

    A `RunOf` override becomes ``workdir/<variant>/seed<seed>``.

    The progress bar and the end-of-run plots are turned off (bookkeeping keys).
    """
    overrides = {key: _absolute(run_dir(workdir, value.variant, seed))
                 if isinstance(value, RunOf) else value
                 for key, value in variant.overrides.items()}
    config = apply_overrides(experiment.base, overrides)
    if quick:
        config = apply_overrides(config, experiment.quick)
    config.seed = seed
    config.progress_bar = False
    config.write_plots = False
    return config


def _settings(experiment: Experiment, variant: Variant, seed: int, quick: bool) -> dict:
    """What a ``result.json`` must match to be reused (JSON-normalized)."""
    record = {"seed": seed, "quick": quick, "eval_of": variant.eval_of,
              "overrides": dict(variant.overrides),
              "quick_overrides": dict(experiment.quick) if quick else {},
              "eval_transform": repr(variant.eval_transform) if variant.eval_transform else ""}
    return json.loads(json.dumps(record, default=repr))


class _Arrays:
    """The clean images of a dataset's splits, read once per (dataset, data_dir, classes)."""

    def __init__(self):
        self._cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, config: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
        classes = tuple(config["classes"]) or None
        key = (config["dataset"], runs.data_dir(config), classes, split)
        if key not in self._cache:
            spec = sources.get_spec(config["dataset"])
            name = spec.train_split if split == "train" else spec.test_split
            _, (source,) = sources.open_sources(key[0], key[1], [name], classes)
            self._cache[key] = readers.load_arrays(source)
        return self._cache[key]


def _accuracy(predictor: Predictor, images: np.ndarray, labels: np.ndarray) -> float:
    probs = predictor.probabilities(images)
    return float(np.mean(np.argmax(probs, axis=-1) == labels))


def _steps_to(history: list[dict], target: float) -> int | None:
    """The first evaluated step whose test accuracy reaches `target` (None if none does, or
    if the run was evaluated only once: then there is no curve to read it from)."""
    if sum("test_accuracy" in record for record in history) < 2:
        return None
    for record in history:
        if record.get("test_accuracy", -1.0) >= target:
            return int(record["step"])
    return None


def _drop(workdir: str, variant: Variant, seed: int, test_accuracy: float) -> float | None:
    """An eval_of row: its training variant's clean test accuracy minus `test_accuracy`."""
    if variant.trains:
        return None
    parent = json.loads((run_dir(workdir, variant.eval_of, seed) / RESULT_FILE).read_text())
    return parent["test_accuracy"] - test_accuracy


def _check_trained_with(config, train_dir: epath.Path, directory: epath.Path, *,
                        ignore: set[str]) -> None:
    """Refuses to reuse a result whose run was trained with another config than `config`
    (the experiment's base config changed since): a trained or length key differs, other
    than those in `ignore` (`RunOf` paths, which change when the workdir is moved)."""
    if not run_files.exists(str(train_dir / runs.RUN_FILE)):
        return  # Recorded before run.json existed, or not a training run: settings decide.
    changes = config_keys.compare(runs.read_run_info(str(train_dir)).config, config)
    changed = {kind: {k: v for k, v in getattr(changes, kind).items() if k not in ignore}
               for kind in ("trained", "length")}
    if any(changed.values()):
        differences = ", ".join(f"{k} {config_keys.show(a)} → {config_keys.show(b)}"
                                for kind in changed.values() for k, (a, b) in kind.items())
        raise ExperimentError(
            f"{directory} holds a result of a run trained with another config "
            f"({differences}): the experiment's base config changed since; use another "
            f"--workdir, or delete that folder to rerun it")


def _train(config, directory: epath.Path) -> dict:
    """Trains (or resumes) into `directory`; returns its ``metrics.json``."""
    try:
        training.train_and_evaluate(config, str(directory))
    except training.RunComplete:
        pass  # Trained before; only the evaluation below is missing.
    return runs.read_metrics(str(directory))


def _source(experiment: Experiment, variant: Variant, seed: int, workdir: str, quick: bool,
            batched: Mapping[str, tuple[int, ...]]) -> tuple[Any, epath.Path, int | None]:
    """The training run a row reads: its config, its workdir and, for a batched run
    (`jaxconv.experiments.batching`), the replica of `seed` (else None)."""
    name = variant.eval_of or variant.name
    config = training_config(experiment, experiment.variant(name), seed, quick, workdir)
    seeds = batched.get(name)
    if not seeds:
        return config, run_dir(workdir, name, seed), None
    config.seed, config.num_seeds = seeds[0], len(seeds)
    return config, batching.batch_dir(workdir, name, seeds), seeds.index(seed)


def run_one(experiment: Experiment, variant: Variant, seed: int, workdir: str, *,
            quick: bool, arrays: _Arrays | None = None,
            batched: Mapping[str, tuple[int, ...]] | None = None) -> tuple[dict, bool]:
    """One run of the table: trains (or reuses) and evaluates; writes ``result.json``.

    Args:
      experiment: the experiment.
      variant: one of its variants.
      seed: one of its seeds.
      workdir: the experiment's workdir.
      quick: apply ``experiment.quick``.
      arrays: a cache of dataset arrays shared between runs (None: a fresh one).
      batched: ``{training variant: seeds}`` trained as one program each
        (`batching.batched_variants`); None or {}: one run per seed.

    Returns:
      ``(result, reused)``: the record (``test_accuracy``, ``train_accuracy``, ``gap``,
      ``drop``, ``feature_similarity``, ``num_params``, ``train_seconds``,
      ``eval_seconds``, ``steps``, ``steps_to_target``, ``settings``) and whether it was
      read back from an earlier run.

    Raises:
      ExperimentError: the run's ``result.json`` was written with other settings.
    """
    arrays = arrays or _Arrays()
    directory = run_dir(workdir, variant.name, seed)
    source = variant.eval_of or variant.name
    config, train_dir, replica = _source(experiment, variant, seed, workdir, quick,
                                         batched or {})
    settings = _settings(experiment, variant, seed, quick)
    if replica is not None:
        settings["batched"] = train_dir.name
    result_path = directory / RESULT_FILE
    if result_path.exists():
        result = json.loads(result_path.read_text())
        if result.get("settings") != settings:
            raise ExperimentError(
                f"{directory} holds a run with other settings ({result.get('settings')} vs "
                f"{settings}): use another --workdir, or delete that folder to rerun it")
        moves = {k for k, v in experiment.variant(source).overrides.items()
                 if isinstance(v, RunOf)}  # Paths into `workdir`: settings compare the source.
        _check_trained_with(config, train_dir, directory, ignore=moves)
        return result, True
    if variant.trains:
        metrics = _train(config, train_dir)
    else:
        metrics = runs.read_metrics(str(train_dir))
        if metrics is None:
            raise ExperimentError(f"{train_dir} has no finished run for {variant.name!r}")
    if replica is not None:
        metrics = batching.replica_metrics(metrics, replica)
    start = time.perf_counter()
    clean_images, test_labels = arrays.get(config, "test")
    train_images, train_labels = arrays.get(config, "train")
    if variant.trains:
        predictor = Predictor.from_checkpoint(str(train_dir), batch_size=EVAL_BATCH,
                                              seed_index=replica or 0)
        test_images, similarity = clean_images, None
    else:
        model, info = runs.load_trained_model(str(train_dir), seed_index=replica or 0)
        predictor = Predictor.for_run(model, info, batch_size=EVAL_BATCH)
        test_images = variant.eval_transform(clean_images)
        penultimate = features.Penultimate(model, info.dataset.mean, info.dataset.std)
        similarity = features.similarity(penultimate(clean_images), penultimate(test_images))
    test_acc = _accuracy(predictor, test_images, test_labels)
    train_acc = _accuracy(predictor, train_images[:MAX_TRAIN_EVAL],
                          train_labels[:MAX_TRAIN_EVAL])
    result = {
        "variant": variant.name, "seed": seed, "settings": settings,
        "test_accuracy": test_acc, "train_accuracy": train_acc, "gap": train_acc - test_acc,
        "num_params": metrics.get("num_params"), "steps": metrics["step"],
        # The trainer's wall time, summed over the segments of a resumed run (a batched
        # run's shared equally by its seeds).
        "train_seconds": float(metrics.get("wall_seconds") or 0.0) if variant.trains else 0.0,
        "eval_seconds": time.perf_counter() - start,
        "drop": _drop(workdir, variant, seed, test_acc),
        "feature_similarity": similarity,
        "steps_to_target": (_steps_to(metrics.get("history", []), experiment.target_accuracy)
                            if experiment.target_accuracy else None),
    }
    run_files.makedirs(directory)
    # One atomic write: in a bucket a rename is a copy and a delete (gcsfs first tries the
    # move API, which flat buckets and the emulator refuse, with retries).
    run_files.write_atomic(result_path, json.dumps(result, indent=2))
    return result, False


def run_experiment(experiment: Experiment, workdir: str, *, quick: bool = False,
                   batch_seeds: bool = False, log: Callable[[str], None] = print) -> list[dict]:
    """Runs every variant x seed (`run_one`), in order, printing ``variant i/N`` progress.

    Under `quick`, only `Experiment.quick_variants` (if set) and their evaluation variants.

    Args:
      experiment: the experiment.
      workdir: its workdir (local path or ``gs://``).
      quick: ``experiment.quick`` overrides and the first seed only.
      batch_seeds: train each eligible training variant's seeds as one program
        (`jaxconv.experiments.batching`).
      log: where progress lines go.

    Returns:
      Every run's result record, in variant then seed order.
    """
    if quick:
        experiment = quick_subset(experiment)
    seeds = experiment.seeds[:1] if quick else experiment.seeds
    arrays, results = _Arrays(), []
    batched = batching.batched_variants(experiment, seeds) if batch_seeds else {}
    total = len(experiment.variants)
    for i, variant in enumerate(experiment.variants, 1):
        for seed in seeds:
            start = time.perf_counter()
            result, reused = run_one(experiment, variant, seed, workdir, quick=quick,
                                     arrays=arrays, batched=batched)
            how = "done before" if reused else f"{time.perf_counter() - start:.0f} s"
            log(f"variant {i}/{total} {variant.name} seed {seed}: test accuracy "
                f"{100 * result['test_accuracy']:.2f}% ({how})")
            results.append(result)
    return results
