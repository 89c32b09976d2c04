"""AlexNet (Krizhevsky, Sutskever & Hinton 2012): the paper's network and torchvision's layout."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import (
    Activation,
    AdaptiveAvgPool,
    Conv,
    Dense,
    Dropout,
    Flatten,
    LocalResponseNorm,
    MaxPool,
)
from jaxconv.models.base import Classifier, check_dtypes

VARIANTS = ("original", "torchvision")


def _head(num_classes: int, dropout: float, p: dict) -> dict:
    """Flatten 6x6x256 -> dropout -> FC6 4096 -> dropout -> FC7 4096 -> FC8 (classes)."""
    return dict(
        flatten=Flatten(),
        drop6=Dropout(dropout, rngs=p["rngs"]), fc6=Dense(6 * 6 * 256, 4096, **p),
        relu6=Activation("relu"),
        drop7=Dropout(dropout, rngs=p["rngs"]), fc7=Dense(4096, 4096, **p),
        relu7=Activation("relu"),
        fc8=Dense(4096, num_classes, **p),
    )


def _original(p: dict, in_channels: int) -> dict:
    """The paper's two towers as one network: conv2/4/5 grouped (groups=2), LRN after 1 and 2."""
    return dict(
        conv1=Conv(in_channels, 96, 11, stride=4, padding="VALID", **p),
        relu1=Activation("relu"), lrn1=LocalResponseNorm(5, 1e-4, 0.75, 2.0), pool1=MaxPool(3, 2),
        conv2=Conv(96, 256, 5, padding=2, groups=2, **p),
        relu2=Activation("relu"), lrn2=LocalResponseNorm(5, 1e-4, 0.75, 2.0), pool2=MaxPool(3, 2),
        conv3=Conv(256, 384, 3, padding=1, **p), relu3=Activation("relu"),
        conv4=Conv(384, 384, 3, padding=1, groups=2, **p), relu4=Activation("relu"),
        conv5=Conv(384, 256, 3, padding=1, groups=2, **p), relu5=Activation("relu"),
        pool5=MaxPool(3, 2),
    )


def _torchvision(p: dict, in_channels: int) -> dict:
    """torchvision.models.alexnet's `features` + `avgpool` (one tower, no LRN, 64-192-384-256)."""
    return dict(
        conv1=Conv(in_channels, 64, 11, stride=4, padding=2, **p),
        relu1=Activation("relu"), pool1=MaxPool(3, 2),
        conv2=Conv(64, 192, 5, padding=2, **p), relu2=Activation("relu"),
        pool2=MaxPool(3, 2),
        conv3=Conv(192, 384, 3, padding=1, **p), relu3=Activation("relu"),
        conv4=Conv(384, 256, 3, padding=1, **p), relu4=Activation("relu"),
        conv5=Conv(256, 256, 3, padding=1, **p), relu5=Activation("relu"),
        pool5=MaxPool(3, 2), avgpool=AdaptiveAvgPool(6),
    )


class AlexNet(Classifier):
    """AlexNet, as the paper built it ("original") or as torchvision ships it ("torchvision").

    "original": 227x227x3 input, conv1 11x11/4 (96) -> ReLU -> LRN -> max 3/2 -> conv2 5x5 (256,
    groups 2) -> ReLU -> LRN -> max 3/2 -> conv3 3x3 (384) -> conv4 3x3 (384, groups 2) ->
    conv5 3x3 (256, groups 2) -> max 3/2 -> FC6 4096 -> FC7 4096 -> FC8: 60,965,224 parameters
    for 1000 classes (FC6 37,752,832, FC7 16,781,312). The paper's 224 does not give its 55x55
    maps; 227 does (a well-known erratum).
    "torchvision": torchvision.models.alexnet (61,100,840 parameters), any input >= 63x63 thanks
    to the adaptive 6x6 average pool; layer names conv1..conv5, fc6..fc8 map onto its state dict.

    Both: dropout (default 0.5) before FC6 and FC7, active after `model.train()`.

    Args:
      num_classes: output logits (1000 for ImageNet).
      variant: "original" or "torchvision".
      dropout: dropout rate.
      in_channels: image channels.
      dtype: compute dtype of the layers (None: float32 with float32 params; "bfloat16" for
        mixed precision; LRN still sums in float32). The logits are float32.
      param_dtype: parameter dtype (float32 master weights by default).
      rngs: parameter initialisation and dropout streams.

    References:
      Krizhevsky, Sutskever & Hinton, NeurIPS 2012; Krizhevsky 2014, "One weird trick..."
      (the one-tower form torchvision follows).
    """

    def __init__(self, num_classes: int = 1000, *, variant: str = "original",
                 dropout: float = 0.5, in_channels: int = 3, dtype=None,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        p = dict(check_dtypes(dtype, param_dtype), rngs=rngs)
        if variant == "original":
            features, shape = _original(p, in_channels), (227, 227, in_channels)
        elif variant == "torchvision":
            features, shape = _torchvision(p, in_channels), (None, None, in_channels)
        else:
            raise ValueError(f"unknown AlexNet variant {variant!r}; valid: {list(VARIANTS)}")
        self.variant = variant
        super().__init__(shape, **features, **_head(num_classes, dropout, p))
