"""`train_and_evaluate(config, workdir)`: the whole training job, as ``train.py`` runs it.

1. Check the config once (`validate_config`, before anything is written to the workdir),
   take the workdir's lock (`jaxconv.training.workdir`: one trainer per workdir) and compare
   the config with the run the workdir holds (`jaxconv.training.resume`: the same run, a
   longer one, or a finished one, which is left as it is), then build the job
   (`jaxconv.training.job.build_job`: dataset, model, optimizer, steps, iterators; each
   process reads only its shard).
2. Resume from the newest checkpoint in ``workdir/checkpoints`` if there is one (params,
   optimizer state, step, RNG and iterator position: the run continues exactly); an
   unreadable newest step falls back to an older one with a warning, a workdir of another
   model or dataset raises `CheckpointError` (`jaxconv.training.checkpoint`).
3. Train: the host loop only feeds batches and queues jitted steps; every
   ``log_every_steps`` (and before every checkpoint and eval) it fetches the queued metrics
   in one transfer, checks the loss is finite and logs. A non-finite loss stops the run with
   `NonFiniteLossError` naming the step; the bad state is never saved. SIGTERM or SIGINT
   saves the current step and raises `Preempted` (`jaxconv.training.preemption`). The caller's
   `Hooks` are called at the start, after each step, after each save and at the end.
4. Evaluate on the whole test split (every example once) every ``eval_every_steps`` and at
   the end, checkpoint every ``checkpoint_every_steps`` and at the end, write
   ``workdir/metrics.json``. Figures are the entry point's business (``train.py`` calls
   `jaxconv.plots.write_all` with the returned parameters).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxconv import data, run_files, run_history, runs
from jaxconv.training import config as config_lib
from jaxconv.training import preemption, profiling, replicas, resume
from jaxconv.training import workdir as workdir_lib
from jaxconv.training.checkpoint import Checkpointer, CheckpointError
from jaxconv.training.hooks import HookList, Hooks
from jaxconv.training.job import Job, build_job, corrupt_dataset_error, evaluate
from jaxconv.training.logs import MetricLogger, StepMetrics
from jaxconv.training.state import TrainState


def _identity(model: str, model_kwargs: dict, dataset: data.DatasetInfo) -> dict[str, Any]:
    """What a resumed run must share with the run that wrote the workdir (JSON-normalized)."""
    info = dataclasses.asdict(dataset)  # Identity, not the statistics (mean/std):
    info = {k: info[k] for k in ("name", "num_classes", "image_shape", "class_names")}
    return json.loads(json.dumps({"model": model, "model_kwargs": model_kwargs,
                                  "dataset": info}))


def _check_same_run(workdir: str, job: Job) -> None:
    """Raises `CheckpointError` if ``workdir/run.json`` names another model or dataset."""
    path = os.path.join(workdir, runs.RUN_FILE)
    if not run_files.exists(path):
        return
    saved = runs.read_run_info(workdir)
    # Runs written before config.compute_dtype existed trained in float32 and did not record
    # the precision: read them as such, so that they still resume.
    saved_kwargs = {"dtype": "float32", "param_dtype": "float32", **saved.model_kwargs}
    theirs = _identity(saved.model, saved_kwargs, saved.dataset)
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
        metrics = os.path.join(os.path.dirname(ckpt.directory), runs.METRICS_FILE)
        if run_files.exists(metrics):
            raise CheckpointError(f"{ckpt.directory} has no complete checkpoint, but {metrics} "
                                  f"shows a run finished there: not starting over on top of "
                                  f"it; use a new --workdir (or delete {metrics})")
        return dev_state
    state, job.train_it = restored
    return job.par.put_state(state)


class DivergedError(RuntimeError):
    """An evaluation's test loss is above the divergence guard's limit (one-line message)."""


def check_divergence(config: Any, num_classes: int, step: int,
                     result: dict[str, float]) -> dict[str, float]:
    """Returns `result` (an evaluation at `step`) unless the run diverged.

    The guard: a test loss above ``config.divergence_factor × ln(num_classes)`` (the loss of
    a uniform guess is ``ln(num_classes)``), or not finite. ``divergence_factor = 0`` turns
    it off (a non-finite loss is still refused). Several seeds: the worst seed's loss.

    Raises:
      DivergedError: names the step, the loss, the limit and what to do.
    """
    losses = [float(x) for x in result.get("loss_seeds", [result["loss"]])]
    loss = next((x for x in losses if not math.isfinite(x)), max(losses))
    factor = float(config.divergence_factor)
    limit = factor * math.log(max(num_classes, 2))
    if math.isfinite(loss) and (factor == 0 or loss <= limit):
        return result
    raise DivergedError(
        f"the run diverged: test loss {loss:.4g} at step {step} is above "
        f"{limit:.4g} (config.divergence_factor={factor:g} × ln({num_classes}), the loss of "
        f"a uniform guess); stopped without saving this step (the checkpoints written before "
        f"it are kept, no metrics.json is written). Lower "
        f"config.optimizer.learning_rate (or set config.optimizer.grad_clip_norm) and use a new "
        f"--workdir; config.divergence_factor=0 turns the guard off")


def _evaluate(job: Job, dev_state: Any, step: int, logger: MetricLogger) -> dict[str, float]:
    """Evaluates at `step`, checks the divergence guard, logs; returns the evaluation."""
    result = check_divergence(job.config, job.info.num_classes, step, evaluate(job, dev_state))
    logger.log_eval(step, result)
    return result


def _current_step(job: Job, dev_state: Any) -> int:
    # Several seeds: one step per replica, all equal.
    return int(np.ravel(jax.device_get(job.par.host_state(dev_state).step))[0])


class _Clock:
    """This segment's timings (`jaxconv.run_history`): wall time since the job started, the
    first step's (compile) time, and the time of the steps after it, evaluations excluded."""

    def __init__(self, t_start: float, first_step: int):
        self.t_start, self.first = t_start, first_step
        self.compile_seconds, self.eval_seconds = 0.0, 0.0
        self.t_train: float | None = None  # When the first step (compile) ended.

    def compiled(self, t0: float) -> None:
        self.t_train = time.perf_counter()
        self.compile_seconds = self.t_train - t0

    def timings(self, step: int) -> dict[str, Any]:
        now = time.perf_counter()
        timed = self.t_train is not None and step > self.first + 1
        return {"end_step": step, "wall_seconds": now - self.t_start,
                "compile_seconds": self.compile_seconds,
                "train_seconds": now - self.t_train - self.eval_seconds if timed else 0.0,
                "train_steps": step - self.first - 1 if timed else 0}


