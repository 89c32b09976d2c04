"""What is wrong with ``train.py``'s ``--config`` file, in one line, before absl loads it.

ml_collections reports a config file that cannot be loaded with a traceback (a syntax error,
an exception in ``get_config``) or with a message about something else (a missing file
surfaces as a missing key). `problem` loads the file the way ml_collections will and says
what is wrong with the path (empty, missing, a directory), the file (a syntax error, with
``file:line``), its import (the exception and line) or ``get_config`` (its exception and
message, or a return value that is not a ConfigDict).
"""

from __future__ import annotations

import importlib.util
import os
import traceback
from collections.abc import Sequence

import ml_collections

FLAG = "config"


def config_argument(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` in `argv` (``--config=X`` or ``--config X``), or None."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{FLAG}="):
            return arg.split("=", 1)[1]
        if arg == f"--{FLAG}":
            return argv[i + 1] if i + 1 < len(argv) else None
    return None


def _where(err: BaseException, path: str) -> str:
    """``path:line`` of the innermost frame of `err`'s traceback in `path` (or `path`)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if os.path.abspath(f.filename) == os.path.abspath(path)]
    return f"{path}:{frames[-1].lineno}" if frames else path


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def problem(argv: Sequence[str]) -> str | None:
    """One line saying why the ``--config`` file of `argv` cannot give a config, or None.

    The file is executed and its ``get_config`` called (with the text after ``:`` in
    ``--config=file.py:arg``, if any), as ml_collections will do once more.

    Args:
      argv: the command line (``sys.argv``).

    Returns:
      None when there is no ``--config`` (absl reports the missing flag) or the file gives a
      ConfigDict.
    """
    value = config_argument(argv)
    if value is None:
        return None
    path, _, arg = value.partition(":")
    if not path:
        return "--config is empty: give a config file, e.g. --config configs/default.py"
    if not os.path.exists(path):
        return f"--config {path}: no such file"
    if os.path.isdir(path):
        return f"--config {path}: is a directory, not a config file (e.g. configs/default.py)"
    try:
        with open(path, "rb") as f:
            source = f.read()
        code = compile(source, path, "exec")
    except SyntaxError as err:
        return f"{path}:{err.lineno}: {err.msg} (syntax error in the --config file)"
    except (OSError, ValueError) as err:
        return f"--config {path}: cannot be read ({_one_line(err)})"
    spec = importlib.util.spec_from_loader("jaxconv_config_check", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    try:
        exec(code, module.__dict__)  # noqa: S102 - what ml_collections does with it next.
    except Exception as err:  # noqa: BLE001 - any error of the user's file.
        return f"{_where(err, path)}: {_one_line(err)} (while loading the --config file)"
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        return f"--config {path}: defines no get_config() function"
    try:
        config = get_config(arg) if arg else get_config()
    except Exception as err:  # noqa: BLE001 - any error of the user's function.
        return f"{_where(err, path)}: get_config() raised {_one_line(err)}"
    if not isinstance(config, ml_collections.ConfigDict):
        return (f"--config {path}: get_config() returned {type(config).__name__}, not an "
                f"ml_collections.ConfigDict")
    return None
