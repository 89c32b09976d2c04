"""The bad-input table of `test_bad_input`: (target, bad input, expected message) cases.

One `Case` per (public op / layer / model, bad input); built at import, run by the tests.
This module holds the shared pieces and the ops of `jaxconv.functional`;
`bad_layer_cases` holds the layers and models.
"""

import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxconv import functional as F

H, W, C = 6, 7, 4
IMAGE = jnp.zeros((2, H, W, C))
NAN = float("nan")


class Case(NamedTuple):
    target: str  # op, layer or model name
    what: str  # the bad input
    call: Callable[[Any], Any]  # takes x (None for calls without an image)
    match: str  # regex the message must contain
    x: Any = IMAGE

    @property
    def id(self) -> str:
        return f"{self.target}-{self.what}"


def esc(*parts: str) -> str:
    """A regex for the literal fragments in order, anything between them."""
    return ".*".join(re.escape(p) for p in parts)


# ---------------------------------------------------------------- ops

K = jnp.ones((3, 3, C, 2))
LC_K = jnp.ones((H - 2, W - 2, 3, 3, C, 2))  # 3x3 VALID on 6x7 -> 4x5
OPS = {  # every op of jaxconv.functional that takes images, with valid other arguments
    "conv2d": lambda x: F.conv2d(x, K),
    "extract_patches": lambda x: F.extract_patches(x, 3),
    "locally_connected2d": lambda x: F.locally_connected2d(x, LC_K, kernel_size=3),
    "max_pool": lambda x: F.max_pool(x, 2),
    "avg_pool": lambda x: F.avg_pool(x, 3, 1, "SAME", count_include_pad=False),
    "lp_pool": lambda x: F.lp_pool(x, 3, 3, 2, 1, weights=F.gaussian_window(3)),
    "feature_pool": lambda x: F.feature_pool(x, 2),
    "adaptive_avg_pool": lambda x: F.adaptive_avg_pool(x, (4, 3)),
    "local_contrast_norm": lambda x: F.local_contrast_norm(x, 5),
    "local_response_norm": lambda x: F.local_response_norm(x, 3),
}

# Bad images, for every image-taking op and layer: (what, x, message regex).
BAD_IMAGES = [
    ("rank1", jnp.zeros((5,)), esc("rank >= 3 (*batch, height, width, channels)", "(5,)")),
    ("rank2", jnp.zeros((H, W)), esc("rank >= 3", f"got shape ({H}, {W})")),
    ("uint8", jnp.zeros((2, H, W, C), jnp.uint8), esc("floating array", "got dtype uint8")),
    ("int32", jnp.zeros((2, H, W, C), jnp.int32), esc("floating array", "got dtype int32")),
    ("bool", jnp.zeros((2, H, W, C), bool), esc("floating array", "got dtype bool")),
    ("list", [[[1.0]]], esc("must be an array (*batch, height, width, channels)", "list")),
    ("zero-height", jnp.zeros((2, 0, W, C)), esc("empty height/width/channel", f"(2, 0, {W}")),
    ("zero-width", jnp.zeros((2, H, 0, C)), esc("empty height/width/channel", f"{H}, 0, {C})")),
    ("zero-channels", jnp.zeros((2, H, W, 0)), esc("empty height/width/channel", f"{W}, 0)")),
]
IMAGE_CASES = [Case(op, what, OPS[op], match, x) for op in OPS for what, x, match in BAD_IMAGES]


