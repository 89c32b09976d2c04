"""Orbax checkpoints of the train state and the data iterator, for exact resumption.

Each checkpoint ``workdir/checkpoints/<step>/`` holds two items: ``state`` (the `TrainState`:
params, optimizer state, step, RNG; Orbax's standard format, written once for replicated
arrays in a multi-process run) and ``data`` (each process's grain iterator position, one JSON
file per process). Saves are asynchronous: the arrays are copied off the device before
`Checkpointer.save` returns, the files are written in the background into
``<step>.orbax-checkpoint-tmp`` and renamed to ``<step>`` once complete, so a process killed
mid-write leaves only a temporary directory, which is ignored (and removed on the next start).
In a bucket (``gs://``; object storage has no directory rename) Orbax writes straight into
``<step>/`` and writes ``<step>/commit_success.txt`` last: a step without it is unfinished,
ignored by every reader (`jaxconv.runs.complete_steps`) and removed on the next start.
Restoring both items and re-running the same jitted step reproduces an uninterrupted run bit
for bit.

`Checkpointer.restore_latest` never starts a run over silently: it first compares the newest
checkpoint's array names, shapes and dtypes with the state to restore (a checkpoint of another
model or optimizer raises `CheckpointError` naming the path and the first difference; Orbax
would otherwise restore a smaller array as a silent slice of a larger one). A step whose files
cannot be read (truncated, missing, not JSON) is skipped with a warning for the next older
one; if none can be read, `CheckpointError` lists each step's problem.

Every process must call `save`, `restore_latest` and `close` (Orbax synchronizes them); in a
multi-process run all processes agree on whether a step could be read before falling back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxconv import run_files
from jaxconv.data import iterator_restore_args, iterator_save_args
from jaxconv.training.preemption import any_process

TMP_MARK = ".orbax-checkpoint-tmp"  # Orbax's name for a step being written.


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (unreadable, or another model/config); names the path."""


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _array_leaves(tree: Any) -> dict[tuple[str, ...], tuple[tuple[int, ...], str]]:
    """``{path: (shape, dtype name)}`` of the array leaves of a state or of its metadata."""
    flat = ocp.tree.to_flat_dict(tree)
    return {k: (tuple(v.shape), np.dtype(v.dtype).name) for k, v in flat.items()
            if hasattr(v, "shape")}


def _mismatch(saved: dict, expected: dict) -> str | None:
    """The first difference between two `_array_leaves` results, in words, or None."""
    for key in sorted(set(saved) | set(expected)):
        name = "/".join(key)
        if key not in saved:
            return f"{name} is missing from the checkpoint"
        if key not in expected:
            return f"the checkpoint has {name}, this run does not"
        if saved[key] != expected[key]:
            (s_shape, s_dtype), (e_shape, e_dtype) = saved[key], expected[key]
            return f"{name} is {s_dtype}{list(s_shape)} there, {e_dtype}{list(e_shape)} here"
    return None


