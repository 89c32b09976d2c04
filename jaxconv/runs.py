"""Run records: what a training run leaves in its workdir, and how to read it back.

A workdir holds ``run.json`` (`write_run_info`, written by the trainer before the first
step), ``checkpoints/<step>/`` (`CHECKPOINTS_DIR`; the train state in the `STATE_ITEM`
item) and, once training finished, ``metrics.json`` (`METRICS_FILE`).

``run.json`` holds the model name, the model's keyword arguments as built (the
dataset-derived ones filled in), the dataset's `DatasetInfo` (class names, image shape,
normalization mean/std), the whole config the run started with and ``resumes``: one entry
per resumed start (`append_resume`: time, step, the bookkeeping keys changed), so that the
record is never rewritten. `read_run_info` gives the config in force now (the started one
with each resume's changes applied). With the newest readable checkpoint's parameters that
is everything `load_trained_model` needs: the trainer (resuming), `jaxconv.predict`
(``Predictor.from_checkpoint``), `jaxconv.plots` and `jaxconv.transfer` (starting from a
trained run) all read runs through this module. `data_dir`, `make_crop` and
`make_distortion` turn a run's config into the typed arguments of its input pipeline, the
same for the trainer and for a reader of a finished run. `read_metrics` reads
``metrics.json`` or says why it cannot. Readers fall back like the trainer (`read_newest`):
an unreadable newest checkpoint is skipped with a warning for an older one.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxconv import run_files
from jaxconv.data import DATASETS, DatasetInfo, Distortion, ResizeCrop
from jaxconv.models import create_model

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
SEEDS_SUFFIX = "_seeds"  # History key of per-seed values (num_seeds > 1): "test_loss_seeds".
CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM = "state"  # The checkpoint item holding the train state (params, ...).

RELISTS = 3  # read_newest: times the steps are listed again when a trainer deletes one.

_log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """The contents of ``run.json``.

    Attributes:
      model: key of `jaxconv.models.MODELS`.
      model_kwargs: the model's keyword arguments (JSON lists turned back into tuples).
      dataset: the training dataset's `DatasetInfo`.
      config: the run's config as a plain dict, as in force now: the config the run started
        with, with the changes of each resume applied.
      resumes: ``run.json``'s resume entries, oldest first (`append_resume`).
      started_config: the config the run started with.
    """

    model: str
    model_kwargs: dict[str, Any]
    dataset: DatasetInfo
    config: dict[str, Any]
    resumes: tuple[dict[str, Any], ...] = ()
    started_config: dict[str, Any] | None = None


def _tuples(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return ({k: _tuples(v) for k, v in value.items()} if isinstance(value, dict) else
                tuple(_tuples(v) for v in value))
    return value


def _write_json(path: str | os.PathLike, record: Any) -> str:
    """Writes `record` to `path` atomically (`run_files.write_atomic`)."""
    return run_files.write_atomic(path, json.dumps(record, indent=2, sort_keys=True))


def write_run_info(workdir: str, *, model: str, model_kwargs: dict[str, Any],
                   dataset: DatasetInfo, config: dict[str, Any]) -> str:
    """Writes a new run's ``workdir/run.json`` atomically (no resumes yet); returns its path."""
    record = {"model": model, "model_kwargs": model_kwargs,
              "dataset": dataclasses.asdict(dataset), "config": config, "resumes": []}
    return _write_json(run_files.path(workdir) / RUN_FILE, record)


def append_resume(workdir: str, entry: dict[str, Any]) -> str:
    """Appends `entry` to ``run.json``'s ``resumes`` (atomically); the rest is kept as is.

    Args:
      workdir: the run's workdir.
      entry: JSON-serializable; the trainer writes ``time``, ``step`` (resumed from) and
        ``changed`` (``{dotted key: [old, new]}``: the new values are in force from then on).

    Raises:
      ValueError: ``run.json`` is not a JSON object.
    """
    path = run_files.path(workdir) / RUN_FILE
    record = json.loads(run_files.read_text(path))
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a valid run.json (not a JSON object)")
    record["resumes"] = [*record.get("resumes", []), entry]
    return _write_json(path, record)


def _config_now(started: dict[str, Any], resumes: list[dict[str, Any]]) -> dict[str, Any]:
    """`started` with each resume's ``changed`` new values (dotted keys) applied, in order."""
    config = copy.deepcopy(started)
    for entry in resumes:
        for key, (_, new) in entry.get("changed", {}).items():
            *parents, last = key.split(".")
            node = config
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = new
    return config


