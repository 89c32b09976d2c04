"""Orbax checkpoints of the train state and the data iterator, for exact resumption.

Each checkpoint ``workdir/checkpoints/<step>/`` holds two items: ``state`` (the `TrainState`:
params, optimizer state, step, RNG; Orbax's standard format, written once for replicated
arrays in a multi-process run) and ``data`` (each process's grain iterator position, one JSON
file per process). Saves are asynchronous: the arrays are copied off the device before
`Checkpointer.save` returns, the files are written in the background. Restoring both items
and re-running the same jitted step reproduces an uninterrupted run bit for bit.

Every process must call `save`, `restore_latest` and `close` (Orbax synchronizes them).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxconv.data import iterator_restore_args, iterator_save_args


class Checkpointer:
    """A ``CheckpointManager`` keeping the last `max_to_keep` checkpoints in `directory`.

    Args:
      directory: where checkpoints go (created if missing); absolute or made absolute.
      max_to_keep: how many recent checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int):
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=True, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, item_names=("state", "data"), options=options
        )

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, step: int, state: Any, iterator: Any) -> None:
        """Saves `state` (canonical layout) and `iterator`'s position as step `step`.

        Args:
          step: the step number (the number of optimizer steps `state` has taken).
          state: the `TrainState` pytree.
          iterator: the grain train iterator (positioned after the last batch used).
        """
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=iterator_save_args(iterator)
            ),
            force=True,
        )

    def restore_latest(self, state_like: Any, iterator: Any) -> tuple[Any, Any] | None:
        """Restores the newest checkpoint into the layout of `state_like`.

        Args:
          state_like: a `TrainState` of the right structure, shapes, dtypes and shardings
            (e.g. the freshly initialized one); only its metadata is used.
          iterator: a freshly built grain train iterator; it is moved to the saved position.

        Returns:
          ``(state, iterator)``, or None when there is no checkpoint.
        """
        step = self.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), data=iterator_restore_args(iterator)
            ),
        )
        return restored["state"], restored["data"]

    def wait(self) -> None:
        """Blocks until the background writes are done."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for pending writes and releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()