def _windowed(name: str, op, arg: str) -> list[Case]:
    """Window/stride/padding cases for `op(x, window, stride, padding)`; `arg`: window's name."""
    cases = [
        ("window0", (0, 1, "VALID"), esc(f"{arg} must be >= 1 on each axis, got 0")),
        ("window-2", (-2, 1, "VALID"), esc(f"{arg} must be >= 1 on each axis, got -2")),
        ("window2.5", (2.5, 1, "VALID"), esc(f"{arg} must be an int or a pair", "got 2.5")),
        ("window(2,)", ((2,), 1, "VALID"), esc(f"{arg} must be an int or a pair", "(2,)")),
        ("window(2,2.5)", ((2, 2.5), 1, "VALID"), esc(f"{arg} must hold ints, got (2, 2.5)")),
        ("window>height", (8, 1, "VALID"), esc(f"window 8 (dilated) is larger than the padded "
                                                f"input {H} on height")),
        ("window>width", ((1, 9), 1, 0), esc(f"larger than the padded input {W} on width")),
        ("stride0", (2, 0, "VALID"), esc("stride must be >= 1 on each axis, got 0")),
        ("stride-1", (2, -1, "VALID"), esc("stride must be >= 1 on each axis, got -1")),
        ("stride1.5", (2, 1.5, "VALID"), esc("stride must be an int or a pair", "got 1.5")),
        ("padding-1", (2, 1, -1), esc("padding must be >= 0, got ((-1, -1), (-1, -1))")),
        ("padding(0,-1)", (2, 1, ((0, 0), (0, -1))), esc("padding must be >= 0", "width")),
        ("padding=window", (2, 1, 2), esc("padding ((2, 2), (2, 2)) is >= the window 2")),
        ("padding>window", (3, 1, (0, 5)), esc("padding ((0, 0), (5, 5)) is >= the window 3")),
        ("padding'FULL'", (2, 1, "FULL"), esc('padding must be "SAME", "VALID"', "'FULL'")),
        ("paddingNone", (2, 1, None), esc('padding must be "SAME"', "got None")),
        ("paddingTrue", (2, 1, True), esc('padding must be "SAME"', "got True")),
        ("padding(1,2,3)", (2, 1, (1, 2, 3)), esc("padding must be", "got (1, 2, 3)")),
        ("padding(0.5,0)", (2, 1, (0.5, 0)), esc("padding must be", "got (0.5, 0)")),
        ("padding-float-pairs", (2, 1, ((1.5, 1), (1, 1))), esc("padding must be",
                                                                 "((1.5, 1), (1, 1))")),
        ("padding-str-pairs", (2, 1, (("a", "b"), (0, 0))), esc("padding must be", "'a'")),
        ("padding((1,),(1,))", (2, 1, ((1,), (1,))), esc("padding must be", "((1,), (1,))")),
    ]
    return [Case(name, what, lambda x, a=a: op(x, *a), match) for what, a, match in cases]


def _conv(**kw):
    kernel = kw.pop("kernel", K)
    return lambda x: F.conv2d(x, kernel, kw.pop("bias", None), **kw)


def _lc(**kw):
    kernel, ks = kw.pop("kernel", LC_K), kw.pop("kernel_size", 3)
    return lambda x: F.locally_connected2d(x, kernel, kw.pop("bias", None), kernel_size=ks, **kw)


def _cases(target, op, table) -> list[Case]:
    """`table`: (what, kwargs of `op`, regex) rows -> cases calling `op(x, **kwargs)`."""
    return [Case(target, what, lambda x, kw=kw: op(x, **kw), match) for what, kw, match in table]


def no_image(target, op, table) -> list[Case]:
    return [Case(target, what, lambda _, kw=kw: op(**kw), match, None)
            for what, kw, match in table]


