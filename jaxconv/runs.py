"""Run records: what a training run leaves in its workdir, and how to read it back.

A workdir holds ``run.json`` (`write_run_info`, written by the trainer before the first
step), ``checkpoints/<step>/`` (`CHECKPOINTS_DIR`; the train state in the `STATE_ITEM`
item) and, once training finished, ``metrics.json`` (`METRICS_FILE`).

``run.json`` holds the model name, the model's keyword arguments as built (the
dataset-derived ones filled in), the dataset's `DatasetInfo` (class names, image shape,
normalization mean/std) and the whole config. With the newest checkpoint's parameters that
is everything `load_trained_model` needs: the trainer (resuming), `jaxconv.predict`
(``Predictor.from_checkpoint``), `jaxconv.plots` and `jaxconv.transfer` (starting from a
trained run) all read runs through this module. `data_dir`, `make_crop` and
`make_distortion` turn a run's config into the typed arguments of its input pipeline, the
same for the trainer and for a reader of a finished run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxconv.data import DATASETS, DatasetInfo, Distortion, ResizeCrop
from jaxconv.models import create_model

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM = "state"  # The checkpoint item holding the train state (params, ...).


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """The contents of ``run.json``.

    Attributes:
      model: key of `jaxconv.models.MODELS`.
      model_kwargs: the model's keyword arguments (JSON lists turned back into tuples).
      dataset: the training dataset's `DatasetInfo`.
      config: the run's config as a plain dict.
    """

    model: str
    model_kwargs: dict[str, Any]
    dataset: DatasetInfo
    config: dict[str, Any]


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def write_run_info(workdir: str, *, model: str, model_kwargs: dict[str, Any],
                   dataset: DatasetInfo, config: dict[str, Any]) -> str:
    """Writes ``workdir/run.json`` atomically (temp file + rename); returns its path."""
    record = {"model": model, "model_kwargs": model_kwargs,
              "dataset": dataclasses.asdict(dataset), "config": config}
    path = os.path.join(workdir, RUN_FILE)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def read_run_info(workdir: str | os.PathLike) -> RunInfo:
    """Reads ``workdir/run.json``.

    Raises:
      FileNotFoundError: `workdir` has no ``run.json`` (not a jaxconv training workdir).
      ValueError: the file is not valid JSON of the expected shape.
    """
    path = os.path.join(os.fspath(workdir), RUN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {os.fspath(workdir)!r} is not a jaxconv "
                                f"training workdir (train.py writes run.json there)")
    try:
        with open(path) as f:
            record = json.load(f)
        dataset = DatasetInfo(**_tuples(record["dataset"]))
        return RunInfo(record["model"], _tuples(record["model_kwargs"]), dataset,
                       record["config"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a valid run.json ({type(err).__name__}: {err})") from err


def _is_step_dir(path: str) -> bool:
    return os.path.isdir(os.path.join(path, STATE_ITEM))


def checkpoint_step_dir(path: str | os.PathLike) -> str:
    """The newest complete checkpoint step directory under `path`.

    Args:
      path: a training workdir, its ``checkpoints`` directory, or one step directory
        (``.../checkpoints/600``).

    Raises:
      FileNotFoundError: no complete checkpoint there (the message names the path).
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if _is_step_dir(path):
        return path
    root = os.path.join(path, CHECKPOINTS_DIR)
    root = root if os.path.isdir(root) else path
    steps = []
    if os.path.isdir(root):
        steps = [int(d) for d in os.listdir(root) if d.isdigit() and _is_step_dir(
            os.path.join(root, d)) and ocp.step.is_checkpoint_finalized(os.path.join(root, d))]
    if not steps:
        raise FileNotFoundError(f"no complete checkpoint in {path} (expected a workdir, its "
                                f"checkpoints/ directory or a checkpoints/<step> directory)")
    return os.path.join(root, str(max(steps)))


def restore_params(path: str | os.PathLike) -> dict[str, Any]:
    """The parameters (nested dict of numpy arrays) of the newest checkpoint under `path`.

    Args:
      path: as for `checkpoint_step_dir`.

    Raises:
      FileNotFoundError: no complete checkpoint.
      ValueError: the checkpoint cannot be read (truncated or corrupt files); names the path.
    """
    step_dir = checkpoint_step_dir(path)
    state_dir = os.path.join(step_dir, STATE_ITEM)
    try:
        state = ocp.StandardCheckpointer().restore(state_dir)
    except Exception as err:  # noqa: BLE001 - Orbax/TensorStore raise many types.
        raise ValueError(f"cannot read checkpoint {state_dir}: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"{state_dir} holds no 'params' (not a jaxconv train state)")
    return jax.tree.map(np.asarray, state["params"])


def _local_copy(x: Any) -> np.ndarray:
    """This process's copy of a replicated array (a host array is returned as is)."""
    return np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)