def read_run_info(workdir: str | os.PathLike) -> RunInfo:
    """Reads ``workdir/run.json``.

    Raises:
      FileNotFoundError: `workdir` has no ``run.json`` (not a jaxconv training workdir).
      ValueError: the file is not valid JSON of the expected shape.
    """
    path = run_files.path(workdir) / RUN_FILE
    try:
        text = run_files.read_text(path)
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"{path} not found: {os.fspath(workdir)!r} is not a jaxconv "
                                f"training workdir (train.py writes run.json there)") from None
    try:
        record = json.loads(text)
        dataset = DatasetInfo(**_tuples(record["dataset"]))
        started, resumes = record["config"], record.get("resumes", [])
        if not isinstance(started, dict) or not isinstance(resumes, list):
            raise TypeError("config must be an object and resumes a list")
        return RunInfo(record["model"], _tuples(record["model_kwargs"]), dataset,
                       _config_now(started, resumes), tuple(resumes), started)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a valid run.json ({type(err).__name__}: {err})") from err


def _is_step_dir(path: str | os.PathLike) -> bool:
    return run_files.is_dir(run_files.path(path) / STATE_ITEM)


def _is_complete(path: str | os.PathLike) -> bool:
    """A step directory whose write finished: locally Orbax renamed its temporary directory;
    on a bucket (no rename) Orbax wrote ``commit_success.txt`` into it last."""
    try:
        return _is_step_dir(path) and ocp.step.is_path_finalized(run_files.path(path))
    except OSError:  # Deleted while we looked.
        return False


def complete_steps(directory: str | os.PathLike) -> list[int]:
    """The steps of the complete checkpoints in a ``checkpoints`` directory, ascending.

    Unfinished writes (``<step>.orbax-checkpoint-tmp``), steps set aside as unreadable and
    directories without a state item are not counted; a missing directory has none.
    """
    directory = run_files.path(directory)
    try:
        names = run_files.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(d) for d in names if d.isdigit() and _is_complete(directory / d))


def _checkpoint_root(path: str) -> str:
    root = os.path.join(path, CHECKPOINTS_DIR)
    return root if run_files.is_dir(root) else path


_NO_CHECKPOINT = ("no complete checkpoint in {} (expected a workdir, its checkpoints/ "
                  "directory or a checkpoints/<step> directory)")


def read_newest(path: str | os.PathLike, read: Callable[[str], Any]) -> Any:
    """``read(step_dir)`` of the newest complete checkpoint under `path` that `read` can read.

    Like the trainer: a step that `read` fails on (``ValueError``) is skipped with a warning
    naming it, for the next older one. A step deleted while it is read (a trainer removing
    its old checkpoints after saving a newer one) is no failure: when the step is gone or the
    complete steps differ from the listing the read started from, they are listed again (at
    most `RELISTS` times) and the newest is read. Nothing is moved or deleted (a reader never
    changes the workdir).

    Args:
      path: a training workdir, its ``checkpoints`` directory, or one step directory
        (``.../checkpoints/600``, read alone: no fallback).
      read: reads one step directory; raises ``ValueError`` if it cannot.

    Raises:
      FileNotFoundError: no complete checkpoint.
      ValueError: no step can be read (the message names each step and why).
    """
    path = os.fspath(run_files.path(path))
    if _is_step_dir(path):
        return read(path)
    root = _checkpoint_root(path)
    problems: dict[int, str] = {}
    listed = complete_steps(root)
    relists, steps = 0, listed[::-1]
    while steps:
        step = steps.pop(0)
        step_dir = os.path.join(root, str(step))
        try:
            return read(step_dir)
        except ValueError as err:
            now = complete_steps(root)
            moved_on = now != listed or not _is_complete(step_dir)
            if moved_on and relists < RELISTS:  # The trainer deleted it while we read.
                relists, listed = relists + 1, now
                steps = [s for s in now[::-1] if s not in problems]
                continue
            problems[step] = str(err)
            if steps:
                _log.warning("%s: using the older checkpoint %s", err,
                             os.path.join(root, str(steps[0])))
    if problems:
        raise ValueError(f"no readable checkpoint in {root}: "
                         + "; ".join(f"step {s}: {p}" for s, p in problems.items()))
    raise FileNotFoundError(_NO_CHECKPOINT.format(path))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def read_params(step_dir: str) -> dict[str, Any]:
    """The parameters (nested dict of numpy arrays) of one checkpoint step directory.

    Raises:
      ValueError: the checkpoint cannot be read (truncated, corrupt or missing files, not a
        jaxconv train state); names the path.
    """
    state_dir = run_files.path(step_dir) / STATE_ITEM
    try:
        state = ocp.StandardCheckpointer().restore(state_dir)
    except Exception as err:  # noqa: BLE001 - Orbax/TensorStore raise many types.
        raise ValueError(f"cannot read checkpoint {state_dir}: {_first_line(err)}") from err
    if not isinstance(state, dict) or "params" not in state:
        raise ValueError(f"{state_dir} holds no 'params' (not a jaxconv train state)")
    return jax.tree.map(np.asarray, state["params"])


