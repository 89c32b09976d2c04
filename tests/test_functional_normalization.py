"""Tests for `jaxconv.functional.normalization`: local contrast and local response normalization.

LCN is checked against a float64 NumPy loop written from Jarrett et al. 2009's definition (with
border renormalization), and for its invariances, under both lowerings of
`jaxconv.functional.lowering`; LRN against `torch.nn.LocalResponseNorm`.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxconv import functional as F

torch = pytest.importorskip("torch")


def _traced_under(mode, f):
    """`f` with its trace under lowering `mode` (the choice is made when jit traces)."""
    @functools.wraps(f)  # keeps f's signature for jit's static_argnames
    def g(*args, **kwargs):
        with F.lowering(mode):
            return f(*args, **kwargs)
    return g


def _lcn_grad(x, cotangent):
    return jax.grad(lambda x: jnp.sum(F.local_contrast_norm(x, 5) * cotangent))(x)


# Module-level jitted ops, one per lowering: parametrized cases with the same shapes share one
# compilation.
LCN = {m: jax.jit(_traced_under(m, F.local_contrast_norm),
                  static_argnames=("kernel_size", "sigma", "eps")) for m in ("xla", "cpu")}
LCN_VJP = {m: jax.jit(_traced_under(m, _lcn_grad)) for m in ("xla", "cpu")}


@pytest.fixture(params=["xla", "cpu"])
def lcn(request):
    """`F.local_contrast_norm`, jitted, under each lowering (`jaxconv.functional.lowering`)."""
    return LCN[request.param]


@pytest.fixture(params=["xla", "cpu"])
def lcn_vjp(request):
    """The VJP of `F.local_contrast_norm(x, 5)`, jitted, under each lowering."""
    return LCN_VJP[request.param]


def _normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _lcn_reference(x, kernel_size, sigma=None, eps=1e-4):
    """Jarrett et al. 2009's N layer, as in the issue, by loops over pixels and window taps.

    w: kernel_size^2 Gaussian (std sigma, default kernel_size / 4) summing to 1, divided by C;
    coef[j,k] = sum_{i,p,q} w[p,q] inside(j+p, k+q); m = sum_{i,p,q} w x[i, j+p, k+q] / coef;
    v = x - m; s = sqrt(sum_{i,p,q} w v^2[i, j+p, k+q] / coef); c = mean_{j,k} s;
    y = v / max(c, s, eps). Offsets p, q run over -r..r with r = kernel_size // 2.
    """
    x = np.asarray(x, np.float64)
    n_img, height, width, chans = x.shape
    r = kernel_size // 2
    sd = 0.25 * kernel_size if sigma is None else sigma
    offsets = np.arange(-r, r + 1)
    g = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sd**2))
    w = g / g.sum() / chans

    def window_sum(values):  # sum_{i,p,q} w[p,q] values[i, j+p, k+q], zero outside the image
        out = np.zeros((height, width))
        for j in range(height):
            for k in range(width):
                for p in offsets:
                    for q in offsets:
                        if 0 <= j + p < height and 0 <= k + q < width:
                            out[j, k] += w[p + r, q + r] * values[j + p, k + q, :].sum()
        return out

    coef = window_sum(np.ones((height, width, chans)))
    y = np.empty_like(x)
    for n in range(n_img):
        v = x[n] - (window_sum(x[n]) / coef)[:, :, None]
        s = np.sqrt(window_sum(v**2) / coef)
        y[n] = v / np.maximum(np.maximum(s.mean(), s), eps)[:, :, None]
    return y


# ---------------------------------------------------------------- local contrast normalization


@pytest.mark.parametrize(
    "shape, kernel_size, sigma",
    [
        ((2, 6, 7, 3), 3, None),
        ((2, 6, 7, 3), 5, 1.3),
        ((1, 5, 4, 1), 9, None),  # the window is larger than the image
        ((1, 7, 6, 2), 9, 0.8),
        ((2, 4, 5, 3), 1, None),  # 1x1: the mean over channels only
    ],
)
def test_lcn_matches_numpy_loop(shape, kernel_size, sigma, lcn):
    x = 2.0 * _normal(shape, 0) + 0.5
    y = lcn(x, kernel_size, sigma)
    np.testing.assert_allclose(y, _lcn_reference(x, kernel_size, sigma), rtol=1e-4, atol=1e-5)


def test_lcn_eps_floor_matches_numpy_loop(lcn):
    # Low-contrast image: sigma and its mean fall below eps, so eps is the divisor.
    x = 1e-3 * _normal((1, 6, 6, 2), 1)
    y = lcn(x, 3, eps=0.5)
    np.testing.assert_allclose(y, _lcn_reference(x, 3, eps=0.5), rtol=1e-4, atol=1e-7)
    # Below the floor y = v / eps is linear in the contrast instead of invariant to it.
    np.testing.assert_allclose(lcn(2 * x, 3, eps=0.5), 2 * y, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("a, b", [(0.5, 0.0), (3.0, -2.0), (1.0, 7.0), (20.0, 100.0)])
def test_lcn_brightness_and_contrast_invariance(a, b, lcn):
    x = _normal((2, 8, 9, 3), 2)
    np.testing.assert_allclose(lcn(a * x + b, 5), lcn(x, 5), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("value", [0.0, 0.5, -3.0, 0.1, 255.0])
def test_lcn_of_constant_image_is_zero(value, lcn):
    x = jnp.full((2, 7, 8, 3), value, jnp.float32)
    y = lcn(x)
    np.testing.assert_allclose(y, 0.0, atol=1e-3)


@pytest.mark.parametrize("value", [0.0, 1.0, 255.0])
def test_lcn_gradient_is_finite_on_constant_images(value, lcn_vjp):
    x = jnp.full((2, 7, 8, 3), value, jnp.float32)
    g = np.asarray(lcn_vjp(x, _normal(x.shape, 3)), np.float64)
    assert np.isfinite(g).all()
    # y(x + t) == y(x): the gradient is orthogonal to a brightness change, per image.
    np.testing.assert_allclose(g.sum(axis=(1, 2, 3)), 0.0, atol=1e-5 * np.abs(g).sum())


def test_lcn_grads(lcn):
    check_grads(functools.partial(lcn, kernel_size=5), (_normal((2, 6, 5, 2), 4),), order=1,
                modes=["rev"], atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernel_size": 4}, "kernel_size must be a positive odd int, got 4"),
        ({"kernel_size": 0}, "kernel_size must be a positive odd int, got 0"),
        ({"kernel_size": 3.0}, "kernel_size must be a positive odd int, got 3.0"),
        ({"eps": 0.0}, "eps must be > 0, got 0.0"),
        ({"sigma": -1.0}, "sigma must be > 0, got -1.0"),
    ],
)
def test_lcn_rejects(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        F.local_contrast_norm(jnp.ones((5, 5, 2)), **kwargs)


# ---------------------------------------------------------------- local response normalization


ALEXNET, STRONG = (1e-4, 0.75, 2.0), (0.3, 0.6, 1.0)  # (alpha, beta, k)


@pytest.mark.parametrize(
    "size, params",
    [(1, STRONG), (2, STRONG), (3, STRONG), (4, STRONG), (5, ALEXNET), (5, STRONG), (6, STRONG),
     (7, ALEXNET)],
)
def test_lrn_matches_torch(size, params):
    alpha, beta, k = params
    x = 3.0 * _normal((2, 3, 4, 8), 5)
    y = jax.jit(functools.partial(F.local_response_norm, size=size, alpha=alpha, beta=beta,
                                  k=k))(x)
    lrn = torch.nn.LocalResponseNorm(size, alpha * size, beta, k)
    expected = lrn(torch.tensor(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_lrn_closed_form():
    # Channels (1, 2, 3), size 3, alpha 1, beta 1, k 0: b_c = a_c / sum of squares around c.
    x = jnp.array([1.0, 2.0, 3.0]).reshape(1, 1, 3)
    y = F.local_response_norm(x, size=3, alpha=1.0, beta=1.0, k=0.0)
    np.testing.assert_allclose(y[0, 0], [1 / 5, 2 / 14, 3 / 13], rtol=1e-6)


@pytest.mark.parametrize("size", [0, -1, 2.0])
def test_lrn_rejects_size(size):
    with pytest.raises(ValueError, match=re.escape(f"size must be a positive int, got {size!r}")):
        F.local_response_norm(jnp.ones((3, 3, 4)), size)