def _train(job: Job, dev_state: Any, ckpt: Checkpointer, logger: MetricLogger,
           hooks: Hooks, clock: _Clock) -> tuple:
    """Runs the steps from the state's step to the end; returns ``(dev_state, final)``, the
    final evaluation (None when the run resumed at its last step: nothing was run).

    Raises:
      DivergedError: an evaluation's test loss is above the guard's limit.
      NonFiniteLossError: the loss or parameter norm became NaN or infinite.
      Preempted: SIGTERM or SIGINT arrived (`preemption`); the checkpoint of the step
        reached was written (and waited for) first.
    """
    with preemption.StopNotice() as notice:
        try:
            return _run_steps(job, dev_state, ckpt, logger, notice, hooks, clock)
        finally:
            hooks.on_close()


def _run_steps(job: Job, dev_state: Any, ckpt: Checkpointer, logger: MetricLogger,
               notice: preemption.StopNotice, hooks: Hooks, clock: _Clock) -> tuple:
    c = job.config
    step = _current_step(job, dev_state)
    tracker = StepMetrics(job.par.to_host, job.config.batch_size, logger)
    logged = max((r["step"] for r in logger.history if "train_loss" in r), default=-1)
    tracker.preload([r for r in logger.stream.history.pending if r["step"] > logged])
    first, final = step, None
    hooks.on_start(step)
    while step < job.total_steps:
        batch = job.put_train_batch(next(job.train_it))
        t0 = time.perf_counter()
        dev_state, metrics = job.train_fn(dev_state, batch)
        step += 1
        tracker.add(step, metrics)
        logger.advance()
        hooks.on_step(step)
        if step == first + 1:  # The one deliberate sync: time the compile, not the steps.
            jax.block_until_ready(metrics)
            clock.compiled(t0)
            tracker.restart_clock()
        last = step == job.total_steps
        do_eval = last or (c.eval_every_steps > 0 and step % c.eval_every_steps == 0)
        do_save = last or step % c.checkpoint_every_steps == 0
        sync = do_eval or do_save or step % c.log_every_steps == 0
        stop = notice.should_stop(sync)
        if sync:
            tracker.flush(step)  # Checks the loss is finite before anything is saved.
        elif stop:  # Between two logs: the steps since the last one wait for the resume.
            tracker.save_pending()
        if do_eval:  # Before the save: a diverged state is never saved.
            t_eval = time.perf_counter()
            final = _evaluate(job, dev_state, step, logger)
            clock.eval_seconds += time.perf_counter() - t_eval
            tracker.restart_clock()
        if do_save or stop:
            ckpt.save(step, job.par.host_state(dev_state), job.train_it)
            logger.stream.update_segment(**clock.timings(step))
            hooks.on_save(step)
        if stop:
            ckpt.wait()
            raise preemption.Preempted(
                f"{notice.describe()} received: saved the checkpoint of step {step} in "
                f"{ckpt.directory}; run the same command to resume", notice.exit_code)
    hooks.on_end(step)
    return dev_state, final


