"""What every jaxconv command line shares: one ``error: ...`` line instead of a traceback.

``train.py``, ``python -m jaxconv.predict`` and ``python -m jaxconv.plots`` end a bad
invocation with `fail` (exit status `EXIT_CODE`, 2) and keep absl's INFO chatter (Orbax's
progress lines) off the terminal with `quiet_logging`.
"""

from __future__ import annotations

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


def quiet_logging() -> None:
    """Shows warnings and errors only, unless ``--verbosity`` was given (absl's default is
    INFO once flags are parsed, which floods the terminal with Orbax's progress lines)."""
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)
