"""Thin `flax.nnx` modules over `jaxconv.functional`: they create parameters and call the ops.

Conventions follow Flax: an `rngs` keyword for modules with parameters, `dtype` (compute, None =
inferred from inputs and params) and `param_dtype` (float32), explicit `kernel_init` /
`bias_init` (defaults: LeCun normal and zeros, as `nnx.Conv` / `nnx.Linear`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import functional as F
from jaxconv.functional.args import (
    Padding,
    check_image,
    check_positive_int,
    output_size,
    resolve_padding,
    to_pair,
)

Initializer = Callable[..., jax.Array]
default_kernel_init = nnx.initializers.lecun_normal()
default_bias_init = nnx.initializers.zeros_init()

# nnx.Linear is exactly the fully-connected layer; re-exported under the lecture's name.
Dense = nnx.Linear
Dropout = nnx.Dropout


def _compute_dtype(dtype, *arrays):
    """`dtype`, or the arrays' common dtype when `dtype` is None (Flax's rule)."""
    return dtype or jnp.result_type(*arrays)


class Conv(nnx.Module):
    """2-D convolution layer over `F.conv2d`.

    Args:
      in_features: input channels.
      out_features: output channels.
      kernel_size: int or `(kh, kw)`.
      stride, padding, dilation, groups: as in `jaxconv.functional.conv2d`.
      use_bias: add a `(out_features,)` bias.
      dtype, param_dtype, kernel_init, bias_init, rngs: Flax conventions.
      conv_fn: the convolution op, called as `F.conv2d` is (default `F.conv2d`); a benchmark
        passes a variant with the same signature and results (as `nnx.Conv`'s
        `conv_general_dilated` argument). Kept as the attribute `conv_fn`.

    Shapes: `(*batch, H, W, in_features)` -> `(*batch, H', W', out_features)`.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size, *, stride=1,
                 padding: Padding = "SAME", dilation=1, groups: int = 1, use_bias: bool = True,
                 dtype=None, param_dtype=jnp.float32,
                 kernel_init: Initializer = default_kernel_init,
                 bias_init: Initializer = default_bias_init,
                 conv_fn: Callable[..., jax.Array] = F.conv2d, rngs: nnx.Rngs):
        in_features = check_positive_int(in_features, "in_features")
        out_features = check_positive_int(out_features, "out_features")
        groups = check_positive_int(groups, "groups")
        if in_features % groups or out_features % groups:
            raise ValueError(f"in_features {in_features} and out_features {out_features} must "
                             f"be divisible by groups={groups}")
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.stride, self.dilation = to_pair(stride, "stride"), to_pair(dilation, "dilation")
        self.padding, self.groups = padding, groups
        self.in_features, self.out_features = in_features, out_features
        self.dtype, self.conv_fn = dtype, conv_fn
        shape = self.kernel_size + (in_features // groups, out_features)
        self.kernel = nnx.Param(kernel_init(rngs.params(), shape, param_dtype))
        self.bias = nnx.Param(bias_init(rngs.params(), (out_features,), param_dtype)) if use_bias \
            else None

    def __call__(self, x):
        check_image(x)  # before the cast, which would turn int images into floats
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Conv was built for {self.in_features} input channels, got x of "
                             f"shape {x.shape}")
        dtype = _compute_dtype(self.dtype, x, self.kernel[...])
        bias = None if self.bias is None else self.bias[...].astype(dtype)
        return self.conv_fn(x.astype(dtype), self.kernel[...].astype(dtype), bias,
                            stride=self.stride, padding=self.padding, dilation=self.dilation,
                            groups=self.groups)


