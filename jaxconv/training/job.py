"""`setup(config)`: everything a training run needs, built from its config, nothing trained.

`build_job` turns a checked config into a `Job`: the dataset (prepared if needed), the
model (with ``config.init``'s pretrained parameters), the optimizer and its schedule (with
``config.freeze``), the parallel strategy, the pure steps with their fixed dependencies
bound and compiled, and the host iterators (each process reads only its shard). `setup`
checks the config first (`validate_config`); `train_and_evaluate` checks it once itself,
before it writes to the workdir, and calls `build_job`. `evaluate` runs a job's eval step
over the whole test split.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from jaxconv import data, runs, runtime
from jaxconv.models import count_params, create_model
from jaxconv.training import config as config_lib
from jaxconv.training import finetune, memory, parallel, replicas, steps
from jaxconv.training import optimizer as optimizer_lib
from jaxconv.training.state import ModelDef, TrainState, create_train_state, root_keys, split_model


@dataclasses.dataclass
class Job:
    """What `build_job` builds from a config: everything the loop needs, nothing trained yet.

    Attributes:
      config: the run's config.
      info: the dataset's `DatasetInfo`.
      par: the parallel strategy (`jaxconv.training.parallel`).
      model_def: the split model.
      state: the `TrainState` at step 0, host/default-device arrays (``config.num_seeds`` > 1:
        the replicas' states stacked, `jaxconv.training.replicas`).
      train_fn: compiled ``(state, batch) -> (state, metrics)``.
      eval_fn: compiled ``(state, batch) -> metrics``.
      train_it: this process's training iterator (checkpointable; a
        `replicas.ReplicaIterator` of stacked batches for several seeds).
      eval_ds: the test split in batches.
      total_steps: training length.
      num_params: the model's parameter count.
      model_kwargs: the model's keyword arguments as built (recorded in ``run.json``).
      init_report: the `jaxconv.transfer.LoadReport` when ``config.init`` was loaded.
    """

    config: Any
    info: data.DatasetInfo
    par: parallel.JitParallel | parallel.PmapParallel
    model_def: ModelDef
    state: TrainState
    train_fn: Callable
    eval_fn: Callable
    train_it: Any
    eval_ds: data.EvalBatches
    total_steps: int
    num_params: int
    model_kwargs: dict[str, Any]
    init_report: Any = None

    def put_train_batch(self, batch: dict[str, np.ndarray]) -> Any:
        """A batch of `train_it` in the device layout (several seeds: sharded along the
        batch axis, after the replica axis)."""
        if self.config.num_seeds == 1:
            return self.par.put_batch(batch)
        return self.par.put_batch(batch, batch_axis=1)


def build_step_fns(par, model_def: ModelDef, tx, schedule, distortion: data.Distortion,
                   info: data.DatasetInfo, *, wrap: Callable | None = None,
                   num_seeds: int = 1):
    """``(train_fn, eval_fn)``: the pure steps with their dependencies bound, compiled by `par`.

    Args:
      par: a `parallel` strategy.
      model_def: the split model.
      tx: the optimizer.
      schedule: its learning-rate schedule (`make_optimizer` returns both).
      distortion: training image distortion.
      info: the dataset (mean/std for normalization).
      wrap: applied to each bound pure function before compiling (tests pass
        ``chex.assert_max_traces``).
      num_seeds: > 1: the steps are vectorized over stacked states (`replicas.vmap_steps`).
    """
    # Closures rather than functools.partial so that `wrap` (chex) can read their source.
    def train(state, batch):
        return steps.train_step(state, batch, model=model_def, tx=tx, schedule=schedule,
                                distortion=distortion, mean=info.mean, std=info.std,
                                axis_name=par.axis_name)

    def evaluate(state, batch):
        return steps.eval_step(state, batch, model=model_def, mean=info.mean, std=info.std,
                               axis_name=par.axis_name)

    if wrap is not None:
        train, evaluate = wrap(train), wrap(evaluate)
    if num_seeds > 1:
        train, evaluate = replicas.vmap_steps(train, evaluate)
    return par.compile_train(train), par.compile_eval(evaluate)


def _build_model(config, kwargs: dict[str, Any]) -> nnx.Module:
    params_key, dropout_key, _ = root_keys(config.seed)

    def build():
        return create_model(config.model, rngs=nnx.Rngs(params=params_key, dropout=dropout_key),
                            **kwargs)

    try:
        # One compiled program for all initializers: eager init compiles one per op (seconds).
        return nnx.jit(build)()
    except ValueError as err:
        raise config_lib.ConfigError(
            f"config.model={config.model!r} with {dict(kwargs)}: {err}"
        ) from err


class DatasetCorruptError(RuntimeError):
    """The prepared dataset's files cannot be read (one line: the files, how to rebuild)."""