OP_CASES = (
    _windowed("max_pool", F.max_pool, "window")
    + _windowed("avg_pool", F.avg_pool, "window")
    + _windowed("lp_pool", lambda x, w, s, pad: F.lp_pool(x, 2, w, s, pad), "window")
    + _windowed("extract_patches", lambda x, w, s, pad: F.extract_patches(
        x, w, stride=s, padding=pad), "kernel_size")
    + _windowed("locally_connected2d", lambda x, w, s, pad: F.locally_connected2d(
        x, LC_K, kernel_size=w, stride=s, padding=pad), "kernel_size")
    + [Case("conv2d", what, (lambda x, kw=kw: F.conv2d(x, K, **kw)), match) for what, kw, match in [
        ("stride0", {"stride": 0}, esc("stride must be >= 1 on each axis, got 0")),
        ("stride-2", {"stride": (1, -2)}, esc("stride must be >= 1 on each axis, got (1, -2)")),
        ("stride2.5", {"stride": 2.5}, esc("stride must be an int or a pair", "got 2.5")),
        ("dilation0", {"dilation": 0}, esc("dilation must be >= 1 on each axis, got 0")),
        ("dilation1.5", {"dilation": 1.5}, esc("dilation must be an int or a pair", "1.5")),
        ("dilated-window>input", {"dilation": 4, "padding": "VALID"},
         esc(f"window 9 (dilated) is larger than the padded input {H} on height")),
        ("padding3>=window3", {"padding": 3}, esc("padding ((3, 3), (3, 3)) is >= the window 3")),
        ("padding-1", {"padding": -1}, esc("padding must be >= 0")),
        ("padding'FULL'", {"padding": "FULL"}, esc('padding must be "SAME"', "'FULL'")),
        ("padding-float-pairs", {"padding": ((1.5, 1), (1, 1))}, esc("((1.5, 1), (1, 1))")),
        ("groups0", {"groups": 0}, esc("groups must be a positive int, got 0")),
        ("groups-1", {"groups": -1}, esc("groups must be a positive int, got -1")),
        ("groups2.5", {"groups": 2.5}, esc("groups must be a positive int, got 2.5")),
        ("groupsTrue", {"groups": True}, esc("groups must be a positive int, got True")),
        ("groups3-not-dividing", {"groups": 3}, esc(f"in_channels {C} and out_channels 2 must "
                                                     "be divisible by groups=3")),
        ("groups2-kernel-in-dim", {"groups": 2}, esc("kernel shape (3, 3, 4, 2) expects 8 input "
                                                      "channels", f"got x with {C}")),
    ]]
    + _cases("conv2d", lambda x, **kw: _conv(**kw)(x), [
        ("kernel-rank3", {"kernel": jnp.ones((3, 3, C))}, esc(
            "kernel must be (kh, kw, in_channels // groups, out_channels), got shape (3, 3, 4)")),
        ("kernel-rank5", {"kernel": jnp.ones((1, 3, 3, C, 2))}, esc("got shape (1, 3, 3, 4, 2)")),
        ("kernel-list", {"kernel": [[1.0]]}, esc("kernel must be (kh, kw", "got shape None")),
        ("kernel-empty-window", {"kernel": jnp.ones((0, 3, C, 2))},
         esc("kernel has an empty dim: shape (0, 3, 4, 2)")),
        ("kernel-zero-out", {"kernel": jnp.ones((3, 3, C, 0))}, esc("kernel has an empty dim")),
        ("kernel-in-channels", {"kernel": jnp.ones((3, 3, 3, 2))},
         esc("kernel shape (3, 3, 3, 2) expects 3 input channels", f"got x with {C}")),
        ("kernel>input", {"kernel": jnp.ones((9, 9, C, 2)), "padding": "VALID"},
         esc(f"window 9 (dilated) is larger than the padded input {H} on height")),
        ("bias(3,)", {"bias": jnp.ones(3)}, esc("bias must have shape (2,), got (3,)")),
        ("bias(1,2)", {"bias": jnp.ones((1, 2))}, esc("bias must have shape (2,), got (1, 2)")),
        ("bias-list", {"bias": [1.0, 2.0, 3.0]}, esc("bias must have shape (2,), got (3,)")),
        ("bias-scalar", {"bias": 1.0}, esc("bias must have shape (2,), got ()")),
    ])
    + _cases("locally_connected2d", lambda x, **kw: _lc(**kw)(x), [
        ("kernel-rank4", {"kernel": K}, esc("kernel must be (out_h, out_w, kh, kw, "
                                             "in_channels, out_channels), got shape (3, 3, 4, 2)")),
        ("kernel-other-input-size", {"kernel": jnp.ones((2, 3, 3, 3, C, 2))},
         esc("kernel shape (2, 3, 3, 3, 4, 2) does not fit this input: expected (4, 5, 3, 3, 4")),
        ("kernel_size-vs-kernel", {"kernel_size": 2}, esc("does not fit this input")),
        ("kernel-in-channels", {"kernel": jnp.ones((4, 5, 3, 3, 3, 2))},
         esc("does not fit this input: expected (4, 5, 3, 3, 4, 'O')")),
        ("kernel-zero-out", {"kernel": jnp.ones((4, 5, 3, 3, C, 0))},
         esc("kernel has an empty dim")),
        ("bias(2,)", {"bias": jnp.ones(2)}, esc("bias must have shape (4, 5, 2), got (2,)")),
        ("stride-changes-out", {"stride": 2}, esc("does not fit this input")),
    ])
    + _cases("lp_pool", lambda x, **kw: F.lp_pool(x, kw.pop("p", 2), 2, **kw), [
        (f"p={p!r}", {"p": p}, esc(f"p must be a finite number > 0, got {p!r}"))
        for p in (0, -1, -0.5, NAN, float("inf"), "2", True, None)
    ] + [
        ("weights-shape", {"weights": jnp.ones((3, 3))},
         esc("weights must have the window's shape (2, 2), got (3, 3)")),
        ("weights-negative", {"weights": [[1.0, -1.0], [1.0, 1.0]]},
         esc("weights must be finite and >= 0, got [[1.0, -1.0], [1.0, 1.0]]")),
        ("weights-nan", {"weights": np.full((2, 2), NAN)}, esc("weights must be finite")),
    ])
    + _cases("feature_pool", F.feature_pool, [
        (f"group_size={g!r}", {"group_size": g}, esc(f"group_size must be a positive int, "
                                                      f"got {g!r}"))
        for g in (0, -1, 2.5, True, "2", None)
    ] + [
        ("group_size3-not-dividing", {"group_size": 3}, esc(f"channels {C} are not divisible "
                                                             "by group_size 3")),
        ("group_size>channels", {"group_size": 8}, esc("not divisible by group_size 8")),
    ] + [
        (f"p={p!r}", {"group_size": 2, "p": p}, esc(f'p must be a finite number > 0 or "max", '
                                                     f"got {p!r}"))
        for p in (0, -2, NAN, float("inf"), "l2", "MAX", None)
    ])
    + _cases("adaptive_avg_pool", F.adaptive_avg_pool, [
        (f"output_size={o!r}", {"output_size": o}, esc("output_size must", repr(o)))
        for o in (0, -1, 2.5, (2, 3, 4), (2, 0), None)
    ])
    + _cases("local_contrast_norm", F.local_contrast_norm, [
        (f"kernel_size={k!r}", {"kernel_size": k}, esc(f"kernel_size must be a positive odd "
                                                        f"int, got {k!r}"))
        for k in (4, 0, -1, -3, 2.5, True, "9", None)
    ] + [
        (f"eps={e!r}", {"eps": e}, esc(f"eps must be > 0, got {e!r}"))
        for e in (0, 0.0, -1e-3, NAN, "a", None)
    ] + [
        (f"sigma={s!r}", {"sigma": s}, esc(f"sigma must be > 0, got {s!r}"))
        for s in (0, -1.0, NAN, (1.0, 0.0))
    ] + [
        (f"sigma={s!r}", {"sigma": s}, esc(f"sigma must be a number or a pair (sh, sw) of "
                                            f"numbers, got {s!r}"))
        for s in ("a", (1.0, 2.0, 3.0), [1.0])
    ])
    + _cases("local_response_norm", F.local_response_norm, [
        (f"size={n!r}", {"size": n}, esc(f"size must be a positive int, got {n!r}"))
        for n in (0, -1, 2.5, True)
    ] + [
        (f"{name}={v!r}", {name: v}, esc(f"{name} must be a finite number >= 0, got {v!r}"))
        for name in ("alpha", "k") for v in (-1.0, NAN, float("inf"), "a")
    ] + [
        (f"beta={v!r}", {"beta": v}, esc(f"beta must be a finite number, got {v!r}"))
        for v in (NAN, float("inf"), "a", None)
    ])
    + no_image("gaussian_window", F.gaussian_window, [
        ("window0", {"window": 0}, esc("window must be >= 1 on each axis, got 0")),
        ("window2.5", {"window": 2.5}, esc("window must be an int or a pair", "got 2.5")),
        ("window(3,)", {"window": (3,)}, esc("window must be an int or a pair", "got (3,)")),
    ] + [
        (f"sigma={s!r}", {"window": 3, "sigma": s}, esc("sigma must be", f"got {s!r}"))
        for s in (0, -2.0, NAN, "a", (1.0, 2.0, 3.0), (1.0, -1.0))
    ])
)
