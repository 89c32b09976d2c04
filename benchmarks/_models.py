"""The benchmarked models, their analytic FLOPs, and the same networks built in PyTorch.

`build_jax(name)` builds a jaxconv model with a fixed seed; `to_torch(model, input_shape)` builds
the identical PyTorch network layer by layer and copies the weights (conv HWIO -> OIHW, dense
(in, out) -> (out, in), the first dense after a flatten permuted from (h, w, c) to (c, h, w)
order), so both sides start from the same parameters (jaxconv's LeCun-normal init) and compute
the same function: `check_same_function` prints the largest logit difference.
"""

from __future__ import annotations

import dataclasses

import _common  # noqa: F401  (puts the repository root on sys.path)
import numpy as np


@dataclasses.dataclass(frozen=True)
class Spec:
    """A benchmarked model: constructor name and kwargs, input `(H, W, C)`, batch, classes."""

    model: str
    kwargs: dict
    image: tuple[int, int, int]
    batch: int
    classes: int
    doc: str


# The CIFAR StageNet: three stages of 3x3 conv (64, 128, 256) -> ReLU -> 2x2 max pool, then a
# linear classifier (jaxconv.models.StageNet). "_lcn" adds LCN 5/5/3 to the stages.
_CIFAR = dict(input_shape=(32, 32, 3), features=(64, 128, 256), kernel_size=3, pool="max")

SPECS: dict[str, Spec] = {
    "lenet5": Spec("lenet5", dict(input_size=28), (28, 28, 1), 128, 10,
                   "LeNet5(10, input_size=28): conv5(6,pad2)-max2-conv5(16)-max2-120-84-10"),
    "stagenet_cifar": Spec(
        "stagenet", dict(_CIFAR, lcn_kernel_size=None), (32, 32, 3), 128, 10,
        "StageNet(10, input_shape=(32,32,3), features=(64,128,256), kernel_size=3, "
        "lcn_kernel_size=None, pool='max')"),
    "stagenet_cifar_lcn": Spec(
        "stagenet", dict(_CIFAR, lcn_kernel_size=(5, 5, 3)), (32, 32, 3), 128, 10,
        "as stagenet_cifar with lcn_kernel_size=(5,5,3)"),
    "alexnet": Spec("alexnet", dict(variant="torchvision"), (224, 224, 3), 16, 1000,
                    "AlexNet(1000, variant='torchvision'), 224x224x3"),
}


def build_jax(name: str, seed: int = 0, dtype=None):
    """The model of `SPECS[name]`; `dtype` is its compute dtype (None: float32), as the
    trainer's `config.compute_dtype` sets it (parameters and logits stay float32)."""
    from flax import nnx

    from jaxconv.models import create_model

    spec = SPECS[name]
    return create_model(spec.model, num_classes=spec.classes, rngs=nnx.Rngs(seed),
                        dtype=dtype, **spec.kwargs)


def layer_shapes(model, image):
    """`[(name, layer, in_shape, out_shape)]` for every leaf layer, from one eager image."""
    import jax.numpy as jnp

    model.eval()
    x = jnp.zeros((1,) + tuple(image), jnp.float32)
    out = []
    for name, layer in model.named_leaves():
        y = layer(x)
        out.append((name, layer, tuple(x.shape[1:]), tuple(y.shape[1:])))
        x = y
    model.train()
    return out


def forward_flops(model, image) -> tuple[int, list[tuple[str, int]]]:
    """Forward multiply-add FLOPs per image (2 per MAC) of the convs and dense layers.

    conv: 2 * out_h * out_w * C_out * kh * kw * C_in / groups; dense: 2 * in * out. Pools,
    activations, LCN and biases are left out (they are < 1 % of these models' FLOPs except
    with LCN). A training step is counted as 3x forward (the backward computes the gradients
    with respect to both the inputs and the weights).
    """
    from jaxconv.layers import Conv, Dense

    per_layer = []
    for name, layer, _, out_shape in layer_shapes(model, image):
        if isinstance(layer, Conv):
            kh, kw = layer.kernel_size
            oh, ow, cout = out_shape
            f = 2 * oh * ow * cout * kh * kw * layer.in_features // layer.groups
        elif isinstance(layer, Dense):
            f = 2 * layer.in_features * layer.out_features
        else:
            continue
        per_layer.append((name, f))
    return sum(f for _, f in per_layer), per_layer


