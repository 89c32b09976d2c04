"""What a training run leaves in its workdir to rebuild its model: ``run.json`` + checkpoints.

``workdir/run.json`` (written by `train_and_evaluate` before the first step) holds the model
name, the model's keyword arguments as built (the dataset-derived ones filled in), the
dataset's `DatasetInfo` (class names, image shape, normalization mean/std) and the whole
config. With the newest checkpoint's parameters that is everything `load_trained_model`
needs: `jaxconv.predict.Predictor.from_checkpoint`, ``python -m jaxconv.plots`` and
``config.init.checkpoint`` (fine-tuning) all go through it.
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

from jaxconv.data import DatasetInfo
from jaxconv.models import create_model

RUN_FILE = "run.json"
CHECKPOINTS_DIR = "checkpoints"


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
    return os.path.isdir(os.path.join(path, "state"))


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
    state_dir = os.path.join(step_dir, "state")
    try:
        state = ocp.StandardCheckpointer().restore(state_dir)
    except Exception as err:  # noqa: BLE001 - Orbax/TensorStore raise many types.
        raise ValueError(f"cannot read checkpoint {state_dir}: {type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"{state_dir} holds no 'params' (not a jaxconv train state)")
    return jax.tree.map(np.asarray, state["params"])


def load_trained_model(workdir: str | os.PathLike, *, seed: int = 0) -> tuple[nnx.Module, RunInfo]:
    """The model of a training workdir with its newest checkpoint's parameters, in eval mode.

    Args:
      workdir: a directory `train.py` wrote (``run.json`` + ``checkpoints/``).
      seed: initializer seed of the shell the parameters are loaded into (no effect on them).

    Returns:
      ``(model, run_info)``.

    Raises:
      FileNotFoundError: no ``run.json`` or no complete checkpoint.
      ValueError: unreadable checkpoint, or its parameters do not fit the model.
    """
    info = read_run_info(workdir)
    model = create_model(info.model, rngs=nnx.Rngs(seed), **info.model_kwargs)
    params = restore_params(workdir)
    state = nnx.state(model, nnx.Param)
    expected = jax.tree.map(lambda a: tuple(a.shape), nnx.to_pure_dict(state))
    got = jax.tree.map(lambda a: tuple(a.shape), params)
    if expected != got:
        raise ValueError(f"the checkpoint in {os.fspath(workdir)} does not fit model "
                         f"{info.model!r} {info.model_kwargs}: shapes {got} vs {expected}")
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    model.eval()
    return model, info
