"""What the trainer reports: TensorBoard events, ``metrics.json`` and a tqdm progress bar.

Only process 0 writes (`MetricLogger(enabled=False)` on the others does nothing).
`StepMetrics` keeps each step's metrics on device and fetches the queue in one transfer every
``log_every_steps`` steps (and before checkpoints and evaluations), checking that the loss and
parameters are finite: the host loop has no per-step device sync.

TensorBoard scalars (tensorboardX event files in the workdir): ``train/loss``,
``train/accuracy``, ``train/learning_rate``, ``train/grad_norm``, ``train/param_norm``,
``train/images_per_second``, ``eval/loss``, ``eval/accuracy``. A run of several seeds
(``config.num_seeds``) logs the mean over its seeds under those names, and each seed's
value beside it (``eval/accuracy/seed3``; in the history, ``test_accuracy_seeds``: a list in
seed order); images/s counts the images of one replica.
Each logged record is appended to the workdir's history stream as it is logged
(`jaxconv.run_history`: crash-safe, carried across resumes). ``metrics.json``: the final
figures (``step``, ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``,
``wall_seconds``, ``images_per_second``, ``segments``, ...) plus ``history``, one record per
log or eval step (what `jaxconv.plots.plot_curves` draws), built from the stream.
The bar's time left (`Eta`) is measured from the end of the first step, whose time is mostly
XLA's compilation.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tqdm

from jaxconv import run_files, run_history
from jaxconv.runs import METRICS_FILE
from jaxconv.training.replicas import SEEDS_SUFFIX, split_seeds


class NonFiniteLossError(FloatingPointError):
    """The training loss (or the parameters) became NaN or infinite; names the step."""


def _host_value(value: Any) -> float | np.ndarray:
    """A fetched metric as a float, or (several seeds) a float64 array of per-seed values."""
    array = np.asarray(value, np.float64)
    return float(array) if array.ndim == 0 else array


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Inf.
    return value


class Eta:
    """Time left in training, from the step rate since the end of the first step.

    The first step this process runs includes XLA's compilation (seconds, minutes for a large
    model, and nothing like the steps after it), so its end starts the clock: there is no
    estimate before the second step ends.

    Args:
      total_steps: the step training ends at.
      clock: seconds, monotonic (a test passes a fake one).
    """

    def __init__(self, total_steps: int, clock: Callable[[], float] = time.monotonic):
        self._total, self._clock = total_steps, clock
        self._start: tuple[float, int] | None = None  # (time, step) when the first step ended
        self._last: tuple[float, int] | None = None

    def update(self, step: int) -> None:
        """Records that training reached `step` now."""
        now = self._clock()
        if self._start is None:
            self._start = (now, step)
        self._last = (now, step)

    def seconds_left(self) -> float | None:
        """Seconds to `total_steps` at the rate since the first step; None before step 2."""
        if self._start is None or self._last[1] <= self._start[1]:
            return None
        rate = (self._last[1] - self._start[1]) / max(self._last[0] - self._start[0], 1e-9)
        return max(self._total - self._last[1], 0) / rate

    def text(self) -> str:
        """``eta 01:23``, or ``eta: compiling`` / ``eta: estimating`` before there is one."""
        left = self.seconds_left()
        if left is not None:
            return f"eta {tqdm.tqdm.format_interval(left)}"
        return "eta: compiling" if self._start is None else "eta: estimating"


class MetricLogger:
    """TensorBoard writer, history for ``metrics.json`` and progress bar (process 0 only).

    Args:
      workdir: where the event files and ``metrics.json`` go.
      total_steps: training length, for the bar's ETA.
      initial_step: the step training starts (or resumes) from.
      enabled: False on processes other than 0: every method is a no-op.
      stream: the run's history stream, started at `initial_step` (its records up to there
        are the history so far; each new record is appended to it); None: a new one.
      progress_bar: show a tqdm bar on stderr: steps, elapsed time, `Eta`, loss and images/s.
        When stderr is not a terminal (a log file, a pipe) a bar's carriage returns would
        glue lines together: one plain line per train log is printed instead.
      clock: the `Eta`'s clock (a test passes a fake one).
      seeds: the seeds of a run of several (their per-seed values are logged beside the
        means); () for a 1-seed run.
    """

    def __init__(self, workdir: str, *, total_steps: int, initial_step: int, enabled: bool,
                 progress_bar: bool, stream: run_history.HistoryWriter | None = None,
                 clock: Callable[[], float] = time.monotonic, seeds: tuple[int, ...] = ()):
        self.workdir, self.seeds = workdir, tuple(seeds)
        self.enabled = enabled
        if stream is None:
            stream = run_history.HistoryWriter(workdir, enabled=enabled)
            stream.start(initial_step)
        self.stream = stream
        self.history: list[dict[str, Any]] = [dict(r) for r in stream.history.metrics]
        self.eta = Eta(total_steps, clock)
        self._step = initial_step
        self._metrics_text = ""
        self._writer = None
        self._bar = None
        self._total = total_steps
        self._lines = progress_bar and not sys.stderr.isatty()
        if not enabled:
            return
        from tensorboardX import SummaryWriter  # Only process 0 needs it.

        self._writer = SummaryWriter(logdir=workdir)
        if progress_bar and not self._lines:  # tqdm's rate and ETA would count the compile.
            self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step",
                                  dynamic_ncols=True, postfix=self.eta.text(),
                                  bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                             "[{elapsed}{postfix}]")

    def postfix(self) -> str:
        """What the bar shows after the elapsed time: the `Eta`, then the last loss and img/s."""
        return ", ".join(t for t in (self.eta.text(), self._metrics_text) if t)

    def advance(self, steps: int = 1) -> None:
        """Moves the progress bar and the `Eta` (no device sync)."""
        self._step += steps
        self.eta.update(self._step)
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix(), refresh=False)
            self._bar.update(steps)

    def _scalars(self, prefix: str, step: int, values: dict[str, float],
                 per_seed: dict[str, list[float]] | None = None) -> None:
        for name, value in values.items():
            self._writer.add_scalar(f"{prefix}/{name}", value, step)
        for name, seed_values in (per_seed or {}).items():
            for seed, value in zip(self.seeds, seed_values, strict=True):
                self._writer.add_scalar(f"{prefix}/{name}/seed{seed}", value, step)

    def _record(self, step: int, values: dict[str, Any]) -> None:
        if self.history and self.history[-1]["step"] == step:
            self.history[-1].update(values)
        else:
            self.history.append({"step": step, **values})
        self.stream.metrics(step, values)

    def log_train(self, step: int, metrics: dict[str, Any]) -> None:
        """Logs mean train metrics of the steps up to `step` (and images/s); several seeds:
        a metric may be an array of per-seed values (`replicas.split_seeds`)."""
        if not self.enabled:
            return
        metrics, per_seed = split_seeds(metrics)
        self._scalars("train", step, metrics, per_seed)
        self._record(step, {f"train_{k}": v for k, v in metrics.items()}
                     | {f"train_{k}{SEEDS_SUFFIX}": v for k, v in per_seed.items()})
        self._metrics_text = (f"loss={metrics['loss']:.4f}, "
                              f"img_s={metrics.get('images_per_second', 0):.0f}")
        if self._bar is not None:
            self._bar.set_postfix_str(self.postfix())
        elif self._lines:
            self.write(f"step {step}/{self._total}: {self.postfix()}")

    def log_eval(self, step: int, metrics: dict[str, Any]) -> None:
        """Logs test-split loss and accuracy at `step` (several seeds: their means, and each
        seed's from ``loss_seeds`` / ``accuracy_seeds``)."""
        if not self.enabled:
            return
        names = [n for n in ("loss", "accuracy") if n + SEEDS_SUFFIX in metrics]
        per_seed = {n: metrics[n + SEEDS_SUFFIX] for n in names}
        self._scalars("eval", step, {k: metrics[k] for k in ("loss", "accuracy")}, per_seed)
        self._record(step, {"test_loss": metrics["loss"], "test_accuracy": metrics["accuracy"]}
                     | {f"test_{n}{SEEDS_SUFFIX}": v for n, v in per_seed.items()})
        seeds = (f"; per seed {', '.join(f'{100 * a:.2f}%' for a in per_seed['accuracy'])}"
                 if per_seed else "")
        self.write(f"step {step}: test loss {metrics['loss']:.4f}, "
                   f"test accuracy {100 * metrics['accuracy']:.2f}% "
                   f"({int(metrics['count'])} examples){seeds}")

    def write(self, message: str) -> None:
        """Prints a line to stdout without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def write_summary(self, summary: dict[str, Any]) -> str | None:
        """Writes ``metrics.json`` (summary + history) atomically; returns its path."""
        if not self.enabled:
            return None
        path = os.path.join(self.workdir, METRICS_FILE)
        record = {k: _finite_or_none(v) for k, v in summary.items()}
        record["history"] = [{k: _finite_or_none(v) for k, v in r.items()} for r in self.history]
        return run_files.write_atomic(path, json.dumps(record, indent=1))

    def close(self) -> None:
        """Flushes and closes the bar and the event file."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class StepMetrics:
    """Per-step train metrics queued on device, fetched together every few steps.

    `add` keeps the device arrays (no sync); `flush` fetches all queued steps in one transfer,
    raises `NonFiniteLossError` at the first step whose loss or parameter norm is not finite,
    and logs the means (loss, accuracy, grad norm), the last learning rate and parameter norm,
    and images/s since the previous flush. A stop between two logs `save_pending`: the steps
    queued since the last log go to the history stream, and the resumed run `preload`s them,
    so that its next log averages the same steps as an uninterrupted run's.

    Args:
      to_host: fetches a pytree of device metrics as numpy (the parallel strategy's).
      batch_size: global batch size (for images/s).
      logger: where flushed metrics go.
    """

    def __init__(self, to_host, batch_size: int, logger: MetricLogger):
        self._to_host, self._batch_size, self._logger = to_host, batch_size, logger
        self._pending: list[tuple[int, Any]] = []
        self._host: list[tuple[int, dict[str, float]]] = []  # Preloaded, already fetched.
        self.last: dict[str, float] = {}
        self._t = time.perf_counter()

    def add(self, step: int, metrics: Any) -> None:
        """Queues the metrics of the step that produced state `step` (no device sync)."""
        self._pending.append((step, metrics))

    def preload(self, pending: list[dict[str, Any]]) -> None:
        """Queues steps a stopped run saved (`save_pending`; ``{"step": k, "loss": ...}``)."""
        self._host = [(r["step"], {k: _host_value(v) for k, v in r.items() if k != "step"})
                      for r in pending]

    def restart_clock(self) -> None:
        """Starts the images/s clock now (after a compile or an evaluation)."""
        self._t = time.perf_counter()

    def _fetch(self) -> list[tuple[int, dict[str, float]]]:
        """The queued steps' metrics on the host, checked finite (the queue moves to host)."""
        fetched = self._to_host([m for _, m in self._pending])
        for (k, _), m in zip(self._pending, fetched):
            # loss is that of the parameters before step k, param_norm of those after it.
            for name, what in (("loss", "training loss"), ("param_norm", "parameter norm")):
                value = _host_value(m[name])  # Several seeds: one per seed.
                if not np.all(np.isfinite(value)):
                    shown = value if isinstance(value, float) else value.tolist()
                    raise NonFiniteLossError(
                        f"{what} is {shown} at step {k}: stopping (nothing from this "
                        "step on is saved; the last good checkpoint is kept)"
                    )
        self._host += [(k, {n: _host_value(v) for n, v in m.items()})
                       for (k, _), m in zip(self._pending, fetched)]
        self._pending.clear()
        return self._host

    def save_pending(self) -> None:
        """Fetches and checks the queued steps and appends them to the history stream."""
        for k, m in self._fetch():
            self._logger.stream.pending(k, {n: v if isinstance(v, float) else v.tolist()
                                            for n, v in m.items()})

    def flush(self, step: int) -> None:
        """Fetches, checks and logs the queued metrics as those of `step`."""
        if not self._pending and not self._host:
            return
        timed = len(self._pending)  # Steps run since the clock started (not preloaded ones).
        fetched = [m for _, m in self._fetch()]
        seconds = max(time.perf_counter() - self._t, 1e-9)
        # Means over the steps (several seeds: per seed, an array over the seeds).
        mean = {k: _host_value(np.mean([m[k] for m in fetched], axis=0))
                for k in ("loss", "accuracy", "grad_norm")}
        mean.update(learning_rate=float(np.mean(fetched[-1]["learning_rate"])),
                    param_norm=fetched[-1]["param_norm"],
                    images_per_second=timed * self._batch_size / seconds)
        self.last = mean
        self._host = []
        self._logger.log_train(step, mean)
        self.restart_clock()