def _last_logged(logger: MetricLogger, key: str) -> float | None:
    return next((r[key] for r in reversed(logger.history) if key in r), None)


def _summary(job: Job, final: dict, logger: MetricLogger) -> dict[str, Any]:
    """The figures of ``metrics.json`` (besides ``history``), over every segment of the run."""
    c = job.config
    segments = logger.stream.segments()
    steps_timed = sum(seg["train_steps"] for seg in segments)
    train_seconds = sum(seg["train_seconds"] for seg in segments)
    return {
        "step": job.total_steps,
        "train_loss": _last_logged(logger, "train_loss"),
        "train_accuracy": _last_logged(logger, "train_accuracy"),
        "test_loss": final["loss"],
        "test_accuracy": final["accuracy"],
        "test_examples": int(final["count"]),
        "wall_seconds": sum(seg["wall_seconds"] for seg in segments),
        # Steps after each segment's first (compile) over their time, evaluations excluded.
        "images_per_second": (steps_timed * c.batch_size / train_seconds
                              if steps_timed and train_seconds > 0 else None),
        "compile_seconds": sum(seg["compile_seconds"] for seg in segments),
        "segments": segments,
        "num_params": job.num_params,
        "devices": job.par.device_count,
        "processes": jax.process_count(),
        "parallelism": c.parallelism,
        "dataset": c.dataset,
        "model": c.model,
        **replicas.seed_summary(c, final, logger.history),  # Several seeds: each one's.
    }


def _start_logger(workdir: str, job: Job, start: int,
                  stream: run_history.HistoryWriter) -> MetricLogger:
    """The run's `MetricLogger` (process 0 writes), after printing what is about to run."""
    c = job.config
    seeds = replicas.seeds(c) if c.num_seeds > 1 else ()
    logger = MetricLogger(workdir, total_steps=job.total_steps, initial_step=start,
                          enabled=jax.process_index() == 0, progress_bar=c.progress_bar,
                          stream=stream, seeds=seeds)
    logger.write(f"{c.model} ({job.num_params:,} parameters{' per seed' if seeds else ''}) on "
                 f"{c.dataset}: steps {start}..{job.total_steps}, {job.par.device_count} "
                 f"device(s), {jax.process_count()} process(es), parallelism={c.parallelism}"
                 + (f", {len(seeds)} seeds ({', '.join(map(str, seeds))}) in one program"
                    if seeds else ""))
    if job.init_report is not None:
        source = c.init.checkpoint or c.init.torch_weights
        logger.write(f"initialized from {source}: {job.init_report}")
    return logger



