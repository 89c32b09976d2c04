"""Starting a model from pretrained parameters: copy what fits, keep a fresh head.

`load_matching` copies parameters into a freshly built model where name and shape match; a
parameter of another shape (the classifier head for another number of classes) keeps its
fresh initialisation, and the returned `LoadReport` says which were loaded, which are new
and which of the source's were unused. The source is any ``{"stage1/conv/kernel": array}``
mapping or parameter tree: `checkpoint_params` reads one from a jaxconv training workdir,
`torch_params` from a torchvision state dict (`jaxconv.transfer.torch_import`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx

from jaxconv.runs import restore_params
from jaxconv.transfer.paths import check_patterns, flat_params, matches, path_name
from jaxconv.transfer.torch_import import convert_state_dict, read_state_dict


def checkpoint_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{"stage1/conv/kernel": array}`` of the newest checkpoint of a training run.

    Args:
      path: a training workdir, its ``checkpoints`` directory or one step directory.

    Raises:
      FileNotFoundError: no complete checkpoint there.
      ValueError: the checkpoint cannot be read.
    """
    return flat_params(restore_params(path))


def torch_params(model: nnx.Module, path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{"conv1/kernel": array}`` of a torchvision state dict file, in `model`'s layouts.

    Args:
      model: an ``AlexNet(variant="torchvision")`` or ``VGG`` (concrete or abstract).
      path: a ``.pth`` / ``.pt`` / ``.safetensors`` state dict (`read_state_dict`).

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: the model has no torchvision layout, or the file does not fit it
        (`WeightImportError`, a subclass).
    """
    params, _ = convert_state_dict(model, read_state_dict(path))
    return params


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """Which parameters came from the pretrained source and which kept their fresh init.

    Attributes:
      loaded: parameter paths copied from the source (``stage1/conv/kernel``).
      new: paths absent from the source, of another shape (a replaced head) or excluded.
      unused: paths in the source but not in the model.
    """

    loaded: tuple[str, ...]
    new: tuple[str, ...]
    unused: tuple[str, ...]

    def __str__(self) -> str:
        return (f"loaded {len(self.loaded)} pretrained parameters; new (freshly initialised): "
                f"{list(self.new) or 'none'}; unused from the source: "
                f"{list(self.unused) or 'none'}")


def load_matching(model: nnx.Module, source: Mapping[str, np.ndarray] | nnx.State,
                  *, strict_shapes: Sequence[str] = (), exclude: Sequence[str] = ()) -> LoadReport:
    """Copies pretrained parameters into `model` where names and shapes match, in place.

    A parameter whose shape differs (e.g. the classifier head for another number of classes)
    keeps its fresh initialisation and is reported as new.

    Args:
      model: the freshly built model (updated in place).
      source: ``{"stage1/conv/kernel": array}`` (`checkpoint_params`, `torch_params`) or
        an nnx parameter `State` / nested dict.
      strict_shapes: parameter names that must load (a mismatch raises).
      exclude: shell patterns (``output/*``): matching parameters are not loaded even when
        they fit (a new head for new classes of the same count); reported as new.

    Returns:
      The `LoadReport`.

    Raises:
      ValueError: nothing matched at all (wrong model for this checkpoint), a `strict_shapes`
        parameter could not be loaded, or an `exclude` pattern matches no parameter.
    """
    is_flat = isinstance(source, Mapping) and all(hasattr(v, "shape") for v in source.values())
    src = dict(source) if is_flat else flat_params(source)
    state = nnx.state(model, nnx.Param)
    target = flat_params(state)
    check_patterns(list(target), exclude, "exclude")
    loaded, new = [], []
    values = {}
    for name, leaf in target.items():
        skip = matches(name, exclude)
        value = None if skip else src.get(name)
        if value is not None and tuple(np.shape(value)) == tuple(leaf.shape):
            values[name] = jax.numpy.asarray(value, leaf.dtype)
            loaded.append(name)
        else:
            if name in strict_shapes and not skip:
                got = None if value is None else np.shape(value)
                raise ValueError(f"parameter {name!r} could not be loaded: model shape "
                                 f"{leaf.shape}, source {got}")
            values[name] = leaf
            new.append(name)
    if not loaded:
        raise ValueError(f"no pretrained parameter matches this model: source has "
                         f"{sorted(src)[:8]}..., model has {sorted(target)[:8]}...")
    updated = jax.tree_util.tree_map_with_path(lambda p, _: values[path_name(p)], state)
    nnx.update(model, updated)
    return LoadReport(tuple(loaded), tuple(new), tuple(sorted(set(src) - set(target))))
