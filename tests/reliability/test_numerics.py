"""Property tests (hypothesis): LCN, Lp/feature pooling, LRN, avg/max pooling stay finite.

Over random shapes, windows, strides and paddings, each op and the gradient of
`sum(op(x) * cotangent)` are finite on all-zero images, constants (1e-30 ... 1e30, signed),
random normals at scales 1e-30 ... 1e30, a single huge spike on zeros and a denormal constant.
Beyond finiteness, the exact answers hold at every scale: pools are 1-homogeneous
(`op(2**k x) == 2**k op(x)`, k in [-100, 100], where |x|^3 over- or underflows float32 unless
rescaled), LCN is invariant under `a*x + b` and maps constants to exactly 0, and LRN is
bounded by `|x| / k**beta`.

Every image family is one image of a batch, so each example compiles once (forward and
backward in one jitted call).
"""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxconv import functional as F

# Property tests over many shapes and scales: the full suite only (pytest -m 'not slow' skips).
pytestmark = pytest.mark.slow


def _settings(max_examples):
    # Reproducible (derandomize), no example database written, no deadline (jit compiles).
    return settings(max_examples=max_examples, deadline=None, database=None, derandomize=True)

# (name, value) families; each becomes one (H, W, C) image of the batch.
CONSTANTS = [0.0, 1e4, -1e4, 1e-30, 1e15, -1e15, 1e30, -1e30, 1e-40]
SCALES = [1.0, 1e6, 1e15, 1e30, 1e-30]


def _families(shape, seed):
    """`(F, H, W, C)` float32 images: constants, scaled normals and a spike; F = 15."""
    rng = np.random.default_rng(seed)
    images = [np.full(shape, c) for c in CONSTANTS]
    images += [s * rng.normal(size=shape) for s in SCALES]
    spike = np.zeros(shape)
    spike[rng.integers(shape[0]), rng.integers(shape[1]), rng.integers(shape[2])] = 1e15
    images.append(spike)
    return np.stack(images).astype(np.float32)


def _forward_backward(op, x, seed):
    """`(op(x), d/dx sum(op(x) * cotangent))` in one jitted call, with a random cotangent."""
    out = jax.eval_shape(op, x)
    cot = np.random.default_rng(seed).normal(size=out.shape).astype(np.float32)

    @jax.jit
    def run(x, cot):
        y, vjp = jax.vjp(op, x)
        return y, vjp(cot)[0]

    y, g = run(x, cot)
    return np.asarray(y), np.asarray(g)


def _assert_finite(y, g, what):
    bad_y = np.argwhere(~np.isfinite(y).reshape(len(y), -1).all(axis=1)).ravel()
    bad_g = np.argwhere(~np.isfinite(g).reshape(len(g), -1).all(axis=1)).ravel()
    assert not len(bad_y), f"{what}: non-finite output for image families {bad_y.tolist()}"
    assert not len(bad_g), f"{what}: non-finite gradient for image families {bad_g.tolist()}"


def _assert_homogeneous(op, x, k, what):
    """`op(2**k x) == 2**k op(x)`: the scaled input is computed right, not only finitely."""
    x = x[len(CONSTANTS):len(CONSTANTS) + 1]  # the unit-scale normal image
    both = jax.jit(op)(np.concatenate([x, np.ldexp(x, k)]))
    y, y_k = np.asarray(both, np.float64)
    scale = np.abs(y).max() + 1e-30
    np.testing.assert_allclose(np.ldexp(y_k, -k), y, rtol=3e-5, atol=1e-6 * scale, err_msg=what)


# ---------------------------------------------------------------- strategies


@st.composite
def windowed(draw, max_window=4):
    """A window, stride and padding, and an image shape they fit."""
    kh, kw = draw(st.integers(1, max_window)), draw(st.integers(1, max_window))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kind = draw(st.sampled_from(["VALID", "SAME", "int", "explicit"]))
    if kind == "int":
        padding = draw(st.integers(0, min(kh, kw) - 1))
        pads = ((padding, padding), (padding, padding))
    elif kind == "explicit":
        pads = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in (kh, kw))
        padding = pads
    else:
        padding, pads = kind, ((0, 0), (0, 0))
    h = draw(st.integers(max(1, kh - sum(pads[0])), 7))
    w = draw(st.integers(max(1, kw - sum(pads[1])), 7))
    c = draw(st.integers(1, 3))
    return (h, w, c), (kh, kw), stride, padding


SEEDS = st.integers(0, 2**31 - 1)
POWERS = st.integers(-100, 100)


# ---------------------------------------------------------------- pools


@_settings(20)
@given(setup=windowed(), p=st.sampled_from([1, 2, 3, 0.5]), gaussian=st.booleans(), seed=SEEDS,
       k=POWERS)
@pytest.mark.slow
def test_lp_pool_finite_and_homogeneous(setup, p, gaussian, seed, k):
    shape, window, stride, padding = setup
    weights = F.gaussian_window(window) if gaussian else None

    def op(x):
        return F.lp_pool(x, p, window, stride, padding, weights)

    x = _families(shape, seed)
    what = f"lp_pool p={p} window={window} stride={stride} padding={padding} w={gaussian}"
    _assert_finite(*_forward_backward(op, x, seed), what)
    _assert_homogeneous(op, x, k, what)


