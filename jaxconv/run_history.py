"""A run's history as it happens: an append-only, crash-safe stream in the workdir.

``workdir/history.jsonl`` (`HISTORY_FILE`) holds one JSON object a line, appended (and
flushed to disk) as the trainer logs, so that an interrupted run loses nothing it logged:

- ``{"kind": "metrics", "step": s, ...}``: train or test figures logged at step ``s``;
  records of one step merge, later values win (``metrics.json``'s ``history`` is built from
  them).
- ``{"kind": "pending", "step": s, ...}``: the raw metrics of a step that a stop (SIGTERM,
  Ctrl-C) saved between two logs; the resumed run averages them into its next log, so that
  the history equals an uninterrupted run's.
- ``{"kind": "segment", "index": i, ...}``: the timings of the i-th stretch of training
  (one per start of ``train.py``: start and end step, wall, compile and train seconds,
  steps timed), rewritten as it goes (the last line of an index wins), so that a ``kill -9``
  loses at most the time since the last checkpoint.
- ``{"kind": "done", "phase": p, "step": s}``: a phase after training finished at step
  ``s`` (``"plots"``: every figure written).

Reading (`read`) drops a line that is not a JSON object (a line torn by a crash mid-write),
never raising. `HistoryWriter.start` compacts the file when a segment starts (rewritten
atomically, `run_files.write_atomic`): it keeps the records of the steps up to the
resumed step, every segment and the marks, and drops the torn line, so that records are never
appended after a torn one.

The stream goes through `jaxconv.run_files`: locally a line is appended in place and
``fsync``-ed; in a bucket (no append on object storage) each append uploads the whole object
again, so every version of the object is whole and nothing can be torn there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from jaxconv import run_files

HISTORY_FILE = "history.jsonl"
PLOTS_PHASE = "plots"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Inf.
    return value


@dataclasses.dataclass
class History:
    """What `read` found in a workdir's stream.

    Attributes:
      metrics: one merged record per logged step (``{"step": s, "train_loss": ...}``), by step.
      pending: the raw metrics of steps a stop saved between logs (``{"step": s, ...}``).
      segments: one record per stretch of training, by index.
      done: phase -> the step the run had when the phase completed.
    """

    metrics: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pending: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    segments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    done: dict[str, int] = dataclasses.field(default_factory=dict)

    def lines(self) -> list[dict[str, Any]]:
        """The stream's lines that reproduce this history."""
        out = [{"kind": "metrics", **r} for r in self.metrics]
        out += [{"kind": "pending", **r} for r in self.pending]
        out += [{"kind": "segment", **r} for r in self.segments]
        out += [{"kind": "done", "phase": p, "step": s} for p, s in self.done.items()]
        return out

    def up_to(self, step: int) -> History:
        """The records of steps <= `step` (segments and marks kept; a mark of a later step
        is dropped)."""
        return History([r for r in self.metrics if r["step"] <= step],
                       [r for r in self.pending if r["step"] <= step], list(self.segments),
                       {p: s for p, s in self.done.items() if s <= step})


def path(workdir: str | os.PathLike) -> str:
    """The stream's path in `workdir`."""
    return os.fspath(run_files.path(workdir) / HISTORY_FILE)


def _parse(line: str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "kind" in record else None


def read(workdir: str | os.PathLike) -> History:
    """The workdir's `History` (empty when there is no stream; torn lines dropped)."""
    try:
        lines = run_files.read_text(path(workdir)).split("\n")
    except FileNotFoundError:
        return History()
    metrics: dict[int, dict[str, Any]] = {}
    pending: dict[int, dict[str, Any]] = {}
    segments: dict[int, dict[str, Any]] = {}
    history = History()
    for record in filter(None, map(_parse, lines)):
        kind = record.pop("kind")
        if kind == "metrics" and isinstance(record.get("step"), int):
            metrics.setdefault(record["step"], {}).update(record)
        elif kind == "pending" and isinstance(record.get("step"), int):
            pending[record["step"]] = record
        elif kind == "segment" and isinstance(record.get("index"), int):
            segments[record["index"]] = record
        elif kind == "done" and isinstance(record.get("step"), int):
            history.done[str(record.get("phase"))] = record["step"]
    history.metrics = [metrics[s] for s in sorted(metrics)]
    history.pending = [pending[s] for s in sorted(pending)]
    history.segments = [segments[i] for i in sorted(segments)]
    return history


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps({k: _finite_or_none(v) for k, v in record.items()})


def _rewrite(workdir: str, history: History) -> None:
    run_files.write_atomic(path(workdir), "".join(_dumps(r) + "\n" for r in history.lines()))


def mark_done(workdir: str | os.PathLike, phase: str, step: int) -> None:
    """Appends the mark that `phase` completed for the run finished at `step`."""
    run_files.append_line(path(workdir), _dumps({"kind": "done", "phase": phase, "step": step}))


def is_done(workdir: str | os.PathLike, phase: str, step: int) -> bool:
    """Whether `phase` completed for the run finished at `step`."""
    return read(workdir).done.get(phase) == step


class HistoryWriter:
    """Appends to a workdir's stream (process 0 of a run; ``enabled=False`` does nothing).

    Args:
      workdir: the run's workdir.
      enabled: whether this process writes.
    """

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
        self.workdir, self.enabled = os.fspath(workdir), enabled
        self.history = History()
        self.segment: dict[str, Any] = {}

    def start(self, step: int) -> History:
        """Starts a segment at `step`: reads and compacts the stream (records of later steps
        dropped: they are about to be redone); returns what it holds up to `step`."""
        self.history = read(self.workdir).up_to(step)
        self.segment = {"index": len(self.history.segments), "start_step": step,
                        "end_step": step, "wall_seconds": 0.0, "compile_seconds": 0.0,
                        "train_seconds": 0.0, "train_steps": 0}
        if self.enabled:
            _rewrite(self.workdir, self.history)
        return self.history

    def _append(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        run_files.append_line(path(self.workdir), _dumps(record))

    def metrics(self, step: int, values: dict[str, Any]) -> None:
        """Appends figures logged at `step`."""
        self._append({"kind": "metrics", "step": step, **values})

    def pending(self, step: int, values: dict[str, Any]) -> None:
        """Appends the raw metrics of step `step`, saved by a stop between two logs."""
        self._append({"kind": "pending", "step": step, **values})

    def update_segment(self, **values: Any) -> dict[str, Any]:
        """Updates this segment's record (end step, timings) and appends it."""
        self.segment.update(values)
        self._append({"kind": "segment", **self.segment})
        return dict(self.segment)

    def segments(self) -> list[dict[str, Any]]:
        """Every segment of the run: the earlier ones, then this one."""
        return [*self.history.segments, dict(self.segment)]
