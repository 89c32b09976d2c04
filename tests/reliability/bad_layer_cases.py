"""The layer and model rows of `test_bad_input`'s table (`bad_input_cases` has the ops).

One `Case` per (layer / model, bad input); built at import, run by the tests.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxconv import layers as L
from jaxconv.models import VGG, AlexNet, ConnectivityNet, LeNet5, StageNet

from .bad_input_cases import BAD_IMAGES, NAN, C, Case, H, W, esc, no_image

# ---------------------------------------------------------------- layers


def _rngs():
    return nnx.Rngs(0)


LAYERS = {  # every layer class of jaxconv.layers, built with valid arguments for IMAGE
    "Conv": lambda: L.Conv(C, 2, 3, rngs=_rngs()),
    "LocallyConnected": lambda: L.LocallyConnected(C, 2, 3, input_size=(H, W), rngs=_rngs()),
    "MaxPool": lambda: L.MaxPool(2),
    "AvgPool": lambda: L.AvgPool(3, 2, "SAME"),
    "LpPool": lambda: L.LpPool(2.0, 3, 2, gaussian_sigma="default"),
    "AdaptiveAvgPool": lambda: L.AdaptiveAvgPool(2),
    "FeaturePool": lambda: L.FeaturePool(2),
    "LocalContrastNorm": lambda: L.LocalContrastNorm(5),
    "LocalResponseNorm": lambda: L.LocalResponseNorm(3),
    "Activation": lambda: L.Activation("tanh_abs"),
    "Flatten": lambda: L.Flatten(),
    "Sequential": lambda: L.Sequential(conv=L.Conv(C, 3, 3, rngs=_rngs()), pool=L.MaxPool(2)),
    "Stage": lambda: L.Stage(C, 3, 3, lcn_kernel_size=3, pool="l2", rngs=_rngs()),
}
IMAGE_LAYERS = sorted(set(LAYERS) - {"Activation", "Flatten"})  # Activation: any array


def _call_abstract(make):
    """`x -> make()(x)` shapes, on an abstract module: no initialiser runs, nothing computed."""
    def call(x):
        module = nnx.eval_shape(make)
        module.eval()
        graphdef, state = nnx.split(module)
        return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    return call


def _zeros(make):
    """`make()` with every parameter zero, built without running (compiling) initialisers."""
    module = nnx.eval_shape(make)
    module.eval()
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state))


LAYER_CASES = (
    [Case(name, what, _call_abstract(LAYERS[name]), match, x)
     for name in IMAGE_LAYERS for what, x, match in BAD_IMAGES]
    + [Case("Flatten", what, _call_abstract(LAYERS["Flatten"]), match, x) for what, x, match in [
        ("rank1", jnp.zeros(5), esc("Flatten expects (*batch, H, W, C), got shape (5,)")),
        ("rank2", jnp.zeros((H, W)), esc("Flatten expects (*batch, H, W, C), got shape (6, 7)")),
        ("list", [1.0], esc("Flatten expects (*batch, H, W, C), got", "list")),
    ]]
    + [Case(name, "wrong-channels", _call_abstract(LAYERS[name]), match, jnp.zeros((2, H, W, 3)))
       for name, match in [
           ("Conv", esc(f"Conv was built for {C} input channels, got x of shape (2, 6, 7, 3)")),
           ("LocallyConnected", esc(f"built for inputs of size ({H}, {W}) with {C} channels, "
                                     "got x of shape (2, 6, 7, 3)")),
           ("Sequential", esc(f"Conv was built for {C} input channels")),
           ("Stage", esc(f"Conv was built for {C} input channels")),
           ("FeaturePool", esc("channels 3 are not divisible by group_size 2")),
    ]]
    + [Case("LocallyConnected", "wrong-size", _call_abstract(LAYERS["LocallyConnected"]),
            esc(f"built for inputs of size ({H}, {W})", "got x of shape (2, 7, 6, 4)"),
            jnp.zeros((2, W, H, C)))]
    + [Case(name, what, _call_abstract(make), match) for name, what, make, match in [
        ("MaxPool", "window>input", lambda: L.MaxPool(8), esc("window 8 (dilated) is larger")),
        ("MaxPool", "window0", lambda: L.MaxPool(0), esc("window must be >= 1")),
        ("AvgPool", "stride-1", lambda: L.AvgPool(2, -1), esc("stride must be >= 1", "-1")),
        ("AvgPool", "padding'FULL'", lambda: L.AvgPool(2, 1, "FULL"), esc("'FULL'")),
        ("LpPool", "p0", lambda: L.LpPool(0.0, 2), esc("p must be a finite number > 0, got 0.0")),
        ("LpPool", "sigma-nan", lambda: L.LpPool(2.0, 2, gaussian_sigma=NAN),
         esc("sigma must be > 0, got nan")),
        ("LpPool", "window2.5", lambda: L.LpPool(2.0, 2.5), esc("window must be an int")),
        ("FeaturePool", "group_size0", lambda: L.FeaturePool(0), esc("group_size must be")),
        ("FeaturePool", "p-nan", lambda: L.FeaturePool(2, p=NAN), esc("p must be a finite")),
        ("LocalContrastNorm", "even", lambda: L.LocalContrastNorm(4), esc("odd int, got 4")),
        ("LocalContrastNorm", "eps0", lambda: L.LocalContrastNorm(3, eps=0.0),
         esc("eps must be > 0, got 0.0")),
        ("LocalResponseNorm", "size0", lambda: L.LocalResponseNorm(0), esc("size must be a")),
        ("LocalResponseNorm", "k-1", lambda: L.LocalResponseNorm(k=-1.0), esc("k must be")),
        ("Stage", "pool>input", lambda: L.Stage(C, 3, 3, pool_window=8, rngs=_rngs()),
         esc("window 8 (dilated) is larger than the padded input")),
        ("Stage", "lcn-even", lambda: L.Stage(C, 3, 3, lcn_kernel_size=4, rngs=_rngs()),
         esc("kernel_size must be a positive odd int, got 4")),
    ]]
    + no_image("Conv", lambda **kw: L.Conv(**{"in_features": C, "out_features": 4,
                                              "kernel_size": 3, "rngs": _rngs(), **kw}), [
        (f"{arg}={v!r}", {arg: v}, esc(f"{arg} must be a positive int, got {v!r}"))
        for arg in ("in_features", "out_features", "groups") for v in (0, -2, 2.5, "4")
    ] + [
        ("groups3-not-dividing", {"groups": 3}, esc("in_features 4 and out_features 4 must be "
                                                     "divisible by groups=3")),
        ("kernel_size0", {"kernel_size": 0}, esc("kernel_size must be >= 1", "got 0")),
        ("kernel_size2.5", {"kernel_size": 2.5}, esc("kernel_size must be an int", "2.5")),
        ("stride0", {"stride": 0}, esc("stride must be >= 1 on each axis, got 0")),
        ("dilation-1", {"dilation": -1}, esc("dilation must be >= 1 on each axis, got -1")),
    ])
    + no_image("LocallyConnected", lambda **kw: L.LocallyConnected(**{
        "in_features": C, "out_features": 2, "kernel_size": 3, "input_size": (H, W),
        "rngs": _rngs(), **kw}), [
        (f"{arg}={v!r}", {arg: v}, esc(f"{arg} must be a positive int, got {v!r}"))
        for arg in ("in_features", "out_features") for v in (0, -1, 1.5)
    ] + [
        ("input_size0", {"input_size": 0}, esc("input_size must be >= 1 on each axis, got 0")),
        ("input_size2.5", {"input_size": 2.5}, esc("input_size must be an int or a pair")),
        ("window>input", {"kernel_size": 9}, esc("window 9 (dilated) is larger than the padded "
                                                  f"input {H} on height")),
        ("padding'FULL'", {"padding": "FULL"}, esc('padding must be "SAME"', "'FULL'")),
        ("padding=window", {"padding": 3}, esc("is >= the window 3")),
        ("stride0", {"stride": 0}, esc("stride must be >= 1")),
    ])
    + no_image("AdaptiveAvgPool", L.AdaptiveAvgPool, [
        (f"output_size={o!r}", {"output_size": o}, esc("output_size must", repr(o)))
        for o in (0, -1, 2.5)
    ])
    + no_image("Activation", L.Activation, [
        (f"name={n!r}", {"name": n}, esc(f"unknown activation {n!r}; valid: ['abs'"))
        for n in ("gelu", "ReLU", 3)
    ])
    + no_image("Sequential", lambda: L.Sequential(conv=3), [
        ("not-callable", {}, esc("layer 'conv' is not callable: 3"))])
    + no_image("Stage", lambda **kw: nnx.eval_shape(lambda: L.Stage(C, 3, 3, rngs=_rngs(),
                                                                      **kw)), [
        ("pool'median'", {"pool": "median"}, esc("unknown pool 'median'; valid: ['max'")),
        ("activation'gelu'", {"activation": "gelu"}, esc("unknown activation 'gelu'")),
    ])
)


# ---------------------------------------------------------------- models

MODEL_FACTORIES = {  # (factory, input shape, classes); built abstract (nnx.eval_shape)
    "LeNet5": (lambda: LeNet5(rngs=_rngs()), (32, 32, 1), 10),
    "StageNet": (lambda: StageNet(4, input_shape=(8, 8, 1), rngs=_rngs()), (8, 8, 1), 4),
    "VGG": (lambda: VGG(5, channels=(2,) * 5, hidden=8, rngs=_rngs()), (32, 40, 3), 5),
    "AlexNet": (lambda: AlexNet(6, rngs=_rngs()), (227, 227, 3), 6),
    "AlexNet-torchvision": (lambda: AlexNet(7, variant="torchvision", rngs=_rngs()),
                            (70, 64, 3), 7),
    "ConnectivityNet-lc": (lambda: ConnectivityNet(3, input_shape=(6, 5, 2), connectivity="lc",
                                                   rngs=_rngs()), (6, 5, 2), 3),
}


def _model_cases(name: str) -> list[Case]:
    make, (h, w, c), _ = MODEL_FACTORIES[name]
    cls = name.split("-")[0]
    expects = esc(f"{cls} expects images (*batch, H, W, C)")
    rows = [
        ("rank1", jnp.zeros(5), expects + ".*got shape \\(5,\\)"),
        ("rank2", jnp.zeros((h, w)), expects + ".*got shape"),
        ("list", [[[1.0]]], expects + ".*got <class 'list'>"),
        ("wrong-channels", jnp.zeros((2, h, w, c + 1)), expects + f".*{c + 1}\\)"),
        ("uint8", jnp.zeros((2, h, w, c), jnp.uint8), esc(f"{cls} expects float images, got "
                                                           "dtype uint8", "normalize")),
        ("int32", jnp.zeros((2, h, w, c), jnp.int32), esc("expects float images", "int32")),
        ("bool", jnp.zeros((2, h, w, c), bool), esc("expects float images", "dtype bool")),
    ]
    if name in ("LeNet5", "StageNet", "AlexNet", "ConnectivityNet-lc"):  # fixed input size
        rows.append(("wrong-size", jnp.zeros((2, h - 1, w, c)), expects + ".*got shape"))
        rows.append(("zero-height", jnp.zeros((2, 0, w, c)), expects + ".*got shape"))
    else:  # any size from a minimum: too small fails in the first window that does not fit
        rows.append(("too-small", jnp.zeros((2, 16, 16, c)), esc("is larger than the padded "
                                                                 "input")))
        rows.append(("zero-height", jnp.zeros((2, 0, w, c)), esc("empty height/width/channel")))
    return [Case(name, what, _call_abstract(make), match, x) for what, x, match in rows]


MODEL_CASES = [case for name in MODEL_FACTORIES for case in _model_cases(name)] + no_image(
    "models", lambda make: make(), [
        ("VGG-depth13", {"make": lambda: VGG(depth=13, rngs=_rngs())},
         esc("unknown VGG depth 13; valid: [11, 16]")),
        ("VGG-4-widths", {"make": lambda: VGG(channels=(8,) * 4, rngs=_rngs())},
         esc("channels must give one width per stage (5), got (8, 8, 8, 8)")),
        ("StageNet-no-stage", {"make": lambda: StageNet(3, input_shape=(8, 8, 1), features=(),
                                                        rngs=_rngs())},
         esc("features must list at least one stage")),
        ("StageNet-per-stage", {"make": lambda: StageNet(3, input_shape=(8, 8, 1),
                                                         kernel_size=(3, 3, 3), rngs=_rngs())},
         esc("kernel_size has 3 entries, expected one per stage (2)")),
        ("LeNet5-small", {"make": lambda: LeNet5(input_size=20, rngs=_rngs())},
         esc("LeNet5 needs input_size >= 28, got 20")),
        ("LeNet5-pool", {"make": lambda: LeNet5(pool="l2", rngs=_rngs())},
         esc("unknown pool 'l2'; valid: ['avg', 'max']")),
        ("ConnectivityNet-kind", {"make": lambda: ConnectivityNet(
            3, input_shape=(8, 8, 1), connectivity="dense", rngs=_rngs())},
         esc("unknown connectivity 'dense'; valid: ['fc', 'lc', 'conv']")),
        ("StageNet-strides", {"make": lambda: StageNet(3, input_shape=(8, 8, 1),
                                                       conv_stride=(1, 2, 2), rngs=_rngs())},
         esc("conv_stride has 3 entries, expected one per stage (2)")),
    ])