class LocallyConnected(nnx.Module):
    """Locally-connected (unshared-weight) layer over `F.locally_connected2d`.

    The output size, hence the kernel shape `(out_h, out_w, kh, kw, in, out)`, is computed from
    `input_size` given at construction.

    Args:
      in_features, out_features, kernel_size: as in `Conv`.
      input_size: `(height, width)` of the inputs this layer will see.
      stride, padding (default "VALID"), dilation: as in `Conv`.
      kernel_init: applied per position; LeCun normal's fan-in is `kh*kw*in`.

    Shapes: `(*batch, H, W, in_features)` -> `(*batch, out_h, out_w, out_features)`.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size, *, input_size,
                 stride=1, padding: Padding = "VALID", dilation=1, use_bias: bool = True,
                 dtype=None, param_dtype=jnp.float32,
                 kernel_init: Initializer = default_kernel_init,
                 bias_init: Initializer = default_bias_init, rngs: nnx.Rngs):
        in_features = check_positive_int(in_features, "in_features")
        out_features = check_positive_int(out_features, "out_features")
        self.kernel_size = to_pair(kernel_size, "kernel_size")
        self.stride, self.dilation = to_pair(stride, "stride"), to_pair(dilation, "dilation")
        in_hw = to_pair(input_size, "input_size")
        pads = resolve_padding(padding, in_hw, self.kernel_size, self.stride, self.dilation)
        self.padding, self.input_size = pads, in_hw
        self.output_size = output_size(in_hw, pads, self.kernel_size, self.stride, self.dilation)
        self.in_features, self.out_features, self.dtype = in_features, out_features, dtype
        fan = self.kernel_size + (in_features, out_features)
        keys = jax.random.split(rngs.params(), self.output_size[0] * self.output_size[1])
        kernels = jax.vmap(lambda k: kernel_init(k, fan, param_dtype))(keys)
        self.kernel = nnx.Param(kernels.reshape(self.output_size + fan))
        self.bias = nnx.Param(bias_init(rngs.params(), self.output_size + (out_features,),
                                        param_dtype)) if use_bias else None

    def __call__(self, x):
        check_image(x)
        if tuple(x.shape[-3:-1]) != self.input_size or x.shape[-1] != self.in_features:
            raise ValueError(f"LocallyConnected was built for inputs of size {self.input_size} "
                             f"with {self.in_features} channels, got x of shape {x.shape}")
        dtype = _compute_dtype(self.dtype, x, self.kernel[...])
        bias = None if self.bias is None else self.bias[...].astype(dtype)
        return F.locally_connected2d(x.astype(dtype), self.kernel[...].astype(dtype), bias,
                                     kernel_size=self.kernel_size, stride=self.stride,
                                     padding=self.padding, dilation=self.dilation)


class MaxPool(nnx.Module):
    """`F.max_pool` as a module (no parameters)."""

    def __init__(self, window, stride=None, padding: Padding = "VALID"):
        self.window, self.stride, self.padding = window, stride, padding

    def __call__(self, x):
        return F.max_pool(x, self.window, self.stride, self.padding)


class AvgPool(nnx.Module):
    """`F.avg_pool` as a module (no parameters)."""

    def __init__(self, window, stride=None, padding: Padding = "VALID",
                 count_include_pad: bool = True):
        self.window, self.stride, self.padding = window, stride, padding
        self.count_include_pad = count_include_pad

    def __call__(self, x):
        return F.avg_pool(x, self.window, self.stride, self.padding, self.count_include_pad)


class LpPool(nnx.Module):
    """`F.lp_pool` as a module; `gaussian_sigma` set gives Sermanet et al.'s weighted L2 pool.

    Args:
      p: the power (2 = L2 pooling).
      window, stride, padding: as in `MaxPool`.
      gaussian_sigma: None for plain sums, else the std (pixels) of `F.gaussian_window`;
        "default" uses `0.25 * window`.
    """

    def __init__(self, p: float, window, stride=None, padding: Padding = "VALID",
                 gaussian_sigma=None):
        self.p, self.window, self.stride, self.padding = p, window, stride, padding
        self.gaussian_sigma = gaussian_sigma

    def __call__(self, x):
        weights = None
        if self.gaussian_sigma is not None:
            sigma = None if self.gaussian_sigma == "default" else self.gaussian_sigma
            weights = F.gaussian_window(self.window, sigma)
        return F.lp_pool(x, self.p, self.window, self.stride, self.padding, weights)


class AdaptiveAvgPool(nnx.Module):
    """`F.adaptive_avg_pool` to a fixed `output_size` (torchvision's AlexNet head)."""

    def __init__(self, output_size):
        self.output_size = to_pair(output_size, "output_size")

    def __call__(self, x):
        return F.adaptive_avg_pool(x, self.output_size)


class FeaturePool(nnx.Module):
    """`F.feature_pool`: L2 (or Lp, or max = maxout) pooling over groups of channels."""

    def __init__(self, group_size: int, *, p=2.0):
        self.group_size, self.p = group_size, p

    def __call__(self, x):
        return F.feature_pool(x, self.group_size, p=self.p)


class LocalContrastNorm(nnx.Module):
    """`F.local_contrast_norm` (Jarrett et al. 2009) as a module (no parameters)."""

    def __init__(self, kernel_size: int = 9, sigma=None, *, eps: float = 1e-4):
        self.kernel_size, self.sigma, self.eps = kernel_size, sigma, eps

    def __call__(self, x):
        return F.local_contrast_norm(x, self.kernel_size, self.sigma, eps=self.eps)


class LocalResponseNorm(nnx.Module):
    """`F.local_response_norm` (Krizhevsky et al. 2012 §3.3) as a module."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def __call__(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "abs": jnp.abs,
    "tanh": jnp.tanh,
    "tanh_abs": lambda x: jnp.abs(jnp.tanh(x)),  # Jarrett et al.'s |tanh| rectification
    "identity": lambda x: x,
}


class Activation(nnx.Module):
    """Pointwise nonlinearity chosen by name from `ACTIVATIONS`."""

    def __init__(self, name: str):
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
        self.name = name

    def __call__(self, x):
        return ACTIVATIONS[self.name](x)


class Flatten(nnx.Module):
    """`(*batch, H, W, C)` -> `(*batch, H*W*C)` (NHWC order)."""

    def __call__(self, x):
        if getattr(x, "ndim", 0) < 3:
            raise ValueError(f"Flatten expects (*batch, H, W, C), got shape "
                             f"{getattr(x, 'shape', type(x))}")
        h, w, c = x.shape[-3:]
        return x.reshape(x.shape[:-3] + (h * w * c,))  # not -1: an empty batch has no size


class Sequential(nnx.Module):
    """Named layers applied in order: `Sequential(conv1=Conv(...), relu1=Activation("relu"))`.

    Names become attribute names, so parameter paths read `conv1/kernel` (what freezing by name
    and weight import match on) and `layer_names` gives the call order (what `jaxconv.summary`
    walks).
    """

    def __init__(self, **layers):
        for name, layer in layers.items():
            if not callable(layer):
                raise ValueError(f"layer {name!r} is not callable: {layer!r}")
            setattr(self, name, layer)
        self.layer_names = tuple(layers)

    def named_layers(self):
        """`(name, layer)` pairs in call order."""
        return [(name, getattr(self, name)) for name in self.layer_names]

    def __call__(self, x):
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x

    def named_leaves(self, prefix: str = ""):
        """`(dotted_name, layer)` for every leaf layer of nested `Sequential`s, in call order."""
        for name, layer in self.named_layers():
            if isinstance(layer, Sequential):
                yield from layer.named_leaves(f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", layer

    def intermediates(self, x, prefix: str = "") -> dict:
        """Output of every leaf layer, keyed by dotted name (`stage1.lcn`), in call order."""
        outputs = {}
        for name in self.layer_names:
            layer = getattr(self, name)
            if isinstance(layer, Sequential):
                inner = layer.intermediates(x, f"{prefix}{name}.")
                outputs.update(inner)
                x = inner[next(reversed(inner))]
            else:
                x = outputs[f"{prefix}{name}"] = layer(x)
        return outputs


POOLS = ("max", "avg", "l2", "none")


class Stage(Sequential):
    """The lecture's typical stage: conv -> rectification -> optional LCN -> optional pooling.

    Args:
      in_features, out_features, kernel_size: the convolution (stride 1 by default).
      conv_stride, conv_padding: the convolution's stride and padding ("SAME" default).
      activation: a name in `ACTIVATIONS` ("relu", "abs", "tanh_abs", ...).
      lcn_kernel_size: odd LCN window, or None for no LCN.
      pool: "max", "avg", "l2" (Gaussian-weighted L2 pooling, Sermanet 2012) or "none".
      pool_window, pool_stride, pool_padding: the pooling (stride defaults to the window).
      dtype, param_dtype, kernel_init, bias_init, rngs: passed to the `Conv`.

    Shapes: `(*batch, H, W, in_features)` -> `(*batch, H', W', out_features)`.

    References:
      Jarrett et al., ICCV 2009, Fig. 1 (filter bank -> |tanh| rectification -> contrast
      normalization -> pooling); LeCun, Kavukcuoglu & Farabet, ISCAS 2010.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size, *, conv_stride=1,
                 conv_padding: Padding = "SAME", activation: str = "relu",
                 lcn_kernel_size: int | None = 9, pool: str = "max", pool_window=2,
                 pool_stride=None, pool_padding: Padding = "VALID", dtype=None,
                 param_dtype=jnp.float32, kernel_init: Initializer = default_kernel_init,
                 bias_init: Initializer = default_bias_init, rngs: nnx.Rngs):
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; valid: {list(POOLS)}")
        layers = {
            "conv": Conv(in_features, out_features, kernel_size, stride=conv_stride,
                         padding=conv_padding, dtype=dtype, param_dtype=param_dtype,
                         kernel_init=kernel_init, bias_init=bias_init, rngs=rngs),
            "act": Activation(activation),
        }
        if lcn_kernel_size is not None:
            layers["lcn"] = LocalContrastNorm(lcn_kernel_size)
        if pool == "max":
            layers["pool"] = MaxPool(pool_window, pool_stride, pool_padding)
        elif pool == "avg":
            layers["pool"] = AvgPool(pool_window, pool_stride, pool_padding)
        elif pool == "l2":
            layers["pool"] = LpPool(2.0, pool_window, pool_stride, pool_padding, "default")
        super().__init__(**layers)
