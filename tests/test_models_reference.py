"""Every shipped model against a PyTorch definition written independently of jaxconv.

Each reference (`tests/torch_models.py`) is built from the papers and torchvision's layouts
(not from jaxconv's code): NCHW, float64, `torch.nn` convolutions, pools and linears, with the
lecture's normalizations written out by hand (Krizhevsky et al.'s LRN as the paper's sum,
Jarrett et al.'s LCN as Torch7's `SpatialContrastiveNormalization`, Sermanet et al.'s
Gaussian L2 pool).
The paper's AlexNet is written as its two towers (conv1a/b, conv2a/b, ...), so the
`groups=2` convolutions of `jaxconv.models.AlexNet` are checked for which half of the maps
feeds which. The jaxconv model's parameters are drawn at random (biases too, so a bias that
is not copied or not added shows), copied across (HWIO -> OIHW; the first FC's rows from
NHWC to torch's NCHW flatten order) and the logits compared in eval mode.

Tolerance: the JAX model computes in float32, the reference in float64; the largest logit
difference must stay under `REL_TOL` times the largest |logit| (float32 sums over fan-ins of
up to 25,088 are good to ~1e-6 relative; measured at most 4e-6 over the cases here). The inputs
span [-128, 128] like mean-subtracted pixels, so that AlexNet's LRN (alpha 1e-4) changes the
activations by O(1): an LRN of size 3 instead of 5 moves the logits by ~1e-2 relative.

The fast tier runs a small-input case of each model (AlexNet has a fixed 6x6x256 -> 4096 FC6,
so its cases carry its full 58M parameters: about 2 s each); the full-size VGGs and
torchvision's AlexNet at 224x224 are `slow`.
"""

import math

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from torch import nn
from torch_models import (
    TorchAlexNetOneTower,
    TorchAlexNetTwoTowers,
    TorchLeNet5,
    TorchStageNet,
    TorchVGG,
    lrn,
)

from jaxconv.models import VGG, AlexNet, LeNet5, StageNet

REL_TOL = 2e-5


# --- random jaxconv parameters, copied across ---

def random_model(make, seed=0):
    """`make()` built abstractly, its parameters drawn uniform with variance 1/fan-in (biases
    +-0.1), its other state (dropout streams) filled in; eval mode."""
    model = nnx.eval_shape(make)
    rng = np.random.default_rng(seed)

    def draw(x):
        bound = math.sqrt(3.0 / math.prod(x.shape[:-1])) if len(x.shape) > 1 else 0.1
        return (rng.random(x.shape, dtype=np.float32) * 2 - 1) * np.float32(bound)

    params = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(params, jax.tree.map(draw, nnx.to_pure_dict(params)))
    nnx.update(model, params)

    def concrete(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key(0)
        return np.zeros(x.shape, x.dtype)

    nnx.update(model, jax.tree.map(concrete, nnx.state(model, nnx.Not(nnx.Param))))
    model.eval()
    return model


def _np(x):
    return np.asarray(x, np.float64)


def conv_weight(kernel, out=slice(None)):
    """HWIO kernel (output channels `out`) -> torch OIHW."""
    return _np(kernel)[..., out].transpose(3, 2, 0, 1)


def first_fc_weight(kernel, hwc):
    """The FC after an NHWC flatten of `hwc` -> torch's (out, C*H*W) after an NCHW flatten."""
    h, w, c = hwc
    return _np(kernel).reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, h * w * c)


def load(make_reference, weights):
    """`make_reference()` built without initializing (on torch's meta device), then given
    `{torch parameter name: array}`: every parameter, each of its shape."""
    with torch.device("meta"):
        reference = make_reference()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    reference.load_state_dict(state, strict=True, assign=True)
    return reference.eval()


def conv_and_bias(dst, layer, out=slice(None)):
    return {f"{dst}.weight": conv_weight(layer.kernel[...], out),
            f"{dst}.bias": _np(layer.bias[...])[out]}


def dense(dst, layer, hwc=None):
    kernel = layer.kernel[...]
    weight = _np(kernel).T if hwc is None else first_fc_weight(kernel, hwc)
    return {f"{dst}.weight": weight, f"{dst}.bias": _np(layer.bias[...])}


