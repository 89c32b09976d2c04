"""Command-line plumbing for ``train.py``: one clear error line instead of a traceback.

`parse_flags` is ``app.run``'s flag parser: an unknown ``--config.<key>`` override or a value
of the wrong type ends the program with one line naming the key, the value and what is
valid (ml_collections would otherwise print an AttributeError traceback or absl a two-line
usage error); so does a ``--config`` file that cannot be loaded (`config_file.problem`).
`clean_errors` does the same for errors found after parsing (`ConfigError`, an unusable or
busy workdir, a full disk, a dataset that is not prepared, a non-finite loss, an unusable
checkpoint), reports a run that is already complete (exit status 0) and a stop (SIGTERM or
Ctrl-C: checkpoint written, exit status 143 or 130). The helpers every command line
shares (`fail`, `quiet_logging`) are in `jaxconv.cli_errors`.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from absl import flags

from jaxconv.cli_errors import fail
from jaxconv.data.bucket_cache import DataBucketError
from jaxconv.training import config_file
from jaxconv.training.checkpoint import CheckpointError
from jaxconv.training.config import ConfigError
from jaxconv.training.distributed import DistributedArgumentError
from jaxconv.training.job import DatasetCorruptError
from jaxconv.training.logs import NonFiniteLossError
from jaxconv.training.loop import DivergedError
from jaxconv.training.preemption import INTERRUPTED_EXIT_CODE, Preempted
from jaxconv.training.resume import RunComplete
from jaxconv.training.workdir import (
    LOCK_LOST_EXIT_CODE,
    DiskFullError,
    WorkdirBusyError,
    WorkdirError,
    WorkdirLockLost,
)

CONFIG_FLAG = "config"
REQUIRED_FLAGS = [CONFIG_FLAG, "workdir"]  # train.py marks these required.
USAGE = ("usage: python train.py --config CONFIG_FILE --workdir DIR [--config.KEY=VALUE ...]\n"
         "example: python train.py --config configs/default.py --workdir runs/default\n"
         "(python train.py --help lists every flag)")
# absl's help flags; each prints the help and exits with status 1, which parse_flags makes 0.
HELP_FLAGS = ("--help", "-help", "-?", "--helpshort", "-helpshort", "--helpfull", "-helpfull",
              "--helpxml", "-helpxml")


def _config_path(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{CONFIG_FLAG}="):
            return arg.split("=", 1)[1].split(":", 1)[0]
        if arg == f"--{CONFIG_FLAG}" and i + 1 < len(argv):
            return argv[i + 1].split(":", 1)[0]
    return None


def _load_config(argv: Sequence[str]) -> Any:
    """The config the ``--config`` file defines (None if it cannot be loaded)."""
    path = _config_path(argv)
    if path is None:
        return None
    try:
        spec = importlib.util.spec_from_file_location("_jaxconv_cli_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config()
    except Exception:  # noqa: BLE001 - only used to word an error better.
        return None


def _overrides(argv: Sequence[str]) -> Iterator[tuple[str, str]]:
    prefix = f"--{CONFIG_FLAG}."
    for arg in argv:
        if arg.startswith(prefix):
            key, _, value = arg[len(prefix):].partition("=")
            yield key, value


def _lookup(config: Any, key: str) -> tuple[Any, str | None]:
    """``(value, None)`` for an existing dotted key, else ``(parent, missing_part)``."""
    node = config
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return node, part
        node = node[part]
    return node, None


def _dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    for name in node.keys():
        yield f"{prefix}{name}"
        if hasattr(node[name], "keys"):
            yield from _dotted_keys(node[name], f"{prefix}{name}.")


def _did_you_mean(missing: str, valid: Sequence[str], config: Any) -> str:
    """`` did you mean 'x'?`` for the closest valid key at that level, else for the closest
    key anywhere in the config by its last part (``optimizer.learning_rate``); else ``""``."""
    close = difflib.get_close_matches(missing, valid, n=1)
    if not close:
        keys = list(_dotted_keys(config))
        by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = [by_leaf[m] for m in difflib.get_close_matches(missing, list(by_leaf), n=1)]
    return f" did you mean {close[0]!r}?" if close else ""


def _unknown_key_message(argv: Sequence[str], config: Any) -> str:
    for key, value in _overrides(argv):
        parent, missing = _lookup(config, key)
        if missing is not None:
            valid = sorted(parent.keys()) if hasattr(parent, "keys") else []
            where = key.rsplit(".", 1)[0] if "." in key else ""
            scope = f"config.{where}" if where else "config"
            return (f"--config.{key}={value}: {missing!r} is not a key of {scope};"
                    f"{_did_you_mean(missing, valid, config)} valid keys: {valid}")
    return "an override names a key the config does not have"


def _bad_value_message(err: Exception, argv: Sequence[str], config: Any) -> str:
    text = " ".join(str(err).split("\n")[0].split())
    for key, value in _overrides(argv):
        if f"--{CONFIG_FLAG}.{key}=" not in text and f"'{value}'" in text:
            # ml_collections' tuple parser names the value only ("could not convert ...").
            text = f"--{CONFIG_FLAG}.{key}={value}: {text}"
        if f"--{CONFIG_FLAG}.{key}=" in text and config is not None:
            current, missing = _lookup(config, key)
            if missing is None:
                return (f"--config.{key}={value}: expected {type(current).__name__} "
                        f"(like the default {current!r}); {text.split(': ', 1)[-1]}")
    return text


def parse_flags(argv: list[str]) -> list[str]:
    """``absl.app.run`` flags parser that fails with one line (module docstring).

    A misspelled ``--config.<key>`` gets a "did you mean" besides the valid keys; a missing
    required flag (`REQUIRED_FLAGS`) gets `USAGE` (the flags and an example) before the
    ``error:`` line, exit status 2; ``--help`` (or ``-h``) prints the help, exit status 0.
    """
    helping = any(a in HELP_FLAGS or a == "-h" for a in argv[1:])
    problem = None if helping else config_file.problem(argv)  # absl: tracebacks.
    if problem is not None:
        fail(problem)
    argv = ["--help" if a == "-h" else a for a in argv]
    try:
        return flags.FLAGS(argv)
    except SystemExit as err:  # absl printed the help and exits with status 1.
        if err.code == 1 and any(a in HELP_FLAGS for a in argv[1:]):
            sys.exit(0)
        raise
    except flags.Error as err:
        missing = [f"--{n}" for n in REQUIRED_FLAGS if n in flags.FLAGS
                   and flags.FLAGS[n].value is None]
        if any(name in str(err) for name in missing):  # absl's check of a required flag.
            print(USAGE, file=sys.stderr)
            fail(f"missing required flag{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        fail(_bad_value_message(err, argv, _load_config(argv)))
    except (AttributeError, KeyError) as err:  # ml_collections: unknown --config.<key>.
        config = _load_config(argv)
        fail(_unknown_key_message(argv, config) if config is not None else str(err))


def check_workdir_flag(value: str | None) -> str:
    """``--workdir``'s value, refused (one ``error:`` line, exit 2) when empty or blank.

    An empty value (``--workdir=$UNSET``) would otherwise train into the current directory;
    that needs ``--workdir=.``, written out.
    """
    if value is None or not value.strip():
        fail(f"--workdir={value or ''!s} names no directory (an unset shell variable?); give "
             f"a directory, or --workdir=. for the current one")
    return value


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Turns the errors a user can fix into an ``error: ...`` message, no traceback.

    Exit status 0 for a run that is already complete (``RunComplete``: its line on stdout,
    nothing written); 2 for a bad config (or one that does not match the workdir's run) or an
    unusable workdir; 1 for a dataset that is not prepared (or a ``gs://`` data_dir whose
    bucket cannot be read), a non-finite loss, an unusable checkpoint, a workdir in use by
    another trainer or a full disk; 3 when another trainer took over the run's bucket lock
    (`WorkdirLockLost`: nothing more written); 143 after SIGTERM and 130 after SIGINT
    (Ctrl-C), once the checkpoint of the step reached is written (``stopped:
    ...`` on stderr); 130 for a Ctrl-C outside the training steps.
    """
    try:
        yield
    except RunComplete as err:
        print(err, flush=True)
        sys.exit(0)
    except (ConfigError, DistributedArgumentError) as err:
        fail(str(err))
    except DiskFullError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        # At once: TensorBoard's writer would retry its failed flush at exit, with tracebacks.
        os._exit(1)
    except (WorkdirBusyError, FileNotFoundError, DataBucketError, NonFiniteLossError,
            DivergedError, CheckpointError, DatasetCorruptError) as err:
        fail(str(err), code=1)
    except ImportError as err:  # An optional extra missing (its message names the extra).
        fail(str(err).strip().splitlines()[0], code=1)
    except WorkdirLockLost as err:
        fail(str(err), code=LOCK_LOST_EXIT_CODE)
    except WorkdirError as err:
        fail(str(err))
    except Preempted as err:
        print(f"stopped: {err}", file=sys.stderr, flush=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        print("stopped: SIGINT (Ctrl-C) outside the training steps; what was written is kept "
              "(a run stopped before its metrics or plots were written finishes them when "
              "the same command runs again)", file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED_EXIT_CODE)
