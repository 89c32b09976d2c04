"""`train_and_evaluate(config, workdir)`: the whole training job, as ``train.py`` runs it.

1. Check the config (`validate_config`), prepare the dataset, build the model, optimizer and
   the host iterators (each process reads only its shard).
2. Resume from the newest checkpoint in ``workdir/checkpoints`` if there is one (params,
   optimizer state, step, RNG and iterator position: the run continues exactly); an
   unreadable newest step falls back to an older one with a warning, a workdir of another
   model or dataset raises `CheckpointError` (`jaxconv.training.checkpoint`).
3. Train: the host loop only feeds batches and queues jitted steps; every
   ``log_every_steps`` (and before every checkpoint and eval) it fetches the queued metrics
   in one transfer, checks the loss is finite and logs. A non-finite loss stops the run with
   `NonFiniteLossError` naming the step; the bad state is never saved. SIGTERM saves the
   current step and raises `Preempted` (`jaxconv.training.preemption`).
4. Evaluate on the whole test split (every example once) every ``eval_every_steps`` and at
   the end, checkpoint every ``checkpoint_every_steps`` and at the end, write
   ``workdir/metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv import data
from jaxconv.models import count_params, create_model
from jaxconv.training import config as config_lib
from jaxconv.training import finetune, parallel, preemption, steps
from jaxconv.training import optimizer as optimizer_lib
from jaxconv.training.checkpoint import Checkpointer, CheckpointError
from jaxconv.training.logs import METRICS_FILE, MetricLogger, StepMetrics
from jaxconv.training.run_info import RUN_FILE, read_run_info, write_run_info
from jaxconv.training.state import ModelDef, TrainState, create_train_state, root_keys, split_model


@dataclasses.dataclass
class Job:
    """What `setup` builds from a config: everything the loop needs, nothing trained yet."""

    config: Any
    info: data.DatasetInfo
    par: parallel.JitParallel | parallel.PmapParallel
    model_def: ModelDef
    state: TrainState  # At step 0, host/default-device arrays.
    train_fn: Callable
    eval_fn: Callable
    train_it: Any
    eval_ds: data.EvalBatches
    total_steps: int
    num_params: int
    model_kwargs: dict[str, Any]
    init_report: Any = None  # jaxconv.transfer.LoadReport when config.init was loaded.


def build_step_fns(par, model_def: ModelDef, tx, schedule, distortion: data.Distortion,
                   info: data.DatasetInfo, *, wrap: Callable | None = None):
    """``(train_fn, eval_fn)``: the pure steps with their dependencies bound, compiled by `par`.

    Args:
      par: a `parallel` strategy.
      model_def: the split model.
      tx: the optimizer.
      schedule: its learning-rate schedule.
      distortion: training image distortion.
      info: the dataset (mean/std for normalization).
      wrap: applied to each bound pure function before compiling (tests pass
        ``chex.assert_max_traces``).
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
        shown = {k: v for k, v in kwargs.items()}
        raise config_lib.ConfigError(
            f"config.model={config.model!r} with {shown}: {err}"
        ) from err