_forward = nnx.jit(lambda model, x: model(x))


def assert_same_logits(model, reference, x_nhwc):
    """The jaxconv model (float32) and the reference (float64) agree within `REL_TOL`."""
    got = np.asarray(_forward(model, x_nhwc.astype(np.float32)), np.float64)
    with torch.no_grad():
        want = reference(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).astype(np.float64)))
    want = want.numpy()
    assert got.shape == want.shape
    scale = np.abs(want).max()
    assert scale > 0
    err = np.abs(got - want).max() / scale
    print(f"max |logit diff| / max |logit| = {err:.3g}")
    assert err < REL_TOL, f"max |logit diff| / max |logit| = {err:.3g}"


def images(shape, seed=1):
    return np.random.default_rng(seed).uniform(-128, 128, shape)


# --- LeNet-5 ---

# C1 is padded so that its output is at least 28x28, as for the paper's 32x32: 28 -> 2,
# 31 -> 1 (28 is MNIST).
@pytest.mark.parametrize("input_size,pad,act,pool", [(32, 0, "relu", "max"),
                                                      (28, 2, "tanh", "avg"),
                                                      (31, 1, "relu", "avg")])
def test_lenet5(input_size, pad, act, pool):
    model = random_model(lambda: LeNet5(10, input_size=input_size, activation=act, pool=pool,
                                        rngs=nnx.Rngs(0)))
    weights = {**conv_and_bias("c1", model.c1), **conv_and_bias("c3", model.c3),
               **dense("f5", model.f5, (5, 5, 16)), **dense("f6", model.f6),
               **dense("out", model.output)}
    ref = load(lambda: TorchLeNet5(10, pad, act, pool), weights)
    # tanh saturates on [-128, 128] inputs: use unit-scale images for LeNet.
    assert_same_logits(model, ref, images((3, input_size, input_size, 1)) / 128)


# --- StageNet ---

STAGENET_CASES = {
    # The default config's network on the 8x8 digits.
    "default": dict(num_classes=10, input_shape=(8, 8, 1), features=(16, 32), kernel_size=3,
                    activation="relu", lcn_kernel_size=(5, 3), pool="max", pool_window=2,
                    hidden=()),
    # Jarrett's |tanh| with Gaussian L2 and average pooling, a stage without LCN, a hidden FC.
    "tanh_abs_l2": dict(num_classes=5, input_shape=(12, 12, 3), features=(6, 8), kernel_size=3,
                        activation="tanh_abs", lcn_kernel_size=(3, None), pool=("l2", "avg"),
                        pool_window=2, hidden=(16,)),
    "one_stage_no_pool": dict(num_classes=4, input_shape=(6, 6, 2), features=(3,),
                              kernel_size=5, activation="relu", lcn_kernel_size=(5,),
                              pool="none", pool_window=2, hidden=(7, 5)),
}


@pytest.mark.parametrize("case", sorted(STAGENET_CASES))
def test_stagenet(case):
    kw = STAGENET_CASES[case]
    model = random_model(lambda: StageNet(**kw, dropout=0.5, rngs=nnx.Rngs(0)))
    n = len(kw["features"])
    pools = kw["pool"] if isinstance(kw["pool"], tuple) else (kw["pool"],) * n
    h, _, c = kw["input_shape"]
    weights = {}
    for i in range(n):
        weights.update(conv_and_bias(f"convs.{i}", getattr(model, f"stage{i + 1}").conv))
        h = h if pools[i] == "none" else h // kw["pool_window"]
    hwc = (h, h, kw["features"][-1])
    for i in range(len(kw["hidden"])):
        weights.update(dense(f"fcs.{i}", getattr(model, f"fc{i + 1}"), hwc if i == 0 else None))
    weights.update(dense("out", model.output, None if kw["hidden"] else hwc))
    ref = load(lambda: TorchStageNet(kw["num_classes"], c, kw["input_shape"][0], kw["features"],
                             kw["kernel_size"], kw["activation"], kw["lcn_kernel_size"], pools,
                             kw["pool_window"], kw["hidden"]), weights)
    assert_same_logits(model, ref, images((3,) + kw["input_shape"]))