class Checkpointer:
    """A ``CheckpointManager`` keeping the last `max_to_keep` checkpoints in `directory`.

    Args:
      directory: where checkpoints go (created if missing); a local path (made absolute) or
        a ``gs://`` path.
      max_to_keep: how many recent checkpoints to keep.
      guard: called with the step before each save; it raises to stop the save (the
        workdir lock's `check`: a run whose bucket lock was taken over writes nothing more).
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int,
                 guard: Callable[[int], None] | None = None):
        self.directory = os.fspath(run_files.path(directory))
        self._guard = guard
        self._remove_unfinished()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=True, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "data"), options=options
        )

    def _remove_unfinished(self) -> None:
        """Deletes the unfinished writes of a killed run (process 0; synchronously, unlike
        Orbax's ``cleanup_tmp_directories``, whose thread can outlive a short program): the
        temporary directories, and in a bucket the step directories without Orbax's commit
        marker (module docstring)."""
        if jax.process_index() != 0 or not run_files.is_dir(self.directory):
            return
        bucket = run_files.is_url(self.directory)
        for name in run_files.listdir(self.directory):
            path = run_files.path(self.directory) / name
            unfinished = TMP_MARK in name or (
                bucket and name.isdigit() and not ocp.step.is_path_finalized(path))
            if unfinished:
                logging.info("removing the unfinished checkpoint write %s", name)
                run_files.remove(path)

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, iterator: Any) -> None:
        """Saves `state` (canonical layout) and `iterator`'s position as step `step`.

        Args:
          step: the step number (the number of optimizer steps `state` has taken).
          state: the `TrainState` pytree.
          iterator: the grain train iterator (positioned after the last batch used).

        Raises:
          Exception: whatever the `guard` raises; nothing is written then.
        """
        if self._guard is not None:
            self._guard(step)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=iterator_save_args(iterator)
            ),
            force=True,
        )

    def _state_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step), "state")

    def _check_fits(self, step: int, expected: dict) -> None:
        """Raises `CheckpointError` if step's saved arrays differ from `expected`'s.

        Raises:
          CheckpointError: names, shapes or dtypes differ (another model or optimizer).
          Exception: the metadata cannot be read (the caller treats the step as unreadable).
        """
        path = self._state_dir(step)
        saved = _array_leaves(ocp.StandardCheckpointHandler().metadata(epath.Path(path)).tree)
        problem = _mismatch(saved, expected)
        if problem is not None:
            raise CheckpointError(
                f"the checkpoint {path} does not fit this config (another model, optimizer or "
                f"dataset?): {problem}; use a new --workdir"
            )

    def _restore_step(self, step: int, abstract: Any, iterator: Any) -> tuple[Any, Any]:
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=iterator_restore_args(iterator)
            ),
        )
        return restored["state"], restored["data"]

    def _set_aside(self, steps: list[int]) -> None:
        """Renames unreadable step directories to ``<step>.unreadable`` (kept for inspection;
        the resumed run saves those steps again)."""
        if jax.process_index() == 0:
            for step in steps:
                path = os.path.join(self.directory, str(step))
                target, n = f"{path}.unreadable", 1
                while run_files.exists(target):
                    target, n = f"{path}.unreadable{n}", n + 1
                run_files.rename(path, target)
                logging.warning("moved the unreadable checkpoint %s to %s", path, target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("jaxconv_checkpoint_set_aside")
        self._manager.reload()

    def restore_latest(self, state_like: Any, iterator: Any) -> tuple[Any, Any] | None:
        """Restores the newest readable checkpoint into the layout of `state_like`.

        Args:
          state_like: a `TrainState` of the right structure, shapes, dtypes and shardings
            (e.g. the freshly initialized one); only its metadata is used.
          iterator: a freshly built grain train iterator; it is moved to the saved position.

        Returns:
          ``(state, iterator)``, or None when there is no complete checkpoint.

        Raises:
          CheckpointError: the checkpoint was made for another model/config, or no step can
            be read (the message names the directory and each step's problem).
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        expected = _array_leaves(ocp.tree.serialize_tree(abstract, keep_empty_nodes=True))
        problems = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                self._check_fits(step, expected)
                restored = self._restore_step(step, abstract, iterator)
                error = None
            except CheckpointError:
                raise
            except Exception as err:  # noqa: BLE001 - Orbax/TensorStore/JSON raise many types.
                restored, error = None, err
            if not any_process(error is not None):
                if problems:
                    self._set_aside([s for s in self._manager.all_steps() if s > step])
                    logging.warning("resuming from the older checkpoint %s",
                                    os.path.join(self.directory, str(step)))
                return restored
            reason = _first_line(error) if error else "unreadable on another process"
            problems.append(f"step {step}: {reason}")
            logging.warning("checkpoint %s cannot be read (%s): trying an older one",
                            os.path.join(self.directory, str(step)), reason)
        if problems:
            raise CheckpointError(f"no readable checkpoint in {self.directory}: "
                                  f"{'; '.join(problems)}. Delete the broken step directories "
                                  f"to start over, or use a new --workdir")
        return None

    def wait(self) -> None:
        """Blocks until the background writes are done."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