def setup(config, *, wrap: Callable | None = None, devices: list | None = None,
          pretrained: bool = True) -> Job:
    """Validates `config` and builds the job (dataset, model, optimizer, steps, iterators).

    Args:
      config: a ConfigDict shaped like ``configs/default.py``.
      wrap: see `build_step_fns`.
      devices: the devices to train on (this process's, for pmap); None: all of them.
      pretrained: load ``config.init``'s parameters (False when a checkpoint of this run
        will be restored over them anyway).

    Raises:
      ConfigError: a bad config value (one-line message naming it).
      FileNotFoundError: the dataset is not prepared in ``config.data_dir``.
    """
    config_lib.validate_config(config)
    par = parallel.create(config.parallelism, devices)
    config_lib.validate_config(config, device_count=par.device_count)  # + batch splits.
    data_dir = config_lib.data_dir(config)
    crop = config_lib.make_crop(config)
    classes = tuple(config.classes) or None
    info = data.ensure_prepared(config.dataset, data_dir, image_size=crop and crop.image_size,
                                classes=classes)
    total = config_lib.total_steps(config, info.num_train)
    per_epoch = config_lib.steps_per_epoch(config, info.num_train)
    kwargs = config_lib.model_kwargs(config, info)
    model = _build_model(config, kwargs)
    init_report = finetune.load_pretrained(model, config) if pretrained else None
    tx = optimizer_lib.make_optimizer(config.optimizer, steps_per_epoch=per_epoch,
                                      total_steps=total)
    tx = finetune.freeze_optimizer(tx, model, config)
    model_def, params = split_model(model)
    schedule = optimizer_lib.make_schedule(config.optimizer, steps_per_epoch=per_epoch,
                                           total_steps=total)
    state = create_train_state(params, tx, root_keys(config.seed)[2])
    train_fn, eval_fn = build_step_fns(par, model_def, tx, schedule,
                                       config_lib.make_distortion(config), info, wrap=wrap)
    train_it = data.train_iterator(
        config.dataset, data_dir, global_batch_size=config.batch_size, seed=config.seed,
        worker_count=config.worker_count, crop=crop, classes=classes,
    )
    eval_ds = data.eval_batches(config.dataset, data_dir, batch_size=config.eval_batch_size,
                                crop=crop, classes=classes)
    return Job(config, info, par, model_def, state, train_fn, eval_fn, train_it, eval_ds,
               total, count_params(model), kwargs, init_report)


def evaluate(job: Job, dev_state: Any) -> dict[str, float]:
    """Loss and accuracy over the whole test split (padded batches, masked)."""
    totals = None
    for batch in job.eval_ds:
        m = job.eval_fn(dev_state, job.par.put_batch(batch))
        totals = m if totals is None else jax.tree.map(jnp.add, totals, m)
    return steps.summarize_eval(job.par.to_host(totals))


