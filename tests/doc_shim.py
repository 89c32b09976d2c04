"""Stand-ins for ``python``, ``pip`` and ``gcloud`` when tests run the commands of a docs page.

``python doc_shim.py MODE ARGS...`` where MODE is the command it stands in for
(`tests/test_accelerators_doc.py` puts small wrappers named ``python``, ``pip`` and ``gcloud``
first on ``PATH``):

- ``python``: runs ``-c CODE``, ``-m MODULE ARGS`` or ``SCRIPT ARGS`` in this interpreter;
  ``train.py`` gets the ``--config`` overrides of ``$DOC_TRAIN_OVERRIDES`` appended (few
  steps), and with ``$DOC_MOCK_EXAMPLES`` set everything runs under
  ``tfds.testing.mock_data(num_examples=...)`` (datasets that cannot be downloaded here).
- ``pip``: installs nothing; checks that the extras of each requirement exist (`unknown_extras`)
  and exits 1 if one does not.
- ``gcloud``: records its arguments (one JSON list per line in ``$DOC_GCLOUD_LOG``); a
  ``compute tpus tpu-vm ssh ... --command=CMD`` runs CMD with bash here, as if this machine
  were the worker, and waits for what it started in the background.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import runpy
import shlex
import subprocess
import sys

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REQUIREMENT = re.compile(r"^(?P<name>[^\[\]=<>~!]+?)\[(?P<extras>[^\]]+)\]")


def unknown_extras(requirement: str) -> list[str]:
    """The extras of a pip requirement that its package does not declare.

    ``jax[...]`` is checked against the installed jax's metadata; a path ending in ``jaxconv``
    or ``.`` (``.[train]``, ``$HOME/jaxconv[train]``) against this repository's
    ``pyproject.toml``. Requirements without extras, and other packages, give ``[]``.
    """
    match = _REQUIREMENT.match(requirement.strip("'\""))
    if match is None:
        return []
    name = match["name"].rstrip("/")
    extras = [e.strip() for e in match["extras"].split(",")]
    if name == "jax":
        declared = set(importlib.metadata.metadata("jax").get_all("Provides-Extra") or [])
    elif name == "." or name.endswith("jaxconv"):
        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            declared = set(tomllib.load(f)["project"]["optional-dependencies"])
    else:
        return []
    return [e for e in extras if e.replace("_", "-") not in declared and e not in declared]


def _python(args: list[str]) -> None:
    if args[:1] == ["-c"]:
        sys.argv = ["-c", *args[2:]]
        exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
        return
    module = args[1] if args[:1] == ["-m"] else None
    target, rest = (module, args[2:]) if module else (args[0], args[1:])
    if os.path.basename(target) == "train.py":
        rest = rest + shlex.split(os.environ.get("DOC_TRAIN_OVERRIDES", ""))
    sys.argv = [target, *rest]
    mock = contextlib.nullcontext()
    if os.environ.get("DOC_MOCK_EXAMPLES"):
        import tensorflow_datasets as tfds

        mock = tfds.testing.mock_data(num_examples=int(os.environ["DOC_MOCK_EXAMPLES"]))
    with mock:
        if module:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")


def _pip(args: list[str]) -> int:
    bad = {r: unknown_extras(r) for r in args if not r.startswith("-")}
    bad = {r: e for r, e in bad.items() if e}
    if bad:
        print(f"pip stand-in: unknown extras {bad}", file=sys.stderr)
    return 1 if bad else 0


def _gcloud(args: list[str]) -> int:
    with open(os.environ["DOC_GCLOUD_LOG"], "a") as f:
        f.write(json.dumps(args) + "\n")
    if args[:4] != ["compute", "tpus", "tpu-vm", "ssh"]:
        return 0
    commands = [a.split("=", 1)[1] for a in args if a.startswith("--command=")]
    commands += [b for a, b in zip(args, args[1:]) if a == "--command"]
    if not commands:
        return 0
    return subprocess.run(["bash", "-c", commands[0] + "\nwait"]).returncode


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "python":
        _python(args)
        return 0
    return {"pip": _pip, "gcloud": _gcloud}[mode](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
