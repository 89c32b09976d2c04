"""What every jaxconv command line shares: one ``error: ...`` line instead of a traceback.

``train.py``, ``python -m jaxconv.predict`` and ``python -m jaxconv.plots`` end a bad
invocation with `fail` (exit status `EXIT_CODE`, 2) and keep absl's INFO chatter (Orbax's
progress lines) and the tracebacks libraries attach to their logged errors (Orbax's, when a
background write fails) off the terminal with `quiet_logging`.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import NoReturn

from absl import flags
from absl import logging as absl_logging

EXIT_CODE = 2  # Bad arguments, config or workdir (argparse's status for usage errors).


def fail(message: str, code: int = EXIT_CODE) -> NoReturn:
    """Prints ``error: <message>`` on stderr and exits with status `code` (default 2).

    Args:
      message: one line saying what is wrong and, where it helps, what is valid.
      code: the exit status.

    Raises:
      SystemExit: always.
    """
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class _OneLine(logging.Formatter):
    """``<level>: <message>``; a record's traceback is replaced by its exception's first line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            lines = str(err).strip().splitlines()
            message += f" ({type(err).__name__}: {lines[0] if lines else ''})"
        return f"{record.levelname.lower()}: {message}"


def _not_reraised(record: logging.LogRecord) -> bool:
    """False for Orbax's records of a failed background write (logged with the exception,
    which Orbax then raises to its caller, who reports it in one line), and for asyncio's
    "exception was never retrieved" about the futures a failed Orbax read leaves."""
    if record.name == "asyncio":
        return "exception was never retrieved" not in str(record.msg)
    return not (record.exc_info and "orbax" in record.pathname.split(os.sep))


_INTERRUPTS: list[int] = []


def remember_interrupts() -> None:
    """Makes SIGINT raise KeyboardInterrupt *and* remember it (`interrupted`), so that one
    landing in a finalizer or a garbage-collector callback (where Python reports it as
    "Exception ignored" and goes on) still ends the command with status 130, and the
    report's traceback stays off the terminal (`quiet_logging`)."""
    signal.signal(signal.SIGINT, _interrupt)


def interrupted() -> bool:
    """Whether a SIGINT arrived since `remember_interrupts`."""
    return bool(_INTERRUPTS)


def _interrupt(signum, frame) -> None:
    _INTERRUPTS.append(signum)
    raise KeyboardInterrupt


def _quiet_unraisable(unraisable) -> None:
    """``sys.unraisablehook`` without Orbax's cleanup after a failed read (the coroutines and
    asyncio callbacks it leaves are collected later and would print tracebacks, though the
    read's error already reached its caller; pyproject.toml's test filters name the same),
    and without a remembered Ctrl-C's KeyboardInterrupt (`remember_interrupts`: the command
    reports it when it ends)."""
    leftover = "_read_array_index_and_device_put" in repr(unraisable.object) or (
        isinstance(unraisable.exc_value, RuntimeError)
        and str(unraisable.exc_value) == "Event loop is closed")
    remembered = isinstance(unraisable.exc_value, KeyboardInterrupt) and _INTERRUPTS
    if not (leftover or remembered):
        sys.__unraisablehook__(unraisable)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which tests and notebooks replace)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def quiet_logging() -> None:
    """Shows warnings and errors only, each as one ``warning: ...`` / ``error: ...`` line,
    unless ``--verbosity`` was given (absl's default is INFO once flags are parsed, which
    floods the terminal with Orbax's progress lines; a logged error's traceback is replaced
    by the exception's first line, and Orbax's logged copies of the errors it raises are
    left out, as are the tracebacks of what a failed Orbax read leaves behind)."""
    if flags.FLAGS.is_parsed() and flags.FLAGS["verbosity"].present:
        return
    absl_logging.set_verbosity(absl_logging.WARNING)
    sys.unraisablehook = _quiet_unraisable
    root = logging.getLogger()
    # absl's handler (an absl app), or the plain stderr handler absl's first log call adds
    # with logging.basicConfig (argparse tools), or a new one.
    handlers = [h for h in root.handlers if h is absl_logging.get_absl_handler()
                or type(h) in (logging.StreamHandler, _StderrHandler)]
    if not handlers:
        handlers = [_StderrHandler()]
        root.addHandler(handlers[0])
    for handler in handlers:
        handler.setFormatter(_OneLine())
        if _not_reraised not in handler.filters:
            handler.addFilter(_not_reraised)
