"""Every shipped model against a PyTorch definition written here, independently of jaxconv.

Each reference below is built from the papers and torchvision's layouts (not from jaxconv's
code): NCHW, float64, `torch.nn` convolutions, pools and linears, with the lecture's
normalizations written out by hand (Krizhevsky et al.'s LRN as the paper's sum, Jarrett et
al.'s LCN as Torch7's `SpatialContrastiveNormalization`, Sermanet et al.'s Gaussian L2 pool).
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
from torch.nn import functional as tF

from jaxconv.models import VGG, AlexNet, LeNet5, StageNet

REL_TOL = 2e-5
DT = torch.float64


# --- the references (NCHW, float64) ---

def lrn(a, n=5, alpha=1e-4, beta=0.75, k=2.0):
    """Krizhevsky et al. 2012 §3.3: b_i = a_i / (k + alpha sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)}
    a_j^2)^beta over the N maps of a layer."""
    sq, big_n = a * a, a.shape[1]
    sums = [sq[:, max(0, i - n // 2):min(big_n - 1, i + n // 2) + 1].sum(1)
            for i in range(big_n)]
    return a / (k + alpha * torch.stack(sums, 1)) ** beta


def gaussian(size):
    """Torch7's `image.gaussian(size)` (sigma = size/4, centred), normalized to sum 1."""
    g = torch.exp(-0.5 * ((torch.arange(size, dtype=DT) - (size - 1) / 2) / (size / 4)) ** 2)
    g2 = torch.outer(g, g)
    return g2 / g2.sum()