def train_and_evaluate(
    config, workdir: str | os.PathLike, *, devices: list | None = None,
    wrap_steps: Callable | None = None, hooks: Hooks | None = None,
) -> TrainState:
    """Trains and evaluates as the module docstring says; resumes from ``workdir``.

    Args:
      config: an ``ml_collections.ConfigDict`` shaped like ``configs/default.py``.
      workdir: where ``run.json``, checkpoints, TensorBoard events and ``metrics.json`` go.
      devices: the devices to train on (for pmap: this process's); None: every device.
      wrap_steps: applied to the pure train and eval steps before they are compiled (tests
        pass ``chex.assert_max_traces(n=1)`` to prove each compiles once).
      hooks: called at the loop's fixed points (`Hooks`); None: none.

    Returns:
      The final `TrainState` (canonical layout: replicated arrays).

    Raises:
      ConfigError: a bad config value; `ConfigMismatchError` (a subclass): the workdir's run
        was trained with other values of keys that change what is trained, or is already
        longer than this config's length (`jaxconv.training.resume`).
      RunComplete: the workdir holds this run, finished: nothing was run or written.
      WorkdirError: the workdir cannot be used (under a file, read-only, no permission, a
        malformed ``run.json``); `WorkdirBusyError`: another trainer holds its lock;
        `WorkdirLockLost`: another trainer took over its bucket lock (nothing more written);
        `DiskFullError`: no space left (the message lists the intact checkpoint steps).
      FileNotFoundError: the dataset is not prepared in ``config.data_dir``.
      NonFiniteLossError: the training loss became NaN or infinite.
      CheckpointError: the workdir holds another model's run or no readable checkpoint.
      Preempted: SIGTERM or SIGINT arrived; a checkpoint of the current step was written
        first.
    """
    t_start = time.perf_counter()
    try:
        workdir = os.fspath(run_files.path(workdir))  # Absolute; a gs:// URL as it is.
    except run_files.BucketAccessError as err:
        raise workdir_lib.WorkdirError(f"cannot use --workdir {workdir}: {err}") from None
    config_lib.validate_config(config)  # Once, before anything is written to the workdir.
    before = workdir_lib.entries(workdir)
    with workdir_lib.exclusive(workdir) as lock:  # One trainer per workdir, before anything.
        try:
            plan = resume.check_workdir(config, workdir)
            return _train_and_evaluate(config, workdir, plan, t_start, devices=devices,
                                       wrap_steps=wrap_steps, hooks=hooks, lock=lock)
        except (resume.RunComplete, workdir_lib.WorkdirLockLost):
            raise  # Nothing to clean: complete, or another trainer's workdir now.
        except BaseException as err:
            # Failed before its first checkpoint: leave the workdir as it was.
            workdir_lib.remove_new_entries(workdir, before, lock)
            if isinstance(err, Exception) and workdir_lib.disk_full(err):
                raise workdir_lib.disk_full_error(workdir) from err
            corrupt = isinstance(err, Exception) and corrupt_dataset_error(config, err)
            if corrupt:
                raise corrupt from err
            raise


def _train_and_evaluate(config, workdir: str, plan: resume.Resume, t_start: float, *,
                        devices, wrap_steps, hooks, lock) -> TrainState:
    """`train_and_evaluate` on a locked, checked workdir (`resume.check_workdir`)."""
    ckpt = Checkpointer(os.path.join(workdir, runs.CHECKPOINTS_DIR),
                        max_to_keep=config.keep_checkpoints, guard=lock.check)
    logger = job = None
    try:
        resuming = ckpt.latest_step() is not None
        job = build_job(config, wrap=wrap_steps, devices=devices, pretrained=not resuming)
        if resuming:
            _check_same_run(workdir, job)
        dev_state = _restore(job, ckpt, job.par.put_state(job.state))
        start = _current_step(job, dev_state)
        resume.record_start(workdir, plan, config, model_kwargs=job.model_kwargs,
                            dataset=job.info, start_step=start)
        stream = run_history.HistoryWriter(workdir, enabled=jax.process_index() == 0)
        stream.start(start)
        logger = _start_logger(workdir, job, start, stream)
        all_hooks = HookList([lock.guard(config.log_every_steps),
                              profiling.profile_hook(config, workdir), hooks])
        clock = _Clock(t_start, start)
        dev_state, final = _train(job, dev_state, ckpt, logger, all_hooks, clock)
        if final is None:  # Resumed at the last step (stopped before the evaluation).
            final = _evaluate(job, dev_state, job.total_steps, logger)
        timings = clock.timings(job.total_steps)
        ckpt.wait()
        stream.update_segment(**{**timings, "wall_seconds": time.perf_counter() - t_start})
        summary = _summary(job, final, logger)
        path = logger.write_summary(summary)
        logger.close()
        logger.write(f"test accuracy {100 * final['accuracy']:.2f}% after {job.total_steps} "
                     f"steps, {summary['wall_seconds']:.1f} s; wrote {path}")
        return job.par.host_state(dev_state)
    finally:
        ckpt.close()
        if job is not None and hasattr(job.train_it, "close"):
            job.train_it.close()  # grain workers stop and free their shared-memory batches.
        if logger is not None:
            logger.close()
