"""VGG (Simonyan & Zisserman 2015) in torchvision's layout: configurations A (11) and D (16)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxconv.layers import Activation, AdaptiveAvgPool, Conv, Dense, Dropout, Flatten, MaxPool
from jaxconv.models.base import Classifier, check_dtypes

# Convolutions per stage; every stage ends with a 2x2 max pool (the paper's Table 1).
STAGE_DEPTHS: dict[int, tuple[int, ...]] = {
    11: (1, 1, 2, 2, 2),  # configuration A
    16: (2, 2, 3, 3, 3),  # configuration D
}
CHANNELS = (64, 128, 256, 512, 512)
POOL_OUTPUT = 7  # torchvision's adaptive average pool: any input >= 32x32 reaches 7x7.

# torchvision's initialisation (He et al. 2015 for the ReLU convolutions; N(0, 0.01) for FCs).
conv_kernel_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
dense_kernel_init = nnx.initializers.normal(0.01)


def _features(depth: int, channels: Sequence[int], in_channels: int, p: dict) -> dict:
    """Stages of 3x3/1 pad-1 conv + ReLU, each ending in a 2x2 max pool: `conv{s}_{i}` names."""
    layers, cin = {}, in_channels
    for stage, (n_convs, cout) in enumerate(zip(STAGE_DEPTHS[depth], channels), start=1):
        for i in range(1, n_convs + 1):
            layers[f"conv{stage}_{i}"] = Conv(cin, cout, 3, padding=1,
                                              kernel_init=conv_kernel_init, **p)
            layers[f"relu{stage}_{i}"] = Activation("relu")
            cin = cout
        layers[f"pool{stage}"] = MaxPool(2)
    return layers


def _head(flat: int, hidden: int, num_classes: int, dropout: float, p: dict) -> dict:
    """torchvision's `classifier`: FC6 -> ReLU -> dropout -> FC7 -> ReLU -> dropout -> FC8."""
    def dense(n_in, n_out):
        return Dense(n_in, n_out, kernel_init=dense_kernel_init, **p)

    return dict(
        flatten=Flatten(),
        fc6=dense(flat, hidden), relu6=Activation("relu"), drop6=Dropout(dropout, rngs=p["rngs"]),
        fc7=dense(hidden, hidden), relu7=Activation("relu"), drop7=Dropout(dropout, rngs=p["rngs"]),
        fc8=dense(hidden, num_classes),
    )


class VGG(Classifier):
    """VGG-11 / VGG-16 without batch norm, as `torchvision.models.vgg11` / `vgg16` build them.

    Five stages of 3x3 convolutions (stride 1, padding 1) + ReLU, each followed by a 2x2/2 max
    pool; an adaptive 7x7 average pool (so any input from 32x32 works); then FC6 4096 -> ReLU
    -> dropout -> FC7 4096 -> ReLU -> dropout -> FC8 (classes). The flatten is NHWC (h, w, c)
    order; `jaxconv.pretrained` permutes FC6 when importing torchvision's (c, h, w) weights.
    Parameters for 1000 classes: VGG-11 132,863,336; VGG-16 138,357,544.

    Layer names: `conv{stage}_{i}`, `relu{stage}_{i}`, `pool{stage}` (stage 1..5), `avgpool`,
    `flatten`, `fc6`, `relu6`, `drop6`, `fc7`, `relu7`, `drop7`, `fc8`; they are one to one,
    in order, with torchvision's `features`, `avgpool` and `classifier` modules.

    Initialisation follows torchvision: conv kernels He normal (fan_out), FC kernels
    N(0, 0.01), biases zero.

    Args:
      num_classes: output logits (1000 for ImageNet).
      depth: 11 (configuration A) or 16 (configuration D).
      dropout: dropout rate after FC6 and FC7, active after `model.train()`.
      in_channels: image channels.
      channels: output channels of the five stages; `(64, 128, 256, 512, 512)` is VGG. Smaller
        widths give a same-layout miniature (tests, quick experiments).
      hidden: width of FC6 and FC7 (4096 in VGG).
      dtype: compute dtype of the layers (None: float32 with float32 params; "bfloat16" for
        mixed precision). The logits are float32.
      param_dtype: parameter dtype (float32 master weights by default).
      rngs: parameter initialisation and dropout streams.

    Shapes: `(*batch, H, W, in_channels)` with H, W >= 32 -> `(*batch, num_classes)`.

    References:
      Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
      Recognition", ICLR 2015, Table 1 (A and D); torchvision.models.vgg (the adaptive pool
      and the dropout placement); He et al., ICCV 2015 (the initialisation).
    """

    def __init__(self, num_classes: int = 1000, *, depth: int = 11, dropout: float = 0.5,
                 in_channels: int = 3, channels: Sequence[int] = CHANNELS, hidden: int = 4096,
                 dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        p = dict(check_dtypes(dtype, param_dtype), rngs=rngs)
        if depth not in STAGE_DEPTHS:
            raise ValueError(f"unknown VGG depth {depth!r}; valid: {sorted(STAGE_DEPTHS)}")
        channels = tuple(channels)
        if len(channels) != len(CHANNELS):
            raise ValueError(f"channels must give one width per stage ({len(CHANNELS)}), "
                             f"got {channels}")
        self.depth = depth
        super().__init__(
            (None, None, in_channels),
            **_features(depth, channels, in_channels, p),
            avgpool=AdaptiveAvgPool(POOL_OUTPUT),
            **_head(channels[-1] * POOL_OUTPUT**2, hidden, num_classes, dropout, p),
        )