def load_trained_model(workdir: str | os.PathLike, *, params: Any = None,
                       seed: int = 0, dtype: Any = None) -> tuple[nnx.Module, RunInfo]:
    """The model of a training workdir with trained parameters, in eval mode.

    Args:
      workdir: a directory the trainer wrote (``run.json`` + ``checkpoints/``).
      params: the parameters to use (nested dict, e.g. the ``params`` of the `TrainState`
        the trainer returned; replicated arrays: this process's copy is used, with no
        collective); None reads the newest checkpoint's (`restore_params`).
      seed: seeds the model's RNG streams (dropout's, unused in eval mode); the model is
        built abstractly (`nnx.eval_shape`: no initializer runs) and filled with `params`.
      dtype: compute dtype of the model (e.g. ``"float32"`` to evaluate a bfloat16 run in
        float32); None: the run's (``config.compute_dtype``, recorded as the model's
        ``dtype`` argument; float32 for runs that predate it). Parameters stay float32.

    Returns:
      ``(model, run_info)``.

    Raises:
      FileNotFoundError: no ``run.json``, or (`params` None) no complete checkpoint.
      ValueError: unreadable checkpoint, or parameters that do not fit the model.
    """
    info = read_run_info(workdir)
    kwargs = dict(info.model_kwargs)
    if dtype is not None:
        kwargs["dtype"] = dtype
    # Shapes only (no initializer runs or compiles); the RNG streams (dropout's, unused in
    # eval mode) get concrete keys, the parameters are filled in below.
    model = nnx.eval_shape(lambda: create_model(info.model, rngs=nnx.Rngs(seed), **kwargs))
    nnx.reseed(model, default=seed)
    if params is None:
        params, source = restore_params(workdir), f"the checkpoint in {os.fspath(workdir)}"
    else:
        params, source = jax.tree.map(_local_copy, params), "the given parameters"
    state = nnx.state(model, nnx.Param)
    expected = jax.tree.map(lambda a: tuple(a.shape), nnx.to_pure_dict(state))
    got = jax.tree.map(lambda a: tuple(a.shape), params)
    if expected != got:
        raise ValueError(f"{source} does not fit model {info.model!r} {info.model_kwargs}: "
                         f"shapes {got} vs {expected}")
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    unfilled = [jax.tree_util.keystr(path) for path, leaf in jax.tree_util.tree_leaves_with_path(
        nnx.to_pure_dict(nnx.state(model))) if isinstance(leaf, jax.ShapeDtypeStruct)]
    if unfilled:  # A model state neither a parameter nor an RNG stream: not checkpointed.
        raise ValueError(f"model {info.model!r} has state a checkpoint does not hold: {unfilled}")
    model.eval()
    return model, info


def data_dir(config: Any) -> str:
    """``config.data_dir`` with ``~`` expanded (``gs://`` paths unchanged).

    Args:
      config: a run's config (a ConfigDict shaped like ``configs/default.py``, or the plain
        dict ``run.json`` holds); likewise for `make_crop` and `make_distortion`.
    """
    path = config["data_dir"]
    return path if "://" in path else os.path.expanduser(path)


def make_crop(config: Any) -> ResizeCrop | None:
    """The host resize/crop of ``config.dataset``'s images, or None for fixed-size datasets.

    Variable-size datasets (imagenet2012) are cropped to ``config.image_size`` (0: the
    dataset's default) after resizing the shorter side to ``config.crop_resize_size`` (0:
    ``size * 256 / 224``); training uses ``config.train_crop``, eval the central crop.
    """
    default_size = DATASETS[config["dataset"]].default_image_size
    if default_size is None:
        return None
    return ResizeCrop(image_size=config["image_size"] or default_size,
                      train_mode=config["train_crop"],
                      resize_size=config["crop_resize_size"] or None)


def make_distortion(config: Any) -> Distortion:
    """The training `Distortion` of ``config.distortion``.

    Raises:
      ValueError: a distortion value is out of range (``config.distortion: <why>``).
    """
    d = dict(config["distortion"])
    d["scale"] = tuple(float(s) for s in d["scale"])
    try:
        return Distortion(**d)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config.distortion: {err}") from err