@_settings(15)
@given(group=st.integers(1, 3), groups=st.integers(1, 3), hw=st.integers(1, 4),
       p=st.sampled_from([1, 2, 3, 0.5, "max"]), seed=SEEDS, k=POWERS)
def test_feature_pool_finite_and_homogeneous(group, groups, hw, p, seed, k):
    def op(x):
        return F.feature_pool(x, group, p=p)

    x = _families((hw, hw + 1, group * groups), seed)
    what = f"feature_pool p={p} group_size={group}"
    _assert_finite(*_forward_backward(op, x, seed), what)
    _assert_homogeneous(op, x, k, what)


@_settings(20)
@given(setup=windowed(), kind=st.sampled_from(["max", "avg", "avg_exclude_pad"]), seed=SEEDS,
       k=POWERS)
def test_avg_and_max_pool_finite_and_homogeneous(setup, kind, seed, k):
    shape, window, stride, padding = setup

    def op(x):
        if kind == "max":
            return F.max_pool(x, window, stride, padding)
        return F.avg_pool(x, window, stride, padding, count_include_pad=kind == "avg")

    x = _families(shape, seed)
    what = f"{kind} window={window} stride={stride} padding={padding}"
    _assert_finite(*_forward_backward(op, x, seed), what)
    _assert_homogeneous(op, x, k, what)


# ---------------------------------------------------------------- normalization


@_settings(15)
@given(h=st.integers(1, 8), w=st.integers(1, 8), c=st.integers(1, 3),
       kernel_size=st.sampled_from([1, 3, 5, 9]), sigma=st.sampled_from([None, 0.5, 3.0]),
       seed=SEEDS, log_a=st.floats(-2, 30), b=st.floats(-10, 10))
@pytest.mark.slow
def test_lcn_finite_invariant_and_zero_on_constants(h, w, c, kernel_size, sigma, seed, log_a, b):
    def op(x):
        return F.local_contrast_norm(x, kernel_size, sigma)

    x = _families((h, w, c), seed)
    what = f"lcn kernel_size={kernel_size} sigma={sigma} on {(h, w, c)}"
    y, g = _forward_backward(op, x, seed)
    _assert_finite(y, g, what)
    np.testing.assert_array_equal(y[:len(CONSTANTS)], 0.0, err_msg=what)  # constants -> 0
    # y(a*x + b) == y(x) while the eps floor is inactive (unit normals: local std ~ 1).
    unit = x[len(CONSTANTS)]
    a = 10.0**log_a
    moved = np.float32(a) * unit + np.float32(a * b)
    both = np.asarray(jax.jit(op)(np.stack([unit, moved])), np.float64)
    # Rounding a*x + b in float32 moves x by ~6e-8 * |b|, before the op sees it.
    np.testing.assert_allclose(both[1], both[0], rtol=1e-4, atol=1e-4 * (1 + abs(b)),
                               err_msg=f"{what} a={a:.3g} b={b:.3g}")


@_settings(15)
@given(h=st.integers(1, 4), c=st.integers(1, 9), size=st.integers(1, 7),
       alpha=st.sampled_from([1e-4, 0.1, 1.0]), beta=st.sampled_from([0.5, 0.75, 1.0]),
       k=st.sampled_from([0.5, 1.0, 2.0]), seed=SEEDS)
def test_lrn_finite_and_bounded(h, c, size, alpha, beta, k, seed):
    def op(x):
        return F.local_response_norm(x, size, alpha, beta, k)

    x = _families((h, h + 1, c), seed)
    y, g = _forward_backward(op, x, seed)
    _assert_finite(y, g, f"lrn size={size} alpha={alpha} beta={beta} k={k}")
    # The denominator is >= k**beta: |y| <= |x| / k**beta (equality on zeros).
    assert (np.abs(y) <= np.abs(x) / k**beta * (1 + 1e-6)).all()
    np.testing.assert_array_equal(y[0], 0.0)


# ---------------------------------------------------------------- NaN is not hidden

NAN_OPS = {
    "lp_pool": lambda x: F.lp_pool(x, 2, 2),
    "lp_pool_p3_gaussian": lambda x: F.lp_pool(x, 3, 3, 1, 1, weights=F.gaussian_window(3)),
    "lp_pool_p0.5": lambda x: F.lp_pool(x, 0.5, 2),
    "feature_pool": lambda x: F.feature_pool(x, 2),
    "feature_pool_p1": lambda x: F.feature_pool(x, 2, p=1),
    "max_pool": lambda x: F.max_pool(x, 2),
    "avg_pool": lambda x: F.avg_pool(x, 2),
    "local_contrast_norm": lambda x: F.local_contrast_norm(x, 3),
    "local_response_norm": lambda x: F.local_response_norm(x, 3),
}


@pytest.mark.parametrize("name", sorted(NAN_OPS))
def test_nan_input_gives_nan_output_not_zero(name):
    # A NaN pixel must show in the output (torch does the same); the old safe root of the Lp
    # pools turned a NaN window into 0, hiding upstream bugs.
    x = np.ones((2, 4, 4, 2), np.float32)
    x[1, 0, 0, 0] = np.nan
    y = np.asarray(jax.jit(NAN_OPS[name])(x))
    assert np.isnan(y[1]).any()
    assert np.isfinite(y[0]).all()  # and stays in its own image
