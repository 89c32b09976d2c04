"""``train.py`` with faults injected at the training loop's hook points (test-side only).

    python tests/reliability/fault_driver.py --fault_at=save@10 <train.py's flags>

It parses the same flags as ``train.py`` (it is ``train.py``'s ``main``, run with a
`FaultHooks`), plus ``--fault_at``: comma-separated ``POINT@STEP[:SIGNAL]`` entries; when the
loop reaches POINT at STEP, the process sends itself SIGNAL (default KILL). Points are the
`jaxconv.training.Hooks` methods: ``start`` (state restored, no step run yet), ``step`` (step
dispatched, running on the device), ``save`` (a checkpoint save returned: its files are being
written in the background), ``end`` (all steps done, the last save in flight, before the
final evaluation). ``step@23:TERM`` sends SIGTERM instead (a preemption notice).
"""

import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

import train  # noqa: E402  (defines train.py's flags; its runtime tuning runs first)
from jaxconv import training  # noqa: E402
from jaxconv.training import cli  # noqa: E402

_FAULT_AT = flags.DEFINE_string("fault_at", "", "POINT@STEP[:SIGNAL],... (module docstring).")

POINTS = ("start", "step", "save", "end")


def parse_plan(text: str) -> dict[tuple[str, int], signal.Signals]:
    """``{(point, step): signal}`` from ``"save@10,step@23:TERM"``.

    Raises:
      ValueError: an unknown point, a step that is not an integer, or an unknown signal.
    """
    plan = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        point, _, rest = entry.partition("@")
        step, _, name = rest.partition(":")
        if point not in POINTS:
            raise ValueError(f"--fault_at={text}: unknown point {point!r}; valid: {POINTS}")
        plan[(point, int(step))] = signal.Signals[f"SIG{name or 'KILL'}"]
    return plan


class FaultHooks(training.Hooks):
    """Signals this process at the planned (point, step) pairs."""

    def __init__(self, plan: dict[tuple[str, int], signal.Signals]):
        self.plan = plan

    def _point(self, point: str, step: int) -> None:
        sig = self.plan.get((point, step))
        if sig is not None:
            os.kill(os.getpid(), sig)

    def on_start(self, step: int) -> None:
        self._point("start", step)

    def on_step(self, step: int) -> None:
        self._point("step", step)

    def on_save(self, step: int) -> None:
        self._point("save", step)

    def on_end(self, step: int) -> None:
        self._point("end", step)


def main(argv):
    train.main(argv, hooks=FaultHooks(parse_plan(_FAULT_AT.value)))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
