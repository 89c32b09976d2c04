"""`Hooks`: what `train_and_evaluate` calls at fixed points of the training loop.

Subclass `Hooks` and override the points you need (each does nothing by default), then pass
an instance as ``train_and_evaluate(..., hooks=...)``. The reliability tests inject faults
this way (``tests/reliability/fault_driver.py`` signals its own process at a chosen point);
profilers and custom loggers can do the same. Every process calls its hooks at the same
steps. A hook runs on the host between dispatched steps: keep it quick, and do not block on
device values in ``on_step`` (that would serialize the loop). `HookList` calls several in
order; the trainer adds its own (``config.profile_steps``: `jaxconv.training.profiling`).
"""

from __future__ import annotations

from collections.abc import Iterable


class Hooks:
    """The loop's callback points, all no-ops; override any of them in a subclass."""

    def on_start(self, step: int) -> None:
        """The state is restored (`step` is 0 or a checkpoint's step); no step has run yet.

        Args:
          step: the step training starts from.
        """

    def on_step(self, step: int) -> None:
        """Step `step` was dispatched (it may still be running on the device).

        Args:
          step: the number of optimizer steps taken, this one included.
        """

    def on_save(self, step: int) -> None:
        """A checkpoint save of `step` returned; its files are written in the background.

        Args:
          step: the checkpoint's step.
        """

    def on_end(self, step: int) -> None:
        """All steps are done (the last save may be in flight), before the final evaluation.

        Args:
          step: the final step.
        """

    def on_close(self) -> None:
        """The loop is left: after `on_end`, or early by an exception (a non-finite loss, a
        preemption). Release here what the other points acquired (a profiler trace)."""


class HookList(Hooks):
    """Calls each of `hooks` in order at every point (`None` entries are skipped).

    Args:
      hooks: `Hooks` instances, or None.
    """

    def __init__(self, hooks: Iterable[Hooks | None]):
        self.hooks = tuple(h for h in hooks if h is not None)

    def on_start(self, step: int) -> None:
        for hook in self.hooks:
            hook.on_start(step)

    def on_step(self, step: int) -> None:
        for hook in self.hooks:
            hook.on_step(step)

    def on_save(self, step: int) -> None:
        for hook in self.hooks:
            hook.on_save(step)

    def on_end(self, step: int) -> None:
        for hook in self.hooks:
            hook.on_end(step)

    def on_close(self) -> None:
        for hook in self.hooks:
            hook.on_close()
