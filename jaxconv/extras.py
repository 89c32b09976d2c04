"""Optional dependencies: which pip extra brings which packages, and one clear error without it.

`pip install jaxconv` brings the core (jax, flax, optax, chex, numpy): enough for
`jaxconv.functional`, `jaxconv.layers`, `jaxconv.models` and `python -m jaxconv.summary`.
The trainer-side packages (`jaxconv.data`, `jaxconv.training`, `jaxconv.predict`,
`jaxconv.plots`, `jaxconv.pretrained`) need ``pip install 'jaxconv[train]'``; each calls
`require` first thing in its ``__init__``, so that using one without the extra fails with one
line naming the extra instead of a traceback through the first missing import::

    ImportError: jaxconv.training needs the 'train' extra: pip install 'jaxconv[train]'
    (missing: grain, tensorboardX)

Keep `EXTRAS` in step with ``[project.optional-dependencies]`` in ``pyproject.toml``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import MappingProxyType

# extra -> {module it provides: distribution that pip installs for it}. absl-py is also a
# dependency of optax and chex (so of the core); the trainer imports it itself.
EXTRAS = MappingProxyType({
    "train": MappingProxyType({
        "absl": "absl-py",
        "filelock": "filelock",
        "gcsfs": "gcsfs",
        "grain": "grain",
        "importlib_resources": "importlib_resources",
        "matplotlib": "matplotlib",
        "ml_collections": "ml-collections",
        "orbax.checkpoint": "orbax-checkpoint",
        "PIL": "pillow",
        "scipy": "scipy",
        "sklearn": "scikit-learn",
        "tensorboardX": "tensorboardX",
        "tensorflow_datasets": "tensorflow-datasets",
        "tqdm": "tqdm",
    }),
})


def is_installed(module: str) -> bool:
    """Whether `module` (dotted name) can be imported, found without importing it.

    Args:
      module: an importable name, e.g. "orbax.checkpoint" (its parent package is imported).

    Returns:
      True when the module is already imported or an import finder locates it.
    """
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or an import hook refusing
        return False


def source_checkout() -> str | None:
    """The source tree jaxconv runs from (a directory with a ``pyproject.toml`` naming
    jaxconv next to the package: a clone, installed with ``pip install -e .``), else None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
            return root if 'name = "jaxconv"' in f.read() else None
    except OSError:
        return None


def source_install_hint(extra: str) -> str:
    """``" (from this source checkout: pip install -e '<root>[extra]')"``, where jaxconv runs
    from a clone (`source_checkout`): ``pip install 'jaxconv[extra]'`` would fetch jaxconv
    from the package index instead; ``""`` otherwise."""
    root = source_checkout()
    return f" (from this source checkout: pip install -e '{root}[{extra}]')" if root else ""


def require(extra: str, *modules: str, feature: str) -> None:
    """Raises one clear `ImportError` unless the packages of `extra` are installed.

    Args:
      extra: a key of `EXTRAS`, e.g. "train".
      *modules: the modules of `extra` that `feature` needs; all of the extra's by default.
      feature: what needs them, for the message (e.g. "jaxconv.training").

    Raises:
      ValueError: `extra` is not a key of `EXTRAS`, or a module is not one of its modules.
      ImportError: a module is missing; the message names the extra to install and what is
        missing (as pip distribution names), on one line.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; expected one of {sorted(EXTRAS)}")
    provided = EXTRAS[extra]
    unknown = [m for m in modules if m not in provided]
    if unknown:
        raise ValueError(f"{unknown} are not modules of the {extra!r} extra: {sorted(provided)}")
    missing = [m for m in (modules or tuple(provided)) if not is_installed(m)]
    if missing:
        names = ", ".join(provided[m] for m in missing)
        raise ImportError(
            f"{feature} needs the {extra!r} extra: pip install 'jaxconv[{extra}]' "
            f"(missing: {names}){source_install_hint(extra)}",
            name=missing[0],
        )
