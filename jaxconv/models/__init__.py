"""Classic CNNs built from `jaxconv.layers`, and the one registry that names them."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

from jaxconv.models.alexnet import AlexNet
from jaxconv.models.base import Classifier
from jaxconv.models.connectivity import ConnectivityNet
from jaxconv.models.lenet import LeNet5
from jaxconv.models.stage_net import StageNet
from jaxconv.models.vgg import VGG

MODELS: dict[str, Callable[..., Classifier]] = {
    "lenet5": LeNet5,
    "stagenet": StageNet,
    "alexnet": AlexNet,
    "vgg": VGG,
    "connectivity": ConnectivityNet,
}


def create_model(name: str, *, rngs: nnx.Rngs, **kwargs) -> Classifier:
    """Builds the model registered as `name` in `MODELS` with `kwargs`.

    Raises:
      ValueError: `name` is not in `MODELS` (the message lists the valid names), or the
        keyword arguments do not fit the model.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    try:
        return MODELS[name](rngs=rngs, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {name!r}: {e}") from e


def count_params(model: nnx.Module) -> int:
    """Number of scalars in the model's `nnx.Param`s."""
    state = nnx.state(model, nnx.Param)
    return sum(int(x.size) for x in jax.tree.leaves(state))


__all__ = ["MODELS", "AlexNet", "Classifier", "ConnectivityNet", "LeNet5", "StageNet", "VGG",
           "count_params", "create_model"]