def corrupt_dataset_error(config, err: BaseException) -> DatasetCorruptError | None:
    """A `DatasetCorruptError` naming the dataset's files when `err` (or its cause) is
    array_record's "Corrupted Riegeli/records file"; None for any other error."""
    while err is not None and "Riegeli" not in str(err):
        err = err.__cause__ or err.__context__
    if err is None:
        return None
    root = os.path.join(runs.data_dir(config), config.dataset)
    files = sorted(glob.glob(os.path.join(root, "*", "*.array_record*")))
    rebuild = (f"delete {root} and run again (it is rebuilt offline)"
               if data.DATASETS[config.dataset].builder_cls is not None else
               f"delete {root} and prepare it again: python -m jaxconv.data.prepare "
               f"--dataset {config.dataset} --data_dir {runs.data_dir(config)}")
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return DatasetCorruptError(
        f"the {config.dataset} dataset's files are corrupt ({first[:160]}); files: "
        f"{', '.join(files) or root}: {rebuild}")


def _check_fits(config, kwargs: dict[str, Any], info: data.DatasetInfo,
                device_count: int) -> None:
    """The model takes the dataset's images, the distortions fit them, and one train step
    fits a device's memory (`jaxconv.training.memory`); all from shapes, nothing compiled.

    Raises:
      ConfigError: names the keys and the figures.
    """
    h, w, _ = info.image_shape
    translate = config.distortion.translate
    if translate >= min(h, w):
        raise config_lib.ConfigError(
            f"config.distortion.translate={translate!r} shifts the {h}x{w} images out of the "
            f"frame; use a shift below {min(h, w)} pixels")
    try:
        abstract = nnx.eval_shape(lambda: create_model(config.model, rngs=nnx.Rngs(0),
                                                       **kwargs))
        estimate = memory.estimate_bytes(
            abstract, tuple(info.image_shape), batch_per_device=config.batch_size // device_count,
            crop_padding=config.distortion.crop_padding,
            compute_bytes=np.dtype(jnp.dtype(config.compute_dtype)).itemsize,
            num_params=count_params(abstract))
    except (ValueError, TypeError) as err:
        raise config_lib.ConfigError(
            f"config.model={config.model!r} with config.model_kwargs "
            f"{dict(config.get('model_kwargs', {}))} does not fit the {config.dataset} images "
            f"{tuple(info.image_shape)}: {str(err).splitlines()[0]}") from err
    # K seeds: K copies of the parameters, optimizer state and activations.
    memory.check_fits(estimate * config.num_seeds, memory.device_memory_bytes(),
                      batch_size=config.batch_size, device_count=device_count)


