"""StageNet: a stack of the lecture's typical stages (Jarrett et al. 2009) and a classifier."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import Activation, Dense, Dropout, Flatten, Sequential, Stage
from jaxconv.models.base import Classifier, check_dtypes, flat_features


def _per_stage(value, n: int, name: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries, expected one per stage ({n})")
        return tuple(value)
    return (value,) * n


class StageNet(Classifier):
    """Stages (conv -> rectify -> LCN -> pool), then optional hidden FC layers and a classifier.

    Args:
      num_classes: output logits.
      input_shape: `(H, W, C)` of the images.
      features: output channels of each stage; its length is the number of stages.
      kernel_size: conv kernel size, one for all stages or one per stage.
      conv_stride: conv stride, one for all stages or one per stage (default 1): with
        ``pool="none"`` and ``conv_stride=2`` a stage downsamples like a 2x2 pooling, by a
        strided convolution instead (the all-convolutional net, Springenberg et al. 2015).
      activation: rectification (`jaxconv.layers.ACTIVATIONS`), e.g. "relu" or "tanh_abs".
      lcn_kernel_size: odd LCN window per stage (or one for all); None disables LCN.
      pool: "max", "avg", "l2" or "none" per stage (or one for all).
      pool_window: pooling window (stride = window) per stage (or one for all).
      hidden: sizes of hidden fully-connected layers before the classifier.
      dropout: dropout rate before each fully-connected layer (0 = none).
      dtype: compute dtype of the layers (None: float32 with float32 params; "bfloat16" for
        mixed precision; LCN and Lp pooling still sum in float32). The logits are float32.
      param_dtype: parameter dtype (float32 master weights by default).
      rngs: parameter initialisation and dropout streams.

    Layer names: `stage1 ... stageN`, `flatten`, `fc1 ...`, `output`.

    References:
      Jarrett, Kavukcuoglu, Ranzato & LeCun, ICCV 2009; Springenberg, Dosovitskiy, Brox &
      Riedmiller, "Striving for simplicity: the all convolutional net", ICLR 2015 workshop.
    """

    def __init__(self, num_classes: int, *, input_shape: Sequence[int],
                 features: Sequence[int] = (16, 32), kernel_size=3, conv_stride=1,
                 activation: str = "relu",
                 lcn_kernel_size=(5, 3), pool="max", pool_window=2,
                 hidden: Sequence[int] = (), dropout: float = 0.0, dtype=None,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        n = len(features)
        if n < 1:
            raise ValueError("features must list at least one stage")
        kernels = _per_stage(kernel_size, n, "kernel_size")
        strides = _per_stage(conv_stride, n, "conv_stride")
        lcns = _per_stage(lcn_kernel_size, n, "lcn_kernel_size")
        pools = _per_stage(pool, n, "pool")
        windows = _per_stage(pool_window, n, "pool_window")
        p = check_dtypes(dtype, param_dtype)
        layers, cin = {}, input_shape[-1]
        for i, cout in enumerate(features):
            layers[f"stage{i + 1}"] = Stage(
                cin, cout, kernels[i], conv_stride=strides[i], activation=activation,
                lcn_kernel_size=lcns[i], pool=pools[i], pool_window=windows[i], rngs=rngs, **p)
            cin = cout
        layers["flatten"] = Flatten()
        width = flat_features(Sequential(**layers), input_shape)
        for i, size in enumerate(hidden):
            if dropout:
                layers[f"dropout{i + 1}"] = Dropout(dropout, rngs=rngs)
            layers[f"fc{i + 1}"] = Dense(width, size, rngs=rngs, **p)
            layers[f"relu_fc{i + 1}"] = Activation("relu")
            width = size
        if dropout:
            layers["dropout_out"] = Dropout(dropout, rngs=rngs)
        layers["output"] = Dense(width, num_classes, rngs=rngs, **p)
        super().__init__(input_shape, **layers)