class TorchLCN:
    """Factory for a torch module equal to `jaxconv.functional.local_contrast_norm` (NCHW)."""

    @staticmethod
    def make(kernel_size, sigma, eps):
        import torch
        import torch.nn.functional as tf

        from jaxconv.functional import gaussian_window

        w = torch.tensor(np.asarray(gaussian_window(kernel_size, sigma)))[None, None]
        pad = kernel_size // 2

        class LCN(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("w", w)

            def forward(self, x):
                c = x.shape[1]
                x = x - x.mean(dim=(1, 2, 3), keepdim=True)
                ones = torch.ones((1, 1) + x.shape[2:], dtype=x.dtype, device=x.device)
                coef = tf.conv2d(ones, self.w, padding=pad)
                mean = tf.conv2d(x.sum(1, keepdim=True), self.w / c, padding=pad) / coef
                v = x - mean
                var = tf.conv2d((v * v).sum(1, keepdim=True), self.w / c, padding=pad) / coef
                positive = var > 1e-20
                std = torch.where(positive, torch.sqrt(torch.where(positive, var, 1.0)), 0.0)
                floor = torch.maximum(std.mean(dim=(2, 3), keepdim=True), std).clamp_min(eps)
                return v / floor

        return LCN()


def _pool_padding(layer, in_shape):
    from jaxconv.functional.args import resolve_padding, to_pair

    w = to_pair(layer.window, "window")
    s = w if layer.stride is None else to_pair(layer.stride, "stride")
    (t, b), (left, r) = resolve_padding(layer.padding, in_shape[:2], w, s)
    if t != b or left != r:
        raise NotImplementedError(f"asymmetric pool padding {((t, b), (left, r))}")
    return w, s, (t, left)


def to_torch(model, image):
    """The jaxconv `model` as a `torch.nn.Sequential` (NCHW) with the same weights."""
    import torch
    from torch import nn

    from jaxconv import layers as L
    from jaxconv.functional.args import resolve_padding

    def tensor(a):
        return torch.tensor(np.array(a, dtype=np.float32))

    modules, flat_in = [], None
    for name, layer, in_shape, _ in layer_shapes(model, image):
        if isinstance(layer, L.Conv):
            (t, b), (left, r) = resolve_padding(layer.padding, in_shape[:2], layer.kernel_size,
                                                layer.stride, layer.dilation)
            if t != b or left != r:
                modules.append(nn.ZeroPad2d((left, r, t, b)))
                t = left = 0
            conv = nn.Conv2d(layer.in_features, layer.out_features, layer.kernel_size,
                             stride=layer.stride, padding=(t, left), dilation=layer.dilation,
                             groups=layer.groups, bias=layer.bias is not None)
            conv.weight.data = tensor(layer.kernel[...]).permute(3, 2, 0, 1).contiguous()
            if layer.bias is not None:
                conv.bias.data = tensor(layer.bias[...])
            modules.append(conv)
        elif isinstance(layer, L.Dense):
            lin = nn.Linear(layer.in_features, layer.out_features, bias=layer.use_bias)
            k = np.asarray(layer.kernel[...])
            if flat_in is not None:  # rows in (h, w, c) order -> torch's (c, h, w)
                h, w, c = flat_in
                k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
                flat_in = None
            lin.weight.data = tensor(k.T).contiguous()
            if layer.use_bias:
                lin.bias.data = tensor(layer.bias[...])
            modules.append(lin)
        elif isinstance(layer, L.Activation):
            acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}
            if layer.name not in acts:
                raise NotImplementedError(f"activation {layer.name!r}")
            modules.append(acts[layer.name]())
        elif isinstance(layer, L.MaxPool):
            w, s, p = _pool_padding(layer, in_shape)
            modules.append(nn.MaxPool2d(w, s, p))
        elif isinstance(layer, L.AvgPool):
            w, s, p = _pool_padding(layer, in_shape)
            modules.append(nn.AvgPool2d(w, s, p, count_include_pad=layer.count_include_pad))
        elif isinstance(layer, L.AdaptiveAvgPool):
            modules.append(nn.AdaptiveAvgPool2d(layer.output_size))
        elif isinstance(layer, L.Flatten):
            flat_in = in_shape
            modules.append(nn.Flatten())
        elif isinstance(layer, L.Dropout):
            modules.append(nn.Dropout(layer.rate))
        elif isinstance(layer, L.LocalContrastNorm):
            modules.append(TorchLCN.make(layer.kernel_size, layer.sigma, layer.eps))
        elif isinstance(layer, L.LocalResponseNorm):
            modules.append(nn.LocalResponseNorm(layer.size, layer.alpha * layer.size,
                                                layer.beta, layer.k))
        else:
            raise NotImplementedError(f"no torch equivalent for layer {name} ({layer})")
    return nn.Sequential(*modules)


def check_same_function(model, torch_model, image, batch=2, seed=0) -> float:
    """Largest |logit difference| between the jax and torch models (eval mode) on random data."""
    import jax.numpy as jnp
    import torch

    x = np.random.default_rng(seed).standard_normal((batch,) + tuple(image), np.float32)
    model.eval()
    torch_model.eval()
    ours = np.asarray(model(jnp.asarray(x)))
    with torch.no_grad():
        theirs = torch_model(torch.tensor(x).permute(0, 3, 1, 2).contiguous()).numpy()
    model.train()
    torch_model.train()
    return float(np.max(np.abs(ours - theirs)))
