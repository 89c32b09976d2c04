"""What every jaxconv model shares: a named `Sequential` of layers with an input-shape check."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxconv.layers import Sequential


class Classifier(Sequential):
    """A `Sequential` image classifier: `(*batch, H, W, C)` float images -> `(*batch, classes)`.

    Args:
      input_shape: `(H, W, C)` the model was built for; a `None` entry accepts any size there
        (e.g. torchvision's AlexNet, whose adaptive pooling takes any large enough image).
      **layers: the named layers, in call order.
    """

    def __init__(self, input_shape, **layers):
        super().__init__(**layers)
        self.input_shape = tuple(input_shape)

    def __call__(self, x):
        if getattr(x, "ndim", 0) < 3 or any(
            want is not None and got != want for got, want in zip(x.shape[-3:], self.input_shape)
        ):
            got = f"shape {x.shape}" if hasattr(x, "shape") else type(x)
            raise ValueError(
                f"{type(self).__name__} expects images (*batch, H, W, C) = (*batch, "
                f"{', '.join('any' if d is None else str(d) for d in self.input_shape)}), "
                f"got {got}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{type(self).__name__} expects float images, got dtype {x.dtype} "
                             "(convert uint8 images with jaxconv.data.normalize first)")
        return super().__call__(x)


def flat_features(layers, input_shape) -> int:
    """Number of features after applying `layers` (a callable) to one `(H, W, C)` image."""
    out = jax.eval_shape(layers, jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32))
    size = 1
    for d in out.shape[1:]:
        size *= d
    return size