# --- AlexNet ---

def alexnet_two_tower_weights(model):
    """jaxconv's one-network AlexNet as the paper's towers: output channels [:half] are tower a,
    and a grouped conv's first input half is tower a's maps."""
    weights = {}
    for name, half in (("conv1", 48), ("conv2", 128), ("conv3", 192), ("conv4", 192),
                       ("conv5", 128)):
        layer = getattr(model, name)
        weights.update(conv_and_bias(f"{name}a", layer, slice(None, half)))
        weights.update(conv_and_bias(f"{name}b", layer, slice(half, None)))
    return {**weights, **dense("fc6", model.fc6, (6, 6, 256)), **dense("fc7", model.fc7),
            **dense("fc8", model.fc8)}


def one_tower_weights(model):
    weights = {}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        weights.update(conv_and_bias(name, getattr(model, name)))
    return {**weights, **dense("fc6", model.fc6, (6, 6, 256)), **dense("fc7", model.fc7),
            **dense("fc8", model.fc8)}


def test_lrn_reference_is_torchs_local_response_norm():
    """The hand-written paper LRN equals torch's (alpha scaled by n, its mean convention)."""
    a = torch.from_numpy(images((2, 11, 3, 3)))
    np.testing.assert_allclose(lrn(a), nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0)(a),
                               rtol=1e-12)


@pytest.fixture(scope="module")
def alexnet_original():
    return random_model(lambda: AlexNet(7, rngs=nnx.Rngs(0)))


def test_alexnet_paper_two_towers(alexnet_original):
    ref = load(lambda: TorchAlexNetTwoTowers(7), alexnet_two_tower_weights(alexnet_original))
    x = images((1, 227, 227, 3))
    assert_same_logits(alexnet_original, ref, x)
    # The comparison sees the LRN size: the reference with n=3 is far outside the tolerance.
    ref.lrn_size = 3
    with pytest.raises(AssertionError, match="max \\|logit diff\\|"):
        assert_same_logits(alexnet_original, ref, x)


@pytest.mark.parametrize("side", [pytest.param(63, id="63"),
                                  pytest.param(224, id="224", marks=pytest.mark.slow)])
def test_alexnet_torchvision(side):
    """torchvision's layout; 63x63 is the smallest input (1x1 maps, replicated to 6x6)."""
    model = random_model(lambda: AlexNet(7, variant="torchvision", rngs=nnx.Rngs(0)))
    ref = load(lambda: TorchAlexNetOneTower(7), one_tower_weights(model))
    assert_same_logits(model, ref, images((2, side, side, 3)))


# --- VGG ---

VGG_CASES = [
    pytest.param(11, (4, 8, 8, 16, 16), 32, 32, id="vgg11-mini-32"),
    pytest.param(16, (4, 4, 8, 8, 8), 16, 40, id="vgg16-mini-40"),
    pytest.param(11, (64, 128, 256, 512, 512), 4096, 224, id="vgg11-224",
                 marks=pytest.mark.slow),
    pytest.param(16, (64, 128, 256, 512, 512), 4096, 64, id="vgg16-64", marks=pytest.mark.slow),
]
STAGES = {11: (1, 1, 2, 2, 2), 16: (2, 2, 3, 3, 3)}  # Simonyan & Zisserman, Table 1 (A, D).


@pytest.mark.parametrize("depth,channels,hidden,side", VGG_CASES)
def test_vgg(depth, channels, hidden, side):
    model = random_model(lambda: VGG(6, depth=depth, channels=channels, hidden=hidden,
                                     rngs=nnx.Rngs(0)))
    weights = {}
    for s, n in enumerate(STAGES[depth]):
        for i in range(n):
            weights.update(conv_and_bias(f"stages.{s}.{i}", getattr(model, f"conv{s + 1}_{i + 1}")))
    weights.update({**dense("fc6", model.fc6, (7, 7, channels[-1])), **dense("fc7", model.fc7),
                    **dense("fc8", model.fc8)})
    ref = load(lambda: TorchVGG(6, STAGES[depth], channels, hidden), weights)
    assert_same_logits(model, ref, images((2, side, side, 3)) / 128)
