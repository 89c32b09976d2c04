"""ConnectivityNet: one hidden layer, fully-connected, locally-connected or convolutional.

The chapter's comparison of connectivity at matched width: the hidden layer has the same
`features x H x W` units in all three forms and the same linear classifier reads them; only
what each hidden unit sees and shares differs:

- ``"fc"``: every unit sees the whole image with its own weights (`Dense` on the flattened
  image): ``(H*W*C + 1) * H*W*F`` parameters, quadratic in the image's pixel count;
- ``"lc"``: every unit sees a `kernel_size` window with its own weights (`LocallyConnected`,
  "SAME" padding): ``(k*k*C + 1) * H*W*F``, linear in the pixel count;
- ``"conv"``: every unit sees a window and the units of one feature map share weights
  (`Conv`, "SAME"): ``(k*k*C + 1) * F``, independent of the image size.

`jaxconv.summary.compare_connectivity` gives the same counts for any image size.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from jaxconv.functional.args import check_positive_int
from jaxconv.layers import Activation, Conv, Dense, Flatten, LocallyConnected
from jaxconv.models.base import Classifier, check_dtypes

CONNECTIVITIES = ("fc", "lc", "conv")


class ConnectivityNet(Classifier):
    """Image -> hidden layer (`connectivity`) -> rectification -> linear classifier.

    Args:
      num_classes: output logits.
      input_shape: `(H, W, C)` of the images.
      connectivity: "fc", "lc" or "conv" (module docstring).
      features: hidden feature maps `F` (the hidden layer has `H*W*F` units in every form).
      kernel_size: the window of "lc" and "conv" (stride 1, "SAME" padding); unused by "fc".
      activation: rectification (`jaxconv.layers.ACTIVATIONS`).
      dtype, param_dtype: as in `StageNet`.
      rngs: parameter initialisation.

    Layer names: "conv"/"lc": `hidden`, `act`, `flatten`, `output`; "fc": `flatten`,
    `hidden`, `act`, `output`.

    Shapes: `(*batch, H, W, C)` -> `(*batch, num_classes)`.
    """

    def __init__(self, num_classes: int, *, input_shape: Sequence[int],
                 connectivity: str = "conv", features: int = 8, kernel_size=5,
                 activation: str = "relu", dtype=None, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if connectivity not in CONNECTIVITIES:
            raise ValueError(f"unknown connectivity {connectivity!r}; valid: "
                             f"{list(CONNECTIVITIES)}")
        features = check_positive_int(features, "features")
        h, w, c = input_shape
        p = check_dtypes(dtype, param_dtype)
        width = h * w * features
        if connectivity == "fc":
            layers = {"flatten": Flatten(), "hidden": Dense(h * w * c, width, rngs=rngs, **p),
                      "act": Activation(activation)}
        else:
            if connectivity == "conv":
                hidden = Conv(c, features, kernel_size, padding="SAME", rngs=rngs, **p)
            else:
                hidden = LocallyConnected(c, features, kernel_size, input_size=(h, w),
                                          padding="SAME", rngs=rngs, **p)
            layers = {"hidden": hidden, "act": Activation(activation), "flatten": Flatten()}
        layers["output"] = Dense(width, num_classes, rngs=rngs, **p)
        super().__init__(input_shape, **layers)
