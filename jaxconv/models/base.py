"""What every jaxconv model shares: a named `Sequential` of layers with an input-shape check,
and the mixed-precision rule (compute in `dtype`, logits back in float32)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxconv.layers import Sequential


class Classifier(Sequential):
    """A `Sequential` image classifier: `(*batch, H, W, C)` float images -> `(*batch, classes)`.

    Mixed precision follows Flax: the layers compute in their `dtype` (e.g. bfloat16) while
    parameters stay in `param_dtype` (float32 master weights); the logits are returned in at
    least float32 (`promote_types(logits.dtype, float32)`), so a softmax, a loss or a metric
    computed from them is float32 whatever the compute dtype.

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
        logits = super().__call__(x)
        return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def check_dtypes(dtype, param_dtype) -> dict:
    """`dict(dtype=..., param_dtype=...)` for a model's layers, after checking both.

    Args:
      dtype: compute dtype of the layers (None: inferred from inputs and params, i.e.
        float32 for float32 parameters), e.g. `jnp.bfloat16` or `"bfloat16"`.
      param_dtype: dtype of the parameters (float32 unless you know why not).

    Raises:
      ValueError: a dtype that is not a floating type.
    """
    out = {}
    for name, value in (("dtype", dtype), ("param_dtype", param_dtype)):
        if value is None and name == "dtype":
            out[name] = None
            continue
        if value is None:
            raise ValueError("param_dtype must be a floating dtype, got None")
        try:
            resolved = jnp.dtype(value)
        except TypeError as e:
            raise ValueError(f"{name} must be a floating dtype (e.g. 'float32', 'bfloat16'), "
                             f"got {value!r}") from e
        if not jnp.issubdtype(resolved, jnp.floating):
            raise ValueError(f"{name} must be a floating dtype (e.g. 'float32', 'bfloat16'), "
                             f"got {value!r}")
        out[name] = resolved
    return out


def flat_features(layers, input_shape) -> int:
    """Number of features after applying `layers` (a callable) to one `(H, W, C)` image."""
    out = jax.eval_shape(layers, jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32))
    size = 1
    for d in out.shape[1:]:
        size *= d
    return size
