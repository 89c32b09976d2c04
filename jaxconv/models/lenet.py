"""LeNet-5 (LeCun et al. 1998) in its modern full-connection form."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import Activation, AvgPool, Conv, Dense, Flatten, MaxPool
from jaxconv.models.base import Classifier, check_dtypes


class LeNet5(Classifier):
    """LeNet-5: conv5x5(6) -> pool -> conv5x5(16) -> pool -> FC120 -> FC84 -> FC(classes).

    61,706 parameters for 10 classes, on 32x32x1 input or on 28x28x1 (MNIST) with the first
    convolution padded by 2 so its output is 28x28 either way. C3 is fully connected to S2 (the
    paper's sparse connection table is not reproduced: the "modern" form).

    Args:
      num_classes: output logits.
      in_channels: image channels.
      input_size: 32 (the paper) or 28 (MNIST, padding 2 on C1); any size from 28 on works.
      activation: "relu" (default, modern) or "tanh" (closer to the paper's scaled tanh).
      pool: "max" (default) or "avg" (the paper's subsampling, without its trainable scale).
      dtype: compute dtype of the layers (None: float32 with float32 params; "bfloat16" for
        mixed precision). The logits are float32 either way.
      param_dtype: parameter dtype (float32 master weights by default).
      rngs: parameter initialisation.

    References:
      LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
      recognition", Proc. IEEE 1998, §II.B.
    """

    def __init__(self, num_classes: int = 10, *, in_channels: int = 1, input_size: int = 32,
                 activation: str = "relu", pool: str = "max", dtype=None,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        if input_size < 28:
            raise ValueError(f"LeNet5 needs input_size >= 28, got {input_size}")
        pool_cls = {"max": MaxPool, "avg": AvgPool}.get(pool)
        if pool_cls is None:
            raise ValueError(f"unknown pool {pool!r}; valid: ['avg', 'max']")
        pad = max(0, (32 - input_size + 1) // 2)
        h = input_size + 2 * pad - 4  # after C1
        flat = ((h // 2 - 4) // 2) ** 2 * 16
        p = dict(check_dtypes(dtype, param_dtype), rngs=rngs)
        super().__init__(
            (input_size, input_size, in_channels),
            c1=Conv(in_channels, 6, 5, padding=pad, **p), act1=Activation(activation),
            s2=pool_cls(2),
            c3=Conv(6, 16, 5, padding="VALID", **p), act3=Activation(activation),
            s4=pool_cls(2),
            flatten=Flatten(),
            f5=Dense(flat, 120, **p), act5=Activation(activation),
            f6=Dense(120, 84, **p), act6=Activation(activation),
            output=Dense(84, num_classes, **p),
        )
