"""Parameter paths: the one spelling of a parameter's name, ``stage1/conv/kernel``.

Every part of jaxconv that names parameters goes through `path_name`: freezing patterns and
``init.exclude`` (shell patterns over these names), load reports, the torchvision import,
and the optimizer's weight-decay mask (which looks at the last component, ``kernel``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Any

import jax

SEPARATOR = "/"


def path_name(path: Iterable[Any]) -> str:
    """``"stage1/conv/kernel"`` from a pytree key path or a tuple of names.

    Args:
      path: a ``jax.tree_util`` key path (``DictKey``, ``SequenceKey``, ``GetAttrKey``;
        nnx's ``.value`` attribute keys are dropped) or plain strings / ints, as in
        ``nnx.to_flat_state`` paths.

    Returns:
      The components joined by ``/``.

    Examples:
      >>> import jax
      >>> from jaxconv.transfer import path_name
      >>> path_name((jax.tree_util.DictKey("fc"), jax.tree_util.DictKey("kernel")))
      'fc/kernel'
    """
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            if key.name != "value":
                parts.append(key.name)
        else:
            parts.append(str(key))
    return SEPARATOR.join(parts)


def leaf_name(path: Iterable[Any]) -> str:
    """The last component of `path_name` (``"kernel"``, ``"bias"``)."""
    return path_name(path).rsplit(SEPARATOR, 1)[-1]


def flat_params(tree: Any) -> dict[str, Any]:
    """``{"stage1/conv/kernel": array, ...}`` from an nnx `State` or nested dict of arrays."""
    return {path_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Whether parameter `name` matches one of the shell `patterns` (``stage1/*``)."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def check_patterns(names: Sequence[str], patterns: Sequence[str], what: str) -> None:
    """Raises if a pattern matches none of `names` (a typo would otherwise do nothing).

    Args:
      names: the model's parameter names.
      patterns: shell patterns over them.
      what: what the patterns are for, starting the message (``"freeze"``).

    Raises:
      ValueError: ``<what> pattern 'x' matches no parameter; parameters: [...]``.
    """
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ValueError(f"{what} pattern {pattern!r} matches no parameter; parameters: "
                             f"{list(names)}")
