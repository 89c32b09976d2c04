"""Tests for `jaxconv.functional.pooling`.

References: PyTorch's max/avg/lp/adaptive-avg pools where they define the same thing (symmetric
padding <= window / 2, VALID for Lp), a NumPy loop over the window for everything else (SAME,
asymmetric padding, Lp weights, feature pooling), and closed forms. Tests of ops with two
lowerings (`jaxconv.functional.lowering`) run under both (the `lowering` fixture).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from jaxconv import functional as F
from jaxconv.functional import pooling

torch = pytest.importorskip("torch")
TF = torch.nn.functional


@pytest.fixture(params=["xla", "cpu"])
def lowering(request):
    """Runs the test under each lowering (`F.lowering`); its jitted functions trace inside."""
    with F.lowering(request.param):
        yield request.param


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _explicit(padding, in_hw, window, stride):
    """((top, bottom), (left, right)) from the test's side: SAME via lax's own rule."""
    if padding in ("SAME", "VALID"):
        return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, window, stride, padding))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if all(isinstance(p, int) for p in padding):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return tuple(tuple(p) for p in padding)


def _pool_reference(x, kind, window, stride=None, padding="VALID", p=None, weights=None):
    """NumPy loop over every output pixel of an (N, H, W, C) input, in float64."""
    window = _pair(window)
    stride = window if stride is None else _pair(stride)
    pads = _explicit(padding, x.shape[1:3], window, stride)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0),) + pads + ((0, 0),))
    inside = np.pad(np.ones(x.shape[1:3], bool), pads)
    (kh, kw), (sh, sw) = window, stride
    oh, ow = (xp.shape[1] - kh) // sh + 1, (xp.shape[2] - kw) // sw + 1
    w = np.ones(window) if weights is None else np.asarray(weights, np.float64)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
            valid = inside[i * sh : i * sh + kh, j * sw : j * sw + kw]
            if kind == "max":
                y[:, i, j] = patch[:, valid, :].max(axis=1)
            elif kind == "avg_include_pad":
                y[:, i, j] = patch.sum(axis=(1, 2)) / (kh * kw)
            elif kind == "avg_exclude_pad":
                y[:, i, j] = patch.sum(axis=(1, 2)) / valid.sum()
            else:  # lp
                y[:, i, j] = (w[None, :, :, None] * np.abs(patch) ** p).sum(axis=(1, 2)) ** (1 / p)
    return y


def _to_nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


def _from_nchw(y):
    return y.permute(0, 2, 3, 1).numpy()


POOLS = {
    "max": lambda x, w, s, pad: F.max_pool(x, w, s, pad),
    "avg_include_pad": lambda x, w, s, pad: F.avg_pool(x, w, s, pad),
    "avg_exclude_pad": lambda x, w, s, pad: F.avg_pool(x, w, s, pad, count_include_pad=False),
}
TORCH_POOLS = {
    "max": lambda x, w, s, pad: TF.max_pool2d(x, w, s, pad),
    "avg_include_pad": lambda x, w, s, pad: TF.avg_pool2d(x, w, s, pad, count_include_pad=True),
    "avg_exclude_pad": lambda x, w, s, pad: TF.avg_pool2d(x, w, s, pad, count_include_pad=False),
}


# ---------------------------------------------------------------- max / avg pooling


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize(
    "window, stride, padding",
    # torch needs symmetric padding <= window / 2; its padding 0 is our "VALID".
    [(2, None, "VALID"), (3, 1, 1), ((3, 2), (1, 2), (1, 0)), (3, 2, (0, 1)), ((2, 3), 2, 1)],
)
def test_pool_matches_torch(kind, window, stride, padding):
    x = _normal((2, 7, 8, 3), 0)
    y = jax.jit(lambda x: POOLS[kind](x, window, stride, padding))(x)
    torch_pad = 0 if padding == "VALID" else padding
    expected = _from_nchw(TORCH_POOLS[kind](_to_nchw(x), window, stride or window, torch_pad))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize(
    "window, stride, padding",
    [(3, None, "SAME"), ((2, 3), 1, "SAME"), (3, 2, "SAME"), (3, 1, ((0, 2), (2, 0))),
     ((2, 3), (1, 2), ((1, 0), (0, 2)))],
)
def test_pool_same_and_asymmetric_padding_match_numpy_loop(kind, window, stride, padding):
    x = _normal((2, 7, 8, 3), 1)
    y = jax.jit(lambda x: POOLS[kind](x, window, stride, padding))(x)
    np.testing.assert_allclose(
        y, _pool_reference(x, kind, window, stride, padding), rtol=1e-6, atol=1e-6
    )


@pytest.mark.usefixtures("lowering")
def test_max_pool_never_takes_the_padding():
    # All-negative input: a zero (instead of -inf) pad would win the max at the borders.
    x = -1.0 - np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    y = F.max_pool(x, 2, 1, "SAME")
    np.testing.assert_array_equal(y, x)  # decreasing values: each window's top-left wins


def test_pools_closed_form_on_arange():
    x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(F.max_pool(x, 2)[0, :, :, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(F.avg_pool(x, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    # 3x3 SAME with a 1-pixel zero border: the corner averages 4 pixels, over 9 or 4.
    corner = (0 + 1 + 4 + 5) / 9
    assert F.avg_pool(x, 3, 1, "SAME")[0, 0, 0, 0] == pytest.approx(corner, rel=1e-6)
    assert F.avg_pool(x, 3, 1, "SAME", count_include_pad=False)[0, 0, 0, 0] == pytest.approx(
        corner * 9 / 4, rel=1e-6
    )


def test_pool_default_stride_is_window():
    x = _normal((1, 7, 9, 2), 2)
    np.testing.assert_array_equal(F.max_pool(x, (2, 3)), F.max_pool(x, (2, 3), (2, 3)))
    assert F.avg_pool(x, (2, 3)).shape == (1, 3, 3, 2)


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize(
    "op",
    [lambda x: F.max_pool(x, 2), lambda x: F.max_pool(x, 2, 1),
     lambda x: F.max_pool(x, (3, 2), 2, "SAME")],
    ids=["tiled", "overlapping", "same"],  # reshape path, reduce_window or slices, padded
)
def test_max_pool_grads(op):
    # Distinct values (a permutation spaced 0.1 apart) so no finite-difference step moves the max.
    x = (np.random.default_rng(3).permutation(2 * 5 * 6 * 3) * 0.1).reshape(2, 5, 6, 3)
    check_grads(jax.jit(op), (jnp.asarray(x, jnp.float32),), order=1, modes=["rev"], atol=1e-2,
                rtol=1e-2)


@pytest.mark.parametrize(
    "window, stride, padding, count_include_pad", [(2, None, "VALID", True), (3, 2, "SAME", False)]
)
def test_avg_pool_grads(window, stride, padding, count_include_pad):
    op = functools.partial(F.avg_pool, window=window, stride=stride, padding=padding,
                           count_include_pad=count_include_pad)
    check_grads(jax.jit(op), (_normal((2, 5, 6, 3), 4),), order=1, modes=["rev"], atol=1e-2,
                rtol=1e-2)


# ---------------------------------------------------------------- Lp pooling


@pytest.mark.parametrize(
    "p, signed, window, stride",
    [(0.5, False, 2, None), (1, False, 3, 1), (1.5, False, (2, 3), (1, 2)), (3, False, 2, None),
     (2, True, (2, 3), (1, 2)), (4, True, 3, 1)],
)
def test_lp_pool_matches_torch(p, signed, window, stride):
    x = _normal((2, 7, 8, 3), 5)
    x = x if signed else np.abs(x)  # torch's lp_pool2d takes x^p, not |x|^p
    y = jax.jit(lambda x: F.lp_pool(x, p, window, stride))(x)
    expected = _from_nchw(TF.lp_pool2d(_to_nchw(x), float(p), window, stride))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize(
    "p, window, stride, padding",
    [(1, 3, 1, "VALID"), (2, (3, 2), None, "SAME"), (3.5, 3, 2, 1),
     (0.5, (2, 3), 1, ((0, 1), (2, 0))), (2, (2, 3), 1, ((0, 1), (2, 0)))],
)
def test_lp_pool_weights_match_numpy_loop(p, window, stride, padding):
    x = _normal((2, 6, 7, 3), 6)
    weights = np.random.default_rng(7).uniform(0.1, 2.0, size=_pair(window)).astype(np.float32)
    y = jax.jit(lambda x: F.lp_pool(x, p, window, stride, padding, weights=weights))(x)
    expected = _pool_reference(x, "lp", window, stride, padding, p=p, weights=weights)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.usefixtures("lowering")
def test_lp_pool_gaussian_weights_and_unit_weights():
    x = _normal((1, 6, 6, 2), 8)
    g = F.gaussian_window(3)
    y = F.lp_pool(x, 2, 3, 1, "SAME", weights=g)
    np.testing.assert_allclose(y, _pool_reference(x, "lp", 3, 1, "SAME", p=2, weights=g),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(F.lp_pool(x, 3, 2, weights=jnp.ones((2, 2))), F.lp_pool(x, 3, 2),
                               rtol=1e-6, atol=1e-6)


def test_lp_pool_closed_form():
    # One 2x2 window holding (3, 4, 0, 0): L2 = 5, L1 = 7.
    x = jnp.array([3.0, -4.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    assert F.lp_pool(x, 2, 2)[0, 0, 0, 0] == pytest.approx(5.0, rel=1e-6)
    assert F.lp_pool(x, 1, 2)[0, 0, 0, 0] == pytest.approx(7.0, rel=1e-6)


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize("p", [0.5, 1, 2, 3])  # each of _abs_pow's three branches
@pytest.mark.parametrize("weights, padding", [(None, "VALID"), ("gaussian", 1)])
def test_lp_pool_gradient_is_zero_on_zero_windows(p, weights, padding):
    # Rows 0-3 zero, 4-7 non-zero. Padding 1 makes windows of rows (-1, 0), (1, 2), (3, 4), ...
    x = np.concatenate([np.zeros((1, 4, 6, 2)), 1.0 + np.abs(_normal((1, 4, 6, 2), 9))], axis=1)
    w = None if weights is None else F.gaussian_window(2)
    g = jax.jit(jax.grad(lambda x: F.lp_pool(x, p, 2, padding=padding, weights=w).sum()))(
        jnp.asarray(x, jnp.float32)
    )
    assert np.isfinite(g).all()
    np.testing.assert_array_equal(g[:, :3], 0.0)  # rows 0-2 lie only in all-zero windows
    assert (g[:, 5:] > 0).all()


@pytest.mark.usefixtures("lowering")
@pytest.mark.parametrize(
    "p, weights", [(3, None), (1.5, "random"), (2, "gaussian")]
)
def test_lp_pool_grads(p, weights):
    w = {None: None, "random": np.random.default_rng(10).uniform(0.5, 1.5, (3, 3)),
         "gaussian": F.gaussian_window(3)}[weights]
    op = jax.jit(lambda x: F.lp_pool(x, p, 3, 2, "SAME", weights=w))
    check_grads(op, (_normal((2, 5, 6, 2), 11),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("p", [0, -1, float("inf"), "2", True])
def test_lp_pool_rejects_p(p):
    with pytest.raises(ValueError, match=re.escape(f"p must be a finite number > 0, got {p!r}")):
        F.lp_pool(jnp.ones((4, 4, 1)), p, 2)


def test_lp_pool_rejects_weights_shape():
    with pytest.raises(ValueError, match=re.escape(
            "weights must have the window's shape (2, 3), got (3, 2)")):
        F.lp_pool(jnp.ones((4, 4, 1)), 2, (2, 3), weights=jnp.ones((3, 2)))


# ---------------------------------------------------------------- gaussian_window


@pytest.mark.parametrize("window", [1, 3, 4, (3, 6)])
@pytest.mark.parametrize("sigma", [None, 0.7, (0.5, 1.5)])
def test_gaussian_window_closed_form(window, sigma):
    kh, kw = _pair(window)
    if sigma is None:
        sh, sw = 0.25 * kh, 0.25 * kw  # the documented default
    else:
        sh, sw = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    r, c = np.meshgrid(np.arange(kh) - (kh - 1) / 2, np.arange(kw) - (kw - 1) / 2, indexing="ij")
    expected = np.exp(-(r**2) / (2 * sh**2) - c**2 / (2 * sw**2))
    expected /= expected.sum()
    g = F.gaussian_window(window, sigma)
    assert g.shape == (kh, kw) and g.dtype == jnp.float32
    g = np.asarray(g)
    np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-7)
    assert float(g.sum()) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(g, g[::-1, :], rtol=1e-6)  # symmetric, so centred
    np.testing.assert_allclose(g, g[:, ::-1], rtol=1e-6)
    centroid = [float((g * r).sum()), float((g * c).sum())]
    np.testing.assert_allclose(centroid, [0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("window, sigma", [(2, None), (5, None), (9, 1.3), ((3, 5), (0.7, 2.0))])
def test_gaussian_factors_outer_is_gaussian_window(window, sigma):
    g_rows, g_cols = pooling.gaussian_factors(window, sigma)
    assert g_rows.sum() == pytest.approx(1.0) and g_cols.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.outer(g_rows, g_cols), F.gaussian_window(window, sigma),
                               rtol=1e-6, atol=1e-8)


def test_gaussian_window_peaks_at_the_centre():
    g = np.asarray(F.gaussian_window(5))
    assert np.unravel_index(g.argmax(), g.shape) == (2, 2)
    # Default sigma is 0.25 * window = 1.25: the corner/centre ratio is exp(-(2^2 + 2^2) / 2s^2).
    assert g[0, 0] / g[2, 2] == pytest.approx(np.exp(-8 / (2 * 1.25**2)), rel=1e-5)


@pytest.mark.parametrize("sigma", [0, -1.0, (1.0, 0.0)])
def test_gaussian_window_rejects_sigma(sigma):
    with pytest.raises(ValueError, match=re.escape(f"sigma must be > 0, got {sigma!r}")):
        F.gaussian_window(3, sigma)


# ---------------------------------------------------------------- feature pooling


def _feature_pool_reference(x, group_size, p):
    x = np.asarray(x, np.float64)
    out = []
    for g in range(x.shape[-1] // group_size):
        group = x[..., g * group_size : (g + 1) * group_size]
        out.append(group.max(-1) if p == "max" else (np.abs(group) ** p).sum(-1) ** (1 / p))
    return np.stack(out, axis=-1)


@pytest.mark.parametrize("group_size", [1, 2, 3])
@pytest.mark.parametrize("p", [0.5, 1, 2.0, "max"])
def test_feature_pool_matches_numpy(group_size, p):
    x = _normal((2, 3, 4, 6), 12)
    y = jax.jit(lambda x: F.feature_pool(x, group_size, p=p))(x)
    assert y.shape == (2, 3, 4, 6 // group_size)
    np.testing.assert_allclose(y, _feature_pool_reference(x, group_size, p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", [0.5, 1, 2.0, 3])
def test_feature_pool_gradient_is_zero_on_zero_groups(p):
    x = jnp.concatenate([jnp.zeros((1, 3, 3, 2)), jnp.ones((1, 3, 3, 2))], axis=-1)
    g = jax.jit(jax.grad(lambda x: F.feature_pool(x, 2, p=p).sum()))(x)
    assert np.isfinite(g).all()
    np.testing.assert_array_equal(g[..., :2], 0.0)
    np.testing.assert_allclose(g[..., 2:], 2.0 ** (1 / p - 1), rtol=1e-5)  # d/dx (2x^p)^(1/p)


@pytest.mark.parametrize(
    "group_size, p, message",
    [
        (4, 2.0, "channels 6 are not divisible by group_size 4"),
        (0, 2.0, "group_size must be a positive int, got 0"),
        (2.0, 2.0, "group_size must be a positive int, got 2.0"),
        (2, 0, 'p must be a finite number > 0 or "max", got 0'),
        (2, float("inf"), 'p must be a finite number > 0 or "max", got inf'),
        (2, "min", 'p must be a finite number > 0 or "max", got \'min\''),
    ],
)
def test_feature_pool_rejects(group_size, p, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        F.feature_pool(jnp.ones((3, 3, 6)), group_size, p=p)


# ---------------------------------------------------------------- adaptive average pooling


@pytest.mark.parametrize(
    "in_hw, output_size",
    # identity, global, divisible on width only, neither, height only, larger than the input
    [((7, 9), (7, 9)), ((7, 9), 1), ((7, 9), 3), ((7, 9), (2, 4)), ((7, 9), (7, 3)),
     ((3, 4), (5, 6))],
)
def test_adaptive_avg_pool_matches_torch(in_hw, output_size):
    x = _normal((2,) + in_hw + (3,), 13)
    y = jax.jit(lambda x: F.adaptive_avg_pool(x, output_size))(x)
    expected = _from_nchw(TF.adaptive_avg_pool2d(_to_nchw(x), output_size))
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("output_size", [0, (2, -1), 1.5])
def test_adaptive_avg_pool_rejects(output_size):
    with pytest.raises(ValueError, match="output_size must"):
        F.adaptive_avg_pool(jnp.ones((4, 4, 1)), output_size)