def build_job(config, *, wrap: Callable | None = None, devices: list | None = None,
              pretrained: bool = True) -> Job:
    """Builds the job of an already checked config (`validate_config`).

    Args:
      config: a ConfigDict shaped like ``configs/default.py``, checked.
      wrap: see `build_step_fns`.
      devices: the devices to train on (this process's, for pmap); None: all of them.
      pretrained: load ``config.init``'s parameters (False when a checkpoint of this run
        will be restored over them anyway).

    Raises:
      ConfigError: a batch size that does not split over the devices, a model that
        rejects its arguments, or an ``init`` / ``freeze`` that does not fit the model.
      FileNotFoundError: the dataset is not prepared in ``config.data_dir``.
    """
    par = parallel.create(config.parallelism, devices)
    config_lib.check_batch_split(config, par.device_count)
    advice = runtime.bf16_advice(None, config.compute_dtype, jax.default_backend())
    if advice and jax.process_index() == 0:  # bfloat16 that cannot pay on this CPU.
        logging.warning("%s", advice)
    data_dir, crop = runs.data_dir(config), runs.make_crop(config)
    classes = tuple(config.classes) or None
    try:
        info = data.ensure_prepared(config.dataset, data_dir,
                                    image_size=crop and crop.image_size, classes=classes)
    except ValueError as err:  # Labels or sizes the dataset does not have.
        raise config_lib.ConfigError(f"config.dataset={config.dataset!r} with "
                                     f"config.classes={tuple(config.classes)}: {err}") from err
    total = config_lib.total_steps(config, info.num_train)
    kwargs = config_lib.model_kwargs(config, info)
    _check_fits(config, kwargs, info, par.device_count)
    # One model, state and iterator per seed (the 1-seed run: `config` itself). With
    # config.init every replica starts from the same loaded parameters.
    configs = replicas.replica_configs(config)
    models = [_build_model(c, kwargs) for c in configs]
    reports = [finetune.load_pretrained(m, config) if pretrained else None for m in models]
    tx, schedule = optimizer_lib.make_optimizer(
        config.optimizer, steps_per_epoch=config_lib.steps_per_epoch(config, info.num_train),
        total_steps=total)
    tx = finetune.freeze_optimizer(tx, models[0], config)
    splits = [split_model(m) for m in models]
    model_def = splits[0][0]  # The graphs are the same; the dropout streams are reseeded.
    states = [create_train_state(params, tx, root_keys(c.seed)[2])
              for (_, params), c in zip(splits, configs)]
    train_fn, eval_fn = build_step_fns(par, model_def, tx, schedule,
                                       runs.make_distortion(config), info, wrap=wrap,
                                       num_seeds=config.num_seeds)
    iterators = [data.train_iterator(
        config.dataset, data_dir, global_batch_size=config.batch_size, seed=c.seed,
        worker_count=config.worker_count, crop=crop, classes=classes,
    ) for c in configs]
    state = states[0] if len(states) == 1 else replicas.stack(states)
    train_it = iterators[0] if len(iterators) == 1 else replicas.ReplicaIterator(iterators)
    eval_ds = data.eval_batches(config.dataset, data_dir, batch_size=config.eval_batch_size,
                                crop=crop, classes=classes)
    return Job(config, info, par, model_def, state, train_fn, eval_fn, train_it, eval_ds,
               total, count_params(models[0]), kwargs, reports[0])


def setup(config, *, wrap: Callable | None = None, devices: list | None = None,
          pretrained: bool = True) -> Job:
    """Checks `config` (`validate_config`) and builds its job (`build_job`).

    Args:
      config: a ConfigDict shaped like ``configs/default.py``.
      wrap, devices, pretrained: as for `build_job`.

    Raises:
      ConfigError: a bad config value (one-line message naming it).
      FileNotFoundError: the dataset is not prepared in ``config.data_dir``.
    """
    config_lib.validate_config(config)
    return build_job(config, wrap=wrap, devices=devices, pretrained=pretrained)


def evaluate(job: Job, dev_state: Any) -> dict[str, float]:
    """Loss and accuracy over the whole test split (padded batches, masked).

    Args:
      job: from `setup`.
      dev_state: the state in the device layout (``job.par.put_state``).

    Returns:
      ``{"loss", "accuracy", "count"}`` (`steps.summarize_eval`); several seeds: their means,
      and ``loss_seeds`` / ``accuracy_seeds`` (`replicas.summarize_eval`).
    """
    totals = None
    for batch in job.eval_ds:
        m = job.eval_fn(dev_state, job.par.put_batch(batch))
        totals = m if totals is None else jax.tree.map(jnp.add, totals, m)
    if job.config.num_seeds > 1:
        return replicas.summarize_eval(job.par.to_host(totals))
    return steps.summarize_eval(job.par.to_host(totals))