def lcn(x, size, threshold=1e-4):
    """Torch7's SpatialContrastiveNormalization (Jarrett et al. 2009): subtract the Gaussian
    mean over the window and all maps, divide by max(local std, its image mean, threshold);
    zero padding with the border renormalized by the window mass inside the image."""
    c = x.shape[1]
    w = (gaussian(size) / c).expand(1, c, size, size)
    coef = tF.conv2d(torch.ones_like(x[:1]), w, padding=size // 2)
    v = x - tF.conv2d(x, w, padding=size // 2) / coef
    std = torch.sqrt(tF.conv2d(v * v, w, padding=size // 2) / coef)
    mean_std = std.mean(dim=(2, 3), keepdim=True)
    return v / torch.clamp(torch.maximum(std, mean_std), min=threshold)


def gaussian_l2_pool(x, size):
    """Sermanet et al. 2012: sqrt of the Gaussian-weighted sum of squares, stride = window."""
    c = x.shape[1]
    w = gaussian(size).expand(c, 1, size, size)
    return torch.sqrt(tF.conv2d(x * x, w, stride=size, groups=c))


def conv(cin, cout, k, **kw):
    return nn.Conv2d(cin, cout, k, dtype=DT, **kw)


def linear(cin, cout):
    return nn.Linear(cin, cout, dtype=DT)


ACT = {"relu": torch.relu, "tanh": torch.tanh, "tanh_abs": lambda t: torch.tanh(t).abs()}


class TorchLeNet5(nn.Module):
    """LeCun et al. 1998 with full C3, ReLU or tanh, max or average subsampling."""

    def __init__(self, num_classes, pad, act, pool):
        super().__init__()
        self.c1, self.c3 = conv(1, 6, 5, padding=pad), conv(6, 16, 5)
        self.f5, self.f6, self.out = linear(16 * 5 * 5, 120), linear(120, 84), linear(84,
                                                                                  num_classes)
        self.act = ACT[act]
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)

    def forward(self, x):
        x = self.pool(self.act(self.c1(x)))
        x = self.pool(self.act(self.c3(x)))
        x = self.act(self.f5(x.flatten(1)))
        return self.out(self.act(self.f6(x)))


class TorchStageNet(nn.Module):
    """Stages conv (stride 1, same size) -> rectification -> LCN -> pool, hidden FC + ReLU,
    classifier."""

    def __init__(self, num_classes, in_ch, hw, features, kernel, act, lcn_sizes, pools, window,
                 hidden):
        super().__init__()
        self.convs = nn.ModuleList()
        for cout in features:
            self.convs.append(conv(in_ch, cout, kernel, padding=kernel // 2))
            in_ch, hw = cout, hw if pools[len(self.convs) - 1] == "none" else hw // window
        self.fcs = nn.ModuleList()
        width = in_ch * hw * hw
        for size in hidden:
            self.fcs.append(linear(width, size))
            width = size
        self.out = linear(width, num_classes)
        self.act, self.lcn_sizes, self.pools, self.window = ACT[act], lcn_sizes, pools, window

    def forward(self, x):
        for c, size, pool in zip(self.convs, self.lcn_sizes, self.pools):
            x = self.act(c(x))
            x = x if size is None else lcn(x, size)
            if pool == "max":
                x = tF.max_pool2d(x, self.window)
            elif pool == "avg":
                x = tF.avg_pool2d(x, self.window)
            elif pool == "l2":
                x = gaussian_l2_pool(x, self.window)
        x = x.flatten(1)
        for fc in self.fcs:
            x = torch.relu(fc(x))
        return self.out(x)


class TorchAlexNetTwoTowers(nn.Module):
    """The paper's Figure 2: two towers of 48-128-192-192-128 maps; conv3 and the FCs see both
    towers, conv2/4/5 only their own; LRN (n=5, k=2, alpha=1e-4, beta=0.75) over the N maps of
    conv1 and conv2 after ReLU; overlapping 3x3/2 max pools after LRN1, LRN2 and conv5.

    The LRN window runs over all N maps of the layer, both towers' (§3.3: "N is the total
    number of kernels in the layer"), as `jaxconv.models.AlexNet` does; an LRN within each
    tower would differ at the two maps either side of the tower boundary."""

    def __init__(self, num_classes, lrn_size=5):
        super().__init__()
        for t in "ab":
            setattr(self, f"conv1{t}", conv(3, 48, 11, stride=4))
            setattr(self, f"conv2{t}", conv(48, 128, 5, padding=2))
            setattr(self, f"conv3{t}", conv(256, 192, 3, padding=1))
            setattr(self, f"conv4{t}", conv(192, 192, 3, padding=1))
            setattr(self, f"conv5{t}", conv(192, 128, 3, padding=1))
        self.fc6, self.fc7 = linear(256 * 6 * 6, 4096), linear(4096, 4096)
        self.fc8, self.lrn_size = linear(4096, num_classes), lrn_size

    def forward(self, x):
        def towers(name, a, b):
            return (torch.relu(getattr(self, f"{name}a")(a)),
                    torch.relu(getattr(self, f"{name}b")(b)))

        pool = nn.MaxPool2d(3, 2)
        a, b = towers("conv1", x, x)
        both = pool(lrn(torch.cat([a, b], 1), self.lrn_size))
        a, b = towers("conv2", both[:, :48], both[:, 48:])
        both = pool(lrn(torch.cat([a, b], 1), self.lrn_size))
        a, b = towers("conv3", both, both)
        a, b = towers("conv4", a, b)
        a, b = towers("conv5", a, b)
        x = pool(torch.cat([a, b], 1)).flatten(1)
        return self.fc8(torch.relu(self.fc7(torch.relu(self.fc6(x)))))


class TorchAlexNetOneTower(nn.Module):
    """torchvision.models.alexnet (Krizhevsky 2014): 64-192-384-256-256, no LRN, adaptive 6x6."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.conv2 = conv(3, 64, 11, stride=4, padding=2), conv(64, 192, 5, padding=2)
        self.conv3, self.conv4 = conv(192, 384, 3, padding=1), conv(384, 256, 3, padding=1)
        self.conv5 = conv(256, 256, 3, padding=1)
        self.fc6, self.fc7 = linear(256 * 6 * 6, 4096), linear(4096, 4096)
        self.fc8 = linear(4096, num_classes)

    def forward(self, x):
        pool = nn.MaxPool2d(3, 2)
        x = pool(torch.relu(self.conv1(x)))
        x = pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.conv4(torch.relu(self.conv3(x))))
        x = nn.AdaptiveAvgPool2d(6)(pool(torch.relu(self.conv5(x)))).flatten(1)
        return self.fc8(torch.relu(self.fc7(torch.relu(self.fc6(x)))))


class TorchVGG(nn.Module):
    """torchvision's VGG without batch norm: stages of 3x3 pad-1 conv + ReLU closed by a 2x2
    max pool (Simonyan & Zisserman Table 1: A = 1,1,2,2,2 convs, D = 2,2,3,3,3), adaptive 7x7
    average pool, FC-ReLU-FC-ReLU-FC."""

    def __init__(self, num_classes, convs_per_stage, channels, hidden):
        super().__init__()
        self.stages, cin = nn.ModuleList(), 3
        for n, cout in zip(convs_per_stage, channels):
            self.stages.append(nn.ModuleList(conv(cin if i == 0 else cout, cout, 3, padding=1)
                                             for i in range(n)))
            cin = cout
        self.fc6, self.fc7 = linear(cin * 49, hidden), linear(hidden, hidden)
        self.fc8 = linear(hidden, num_classes)

    def forward(self, x):
        for stage in self.stages:
            for c in stage:
                x = torch.relu(c(x))
            x = tF.max_pool2d(x, 2)
        x = nn.AdaptiveAvgPool2d(7)(x).flatten(1)
        return self.fc8(torch.relu(self.fc7(torch.relu(self.fc6(x)))))


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

@pytest.mark.parametrize("input_size,pad,act,pool", [(32, 0, "relu", "max"),
                                                      (28, 2, "tanh", "avg")])
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
