"""`write_all(workdir)`: every figure of a training run, as PNGs under ``workdir/plots/``.

It reads what the run left (`jaxconv.runs`): ``run.json`` and the newest checkpoint
(`load_trained_model`) or the trained parameters it is given, ``metrics.json``'s history, and
the run's dataset (``config.data_dir``, ``config.classes``). ``train.py`` calls it after
training (``config.write_plots``) with the final parameters;
``python -m jaxconv.plots --workdir DIR`` calls it on demand.

Figures (a figure that does not apply is skipped with a logged warning saying why):
  - ``filters.png``: the first layer's convolution kernels (none if the first layer with
    parameters is not a convolution).
  - ``curves.png``: train/test loss and accuracy over the steps (needs ``metrics.json``).
  - ``confusion.png``: the confusion matrix on the test split (at most
    `MAX_CONFUSION_EXAMPLES` examples, in split order), same preprocessing as eval.
  - ``distortions.png``: the run's training distortion applied to real training images.
  - ``feature_maps.png``: one test image through every layer with a spatial output, except
    elementwise activations and dropout: conv, LCN/LRN and pooling for a StageNet stage.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxconv import data, run_files, runs
from jaxconv.layers import Activation, Dropout
from jaxconv.plots import figures
from jaxconv.predict import predictor as predictor_lib
from jaxconv.runs import METRICS_FILE, SEEDS_SUFFIX, RunInfo

PLOTS_DIR = "plots"
MAX_CONFUSION_EXAMPLES = 10_000  # Enough for every class of ImageNet to show up ~10 times.
NUM_DISTORTED_IMAGES = 6  # Rows of distortions.png ...
NUM_DISTORTIONS = 5  # ... and distorted copies per row.

_log = logging.getLogger(__name__)


def first_conv_kernel(model: nnx.Module) -> tuple[str, np.ndarray] | None:
    """``(layer_name, kernel (kh, kw, in, out))`` of the first layer with parameters, if a conv.

    None when that layer is something else (a locally-connected or dense layer).
    """
    for name, layer in model.named_leaves():
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            kernel = np.asarray(kernel[...])
            return (name, kernel) if kernel.ndim == 4 else None
    return None


def feature_maps(model: nnx.Module, image: np.ndarray, mean, std) -> dict[str, np.ndarray]:
    """The input and every spatial layer output of one image, keyed by layer name.

    Args:
      model: a `jaxconv.models.Classifier` (a `Sequential`) in eval mode.
      image: uint8 ``(H, W, C)``, as the dataset stores it.
      mean, std: the dataset's normalization (`DatasetInfo.mean` / ``.std``).

    Returns:
      ``{"input": (H, W, C) normalized, "stage1.conv": (H', W', C'), ...}`` in call order;
      elementwise activations, dropout and non-spatial (flattened, dense) outputs left out.
    """
    x = data.normalize(np.asarray(image)[None], mean, std)
    graphdef, state = nnx.split(model)
    # One compiled program (eager, LCN's many small ops take seconds).
    outputs = jax.jit(lambda s, x: nnx.merge(graphdef, s).intermediates(x))(state, x)
    maps = {"input": np.asarray(x[0])}
    for name, layer in model.named_leaves():
        out = outputs[name]
        if out.ndim == 4 and not isinstance(layer, (Activation, Dropout)):
            maps[name] = np.asarray(out[0])
    return maps


def _dataset_batches(run: RunInfo, split: str, batch_size: int, **kwargs) -> data.EvalBatches:
    """The run's dataset (its classes, its eval crop) read in order by this process alone."""
    config = run.config
    return data.eval_batches(
        config["dataset"], runs.data_dir(config), split=split, batch_size=batch_size,
        shard_index=0, shard_count=1, crop=runs.make_crop(config),
        classes=tuple(config.get("classes", ())) or None, **kwargs)


def predict_test_split(predictor: predictor_lib.Predictor, run: RunInfo,
                       max_examples: int = MAX_CONFUSION_EXAMPLES) -> tuple[np.ndarray, ...]:
    """The test split in order, through `predictor` (eval preprocessing).

    Returns:
      ``(labels, predicted, first_image)``: int ``(n,)``, int ``(n,)`` with ``n`` at most
      `max_examples`, and the first test image, uint8 ``(H, W, C)``.
    """
    labels, predicted, first = [], [], None
    for batch in _dataset_batches(run, run.dataset.test_split, predictor.batch_size):
        real = batch["mask"]  # The last batch is padded.
        images = batch["image"][real]
        first = images[0] if first is None else first
        predicted.append(predictor.probabilities(images).argmax(-1))
        labels.append(batch["label"][real])
        if sum(map(len, labels)) >= max_examples:
            break
    return (np.concatenate(labels)[:max_examples], np.concatenate(predicted)[:max_examples],
            first)


def distorted_samples(run: RunInfo, num_images: int = NUM_DISTORTED_IMAGES,
                      num_distortions: int = NUM_DISTORTIONS) -> tuple[np.ndarray, np.ndarray]:
    """The first training images, ``(N, H, W, C)`` in [0, 1], and ``(K, N, H, W, C)`` copies
    under the run's `Distortion` (`jaxconv.runs.make_distortion`), copy ``k`` with
    key ``fold_in(key(seed), k)``."""
    batch = next(iter(_dataset_batches(run, run.dataset.train_split, num_images, cache=False)))
    images = batch["image"][batch["mask"]].astype(np.float32) / 255.0
    distortion = runs.make_distortion(run.config)
    keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(run.config.get("seed", 0)),
                                                    np.arange(num_distortions))
    copies = jax.jit(jax.vmap(lambda k: data.distort(k, images, distortion)))(keys)
    return images, np.asarray(copies)


def _history(workdir: str, seed_index: int = 0) -> list[dict[str, Any]]:
    """``metrics.json``'s history; a run of several seeds: replica `seed_index`'s values
    (its ``<name>_seeds`` entries) under the 1-seed names."""
    path = os.path.join(workdir, METRICS_FILE)
    try:
        history = json.loads(run_files.read_text(path)).get("history", [])
    except (FileNotFoundError, IsADirectoryError):
        return []
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{path} is not a valid metrics file ({err})") from err
    return [{**r, **{k.removesuffix(SEEDS_SUFFIX): v[seed_index] for k, v in r.items()
                     if k.endswith(SEEDS_SUFFIX) and isinstance(v, list)}} for r in history]


def _skip(what: str, why: str) -> None:
    _log.warning("jaxconv.plots: no %s: %s", what, why)


def write_all(workdir: str | os.PathLike, *, params: Any = None,
              seed_index: int = 0) -> list[str]:
    """Writes the module docstring's figures to ``workdir/plots/``; returns the PNG paths.

    Only this process reads and computes (no collectives): in a multi-process run, call it
    on one process.

    Args:
      workdir: a directory ``train.py`` wrote (``run.json``, ``checkpoints/``, and
        ``metrics.json`` once training finished).
      params: the run's trained parameters (the ``params`` of the `TrainState` that
        ``train_and_evaluate`` returns; replicated arrays: this process's copy is used, no
        checkpoint read, no collective); None loads the newest checkpoint's.
      seed_index: a run of several seeds (``config.num_seeds``): the replica to draw (its
        parameters and its curves); its figures go to ``plots/seed_index<k>/`` for k > 0.

    Returns:
      The paths written, in the module docstring's order (skipped figures are logged).

    Raises:
      FileNotFoundError: no ``run.json`` or no complete checkpoint in `workdir`.
      ValueError: an unreadable checkpoint, one that does not fit the run's model, or a
        `seed_index` the run does not have.
      OSError: ``workdir/plots`` cannot be made a writable directory (checked before any
        work: a read-only workdir, a file named ``plots``), or a figure cannot be written.

    In a bucket (``gs://...``) the figures are drawn into a local temporary directory, then
    each PNG is uploaded to ``workdir/plots/`` (one atomic object write each).
    """
    workdir = os.fspath(workdir)
    out = os.path.join(workdir, PLOTS_DIR, *([f"seed_index{seed_index}"] if seed_index else []))
    # A workdir train.py wrote, and a replica it has, before anything is created in it.
    runs.check_seed_index(runs.read_run_info(workdir), seed_index, workdir)
    if not run_files.is_url(workdir):
        if os.path.lexists(out) and not os.path.isdir(out):
            raise NotADirectoryError(20, "a file is in the way of the plots directory", out)
        os.makedirs(out, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable", out)
        return _draw(workdir, out, params, seed_index)
    staging = tempfile.mkdtemp(prefix="jaxconv-plots-")
    try:
        drawn = _draw(workdir, staging, params, seed_index)
        run_files.upload_dir(staging, out)
        return [os.path.join(out, os.path.relpath(p, staging)) for p in drawn]
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _draw(workdir: str, out: str, params: Any, seed_index: int) -> list[str]:
    """`write_all`'s figures, drawn into local directory `out`; returns the PNG paths."""
    model, run = runs.load_trained_model(workdir, params=params, seed_index=seed_index)
    written = []
    kernel = first_conv_kernel(model)
    if kernel is None:
        _skip("filters.png", "the first layer is not a convolution")
    else:
        written.append(figures.plot_filters(kernel[1], os.path.join(out, "filters.png"),
                                            title=f"first-layer filters ({kernel[0]})"))
    history = _history(workdir, seed_index)
    if history:
        written.append(figures.plot_curves(history, os.path.join(out, "curves.png")))
    else:
        _skip("curves.png", f"no history in {os.path.join(workdir, METRICS_FILE)}")
    batch_size = run.config.get("eval_batch_size", 64)
    predictor = predictor_lib.Predictor.for_run(model, run, batch_size=batch_size)
    try:
        labels, predicted, image = predict_test_split(predictor, run)
        originals, distorted = distorted_samples(run)
    except FileNotFoundError as err:  # The dataset is not where the run read it.
        _skip("confusion, distortion or feature-map figures", str(err))
        return written
    info = run.dataset
    matrix = figures.confusion_matrix(labels, predicted, info.num_classes)
    written.append(figures.plot_confusion(matrix, os.path.join(out, "confusion.png"),
                                          info.class_names))
    written.append(figures.plot_distortions(originals, distorted,
                                            os.path.join(out, "distortions.png")))
    maps = feature_maps(model, image, info.mean, info.std)
    written.append(figures.plot_feature_maps(maps, os.path.join(out, "feature_maps.png")))
    return written