def restore_params(path: str | os.PathLike) -> dict[str, Any]:
    """The parameters (nested dict of numpy arrays) of the newest readable checkpoint.

    Args:
      path: as for `read_newest` (an unreadable newest step falls back to an older one with
        a warning).

    Raises:
      FileNotFoundError: no complete checkpoint.
      ValueError: no checkpoint can be read (truncated or corrupt files); names the paths.
    """
    return read_newest(path, read_params)


def read_metrics(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """``workdir/metrics.json`` (a finished run's figures and ``history``), or None if absent.

    Raises:
      ValueError: the file exists but is not the expected object (not JSON, not an object,
        a ``history`` that is not a list of records with a ``step``, no integer ``step``);
        the message names the path and the problem.
    """
    path = run_files.path(workdir) / METRICS_FILE
    try:
        record = json.loads(run_files.read_text(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read as JSON ({_first_line(err)})") from err
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a metrics file: a JSON {type(record).__name__}, not "
                         f"an object")
    history = record.get("history", [])
    if not isinstance(history, list) or not all(
            isinstance(r, dict) and type(r.get("step")) is int for r in history):
        raise ValueError(f"{path} is not a metrics file: its history is not a list of "
                         f"records with an integer step")
    if type(record.get("step")) is not int:
        raise ValueError(f"{path} is not a metrics file: it has no integer step")
    return record


def _local_copy(x: Any) -> np.ndarray:
    """This process's copy of a replicated array (a host array is returned as is)."""
    return np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)


def check_seed_index(info: RunInfo, seed_index: int, workdir: str | os.PathLike) -> int:
    """The run's ``config.num_seeds``; raises ``ValueError`` if `seed_index` is not below it."""
    k = info.config.get("num_seeds", 1)  # Runs that predate the key trained one seed.
    if not 0 <= seed_index < k:
        valid = "0 (it trained one seed)" if k == 1 else f"0..{k - 1} (config.num_seeds={k})"
        raise ValueError(f"seed_index={seed_index} is out of range for the run in "
                         f"{os.fspath(workdir)}: use {valid}")
    return k


def load_trained_model(workdir: str | os.PathLike, *, params: Any = None, seed: int = 0,
                       dtype: Any = None, seed_index: int = 0) -> tuple[nnx.Module, RunInfo]:
    """``(model, run_info)``: the model of a training workdir with trained parameters, in
    eval mode.

    Args:
      workdir: a directory the trainer wrote (``run.json`` + ``checkpoints/``).
      params: the parameters to use (nested dict, e.g. the ``params`` of the `TrainState`
        the trainer returned; replicated arrays: this process's copy is used, with no
        collective); None reads the newest checkpoint's (`restore_params`).
      seed: seeds the model's RNG streams (dropout's, unused in eval mode).
      dtype: compute dtype of the model (e.g. ``"float32"`` to evaluate a bfloat16 run in
        float32); None: the run's (``config.compute_dtype``, recorded as the model's
        ``dtype`` argument; float32 for runs that predate it). Parameters stay float32.
      seed_index: the replica of a run of ``config.num_seeds`` > 1 (its checkpoint and
        `params` hold them stacked): replica k trained with seed ``config.seed + k``.

    Raises:
      FileNotFoundError: no ``run.json``, or (`params` None) no complete checkpoint.
      ValueError: unreadable checkpoint, misfit parameters, or `seed_index` out of range.
    """
    info = read_run_info(workdir)
    k = check_seed_index(info, seed_index, workdir)
    kwargs = {**info.model_kwargs, **({} if dtype is None else {"dtype": dtype})}
    # Shapes only (no initializer runs); RNG streams get concrete keys, params come below.
    model = nnx.eval_shape(lambda: create_model(info.model, rngs=nnx.Rngs(seed), **kwargs))
    nnx.reseed(model, default=seed)
    if params is None:
        params, source = restore_params(workdir), f"the checkpoint in {os.fspath(workdir)}"
    else:
        params, source = jax.tree.map(_local_copy, params), "the given parameters"
    if k > 1:  # The replicas' parameters are stacked: take one.
        params = jax.tree.map(lambda a: a[seed_index], params)
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