def _identity(model: str, model_kwargs: dict, dataset: data.DatasetInfo) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the workdir (JSON-normalized)."""
    info = dataclasses.asdict(dataset)  # Identity, not the statistics (mean/std):
    info = {k: info[k] for k in ("name", "num_classes", "image_shape", "class_names")}
    return json.loads(json.dumps({"model": model, "model_kwargs": model_kwargs,
                                  "dataset": info}))


def _check_same_run(workdir: str, job: Job) -> None:
    """Raises `CheckpointError` if ``workdir/run.json`` names another model or dataset."""
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.exists(path):
        return
    saved = read_run_info(workdir)
    theirs = _identity(saved.model, saved.model_kwargs, saved.dataset)
    ours = _identity(job.config.model, job.model_kwargs, job.info)
    for key, value in theirs.items():
        if value != ours[key]:
            raise CheckpointError(f"{workdir} holds a run with {key} {value} ({path}), this "
                                  f"config has {ours[key]}: use a new --workdir")


def _restore(job: Job, ckpt: Checkpointer, dev_state: Any) -> Any:
    """The newest readable checkpoint's state on the devices (`dev_state` when there is none).

    Raises:
      CheckpointError: unusable checkpoints (`Checkpointer.restore_latest`), or none at all
        in a workdir whose run already finished (``metrics.json``): restarting from step 0
        would overwrite it.
    """
    restored = ckpt.restore_latest(job.par.host_state(dev_state), job.train_it)
    if restored is None:
        metrics = os.path.join(os.path.dirname(ckpt.directory), METRICS_FILE)
        if os.path.exists(metrics):
            raise CheckpointError(f"{ckpt.directory} has no complete checkpoint, but {metrics} "
                                  f"shows a run finished there: not starting over on top of "
                                  f"it; use a new --workdir (or delete {metrics})")
        return dev_state
    state, job.train_it = restored
    return job.par.put_state(state)


def _current_step(job: Job, dev_state: Any) -> int:
    return int(jax.device_get(job.par.host_state(dev_state).step))


def _train(job: Job, dev_state: Any, ckpt: Checkpointer, logger: MetricLogger) -> tuple:
    """Runs the steps from the state's step to the end; returns (dev_state, tracker, timing).

    Raises:
      NonFiniteLossError: the loss or parameter norm became NaN or infinite.
      Preempted: SIGTERM arrived (`preemption`); the checkpoint of the step reached was
        written (and waited for) first.
    """
    with preemption.SigtermNotice() as notice:
        return _run_steps(job, dev_state, ckpt, logger, notice)


def _run_steps(job: Job, dev_state: Any, ckpt: Checkpointer, logger: MetricLogger,
               notice: preemption.SigtermNotice) -> tuple:
    c = job.config
    step = _current_step(job, dev_state)
    tracker = StepMetrics(job.par.to_host, job.config.batch_size, logger)
    timing = {"compile_seconds": 0.0, "train_seconds": 0.0, "train_steps": 0}
    first = step
    preemption.fault_point("start", step)
    while step < job.total_steps:
        batch = job.par.put_batch(next(job.train_it))
        t0 = time.perf_counter()
        dev_state, metrics = job.train_fn(dev_state, batch)
        step += 1
        tracker.add(step, metrics)
        logger.advance()
        preemption.fault_point("step", step)
        if step == first + 1:  # The one deliberate sync: time the compile, not the steps.
            jax.block_until_ready(metrics)
            timing["compile_seconds"] = time.perf_counter() - t0
            tracker.restart_clock()
            t_train = time.perf_counter()
        last = step == job.total_steps
        do_eval = last or (c.eval_every_steps > 0 and step % c.eval_every_steps == 0)
        do_save = last or step % c.checkpoint_every_steps == 0
        sync = do_eval or do_save or step % c.log_every_steps == 0
        stop = notice.should_stop(sync)
        if sync or stop:
            tracker.flush(step)  # Checks the loss is finite before anything is saved.
        if last:
            timing["train_seconds"] = time.perf_counter() - t_train
            timing["train_steps"] = step - first - 1
        if do_save or stop:
            ckpt.save(step, job.par.host_state(dev_state), job.train_it)
            preemption.fault_point("save", step)
        if stop:
            ckpt.wait()
            raise preemption.Preempted(f"SIGTERM received: saved the checkpoint of step {step} "
                                       f"in {ckpt.directory}; run the same command to resume")
        if do_eval and not last:
            t_eval = time.perf_counter()
            logger.log_eval(step, evaluate(job, dev_state))
            t_train += time.perf_counter() - t_eval
            tracker.restart_clock()
    preemption.fault_point("end", step)
    return dev_state, tracker, timing


def _last_logged(logger: MetricLogger, key: str) -> float | None:
    return next((r[key] for r in reversed(logger.history) if key in r), None)


def _summary(job: Job, final: dict, tracker: StepMetrics, timing: dict, logger: MetricLogger,
             wall_seconds: float) -> dict[str, Any]:
    """The figures of ``metrics.json`` (besides ``history``)."""
    c = job.config
    steps_timed = timing["train_steps"]
    return {
        "step": job.total_steps,
        # From this run's last log, else (a finished run resumed) from metrics.json.
        "train_loss": tracker.last.get("loss", _last_logged(logger, "train_loss")),
        "train_accuracy": tracker.last.get("accuracy", _last_logged(logger, "train_accuracy")),
        "test_loss": final["loss"],
        "test_accuracy": final["accuracy"],
        "test_examples": int(final["count"]),
        "wall_seconds": wall_seconds,
        # Steps after the first (compile) over their time, evaluations excluded.
        "images_per_second": (steps_timed * c.batch_size / timing["train_seconds"]
                              if steps_timed else None),
        "compile_seconds": timing["compile_seconds"],
        "num_params": job.num_params,
        "devices": job.par.device_count,
        "processes": jax.process_count(),
        "parallelism": c.parallelism,
        "dataset": c.dataset,
        "model": c.model,
    }


def _write_plots(workdir: str, job: Job, state: TrainState, logger: MetricLogger) -> None:
    """``workdir/plots/*.png`` of the final parameters, drawn by process 0 alone (from a
    process-local copy: no collective, no checkpoint read, which would wait for the others)."""
    # Imported here: jaxconv.plots reads runs through this package (a cycle at import time).
    from jaxconv.plots import write_all

    if jax.process_index() != 0:
        return
    params = jax.tree.map(
        lambda x: np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x),
        state.params)
    model = nnx.merge(job.model_def.eval_graph, params, job.model_def.rest, copy=True)
    paths = write_all(workdir, model=model)
    logger.write(f"wrote {len(paths)} plots to {os.path.dirname(paths[0])}" if paths
                 else "wrote no plots")


def _plain(config) -> dict[str, Any]:
    return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def train_and_evaluate(
    config, workdir: str | os.PathLike, *, devices: list | None = None,
    wrap_steps: Callable | None = None,
) -> TrainState:
    """Trains and evaluates as the module docstring says; resumes from ``workdir``.

    Args:
      config: an ``ml_collections.ConfigDict`` shaped like ``configs/default.py``.
      workdir: where checkpoints, TensorBoard events and ``metrics.json`` go.
      devices: the devices to train on (for pmap: this process's); None: every device.
      wrap_steps: applied to the pure train and eval steps before they are compiled (tests
        pass ``chex.assert_max_traces(n=1)`` to prove each compiles once).

    Returns:
      The final `TrainState` (canonical layout: replicated arrays).

    Raises:
      ConfigError: a bad config value.
      FileNotFoundError: the dataset is not prepared in ``config.data_dir``.
      NonFiniteLossError: the training loss became NaN or infinite.
      CheckpointError: the workdir holds another model's run or no readable checkpoint.
      Preempted: SIGTERM arrived; a checkpoint of the current step was written first.
    """
    t_start = time.perf_counter()
    workdir = os.path.abspath(os.path.expanduser(os.fspath(workdir)))
    config_lib.validate_config(config)  # Before anything is written to the workdir.
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints)
    logger = None
    try:
        resuming = ckpt.latest_step() is not None
        job = setup(config, wrap=wrap_steps, devices=devices, pretrained=not resuming)
        if resuming:
            _check_same_run(workdir, job)
        if jax.process_index() == 0:
            write_run_info(workdir, model=config.model, model_kwargs=job.model_kwargs,
                           dataset=job.info, config=_plain(config))
        dev_state = _restore(job, ckpt, job.par.put_state(job.state))
        start = _current_step(job, dev_state)
        logger = MetricLogger(workdir, total_steps=job.total_steps, initial_step=start,
                              enabled=jax.process_index() == 0, progress_bar=config.progress_bar)
        logger.write(f"{config.model} ({job.num_params:,} parameters) on {config.dataset}: "
                     f"steps {start}..{job.total_steps}, {job.par.device_count} device(s), "
                     f"{jax.process_count()} process(es), parallelism={config.parallelism}")
        if job.init_report is not None:
            source = config.init.checkpoint or config.init.torch_weights
            logger.write(f"initialized from {source}: {job.init_report}")
        dev_state, tracker, timing = _train(job, dev_state, ckpt, logger)
        final = evaluate(job, dev_state)
        logger.log_eval(job.total_steps, final)
        summary = _summary(job, final, tracker, timing, logger, time.perf_counter() - t_start)
        path = logger.write_summary(summary)
        logger.close()
        logger.write(f"test accuracy {100 * final['accuracy']:.2f}% after {job.total_steps} "
                     f"steps, {summary['wall_seconds']:.1f} s; wrote {path}")
        state = job.par.host_state(dev_state)
        if config.write_plots:
            _write_plots(workdir, job, state, logger)
        return state
    finally:
        ckpt.close()
        if logger is not None:
            logger.close()
