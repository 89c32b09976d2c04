"""jaxconv.layers: modules equal the functional ops they wrap, closed forms, Flax conventions."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.nnx import bridge

from jaxconv import functional as F
from jaxconv import layers as L

RNG = np.random.default_rng(0)


def _x(*shape):
    return jnp.asarray(RNG.standard_normal(shape), jnp.float32)


def test_conv_ones_closed_form():
    conv = L.Conv(3, 2, (2, 3), padding="VALID", kernel_init=nnx.initializers.ones,
                  bias_init=nnx.initializers.ones, rngs=nnx.Rngs(0))
    y = conv(jnp.ones((1, 5, 5, 3)))
    assert y.shape == (1, 4, 3, 2)
    np.testing.assert_array_equal(np.asarray(y), 2 * 3 * 3 + 1.0)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_module_matches_functional(groups):
    conv = L.Conv(4, 6, 3, stride=2, padding=1, groups=groups, rngs=nnx.Rngs(1))
    assert conv.kernel.shape == (3, 3, 4 // groups, 6)
    x = _x(2, 7, 7, 4)
    want = F.conv2d(x, conv.kernel[...], conv.bias[...], stride=2, padding=1, groups=groups)
    np.testing.assert_allclose(conv(x), want, rtol=1e-6, atol=1e-6)


def test_locally_connected_shapes_and_tied_equals_conv():
    lc = L.LocallyConnected(3, 5, 3, input_size=(9, 8), stride=2, padding="SAME",
                            rngs=nnx.Rngs(0))
    assert lc.output_size == (5, 4)
    assert lc.kernel.shape == (5, 4, 3, 3, 3, 5) and lc.bias.shape == (5, 4, 5)
    # Unshared: positions get different kernels at initialisation.
    assert not np.allclose(lc.kernel[0, 0], lc.kernel[1, 1])
    conv = L.Conv(3, 5, 3, stride=2, padding="SAME", rngs=nnx.Rngs(1))
    lc.kernel[...] = jnp.broadcast_to(conv.kernel[...], lc.kernel.shape)
    lc.bias[...] = jnp.broadcast_to(conv.bias[...] + 0.5, lc.bias.shape)
    x = _x(2, 9, 8, 3)
    np.testing.assert_allclose(lc(x), conv(x) + 0.5, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"built for inputs of size \(9, 8\)"):
        lc(_x(2, 8, 8, 3))


def test_dtype_conventions():
    conv = L.Conv(2, 3, 3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    assert conv.kernel.dtype == jnp.float32
    assert conv(_x(1, 4, 4, 2)).dtype == jnp.bfloat16
    assert L.Conv(2, 3, 3, rngs=nnx.Rngs(0))(_x(1, 4, 4, 2)).dtype == jnp.float32


def test_parameter_free_modules_equal_ops():
    x = _x(2, 8, 8, 4)
    cases = [
        (L.MaxPool(3, 2, 1), F.max_pool(x, 3, 2, 1)),
        (L.AvgPool(2, count_include_pad=False), F.avg_pool(x, 2, count_include_pad=False)),
        (L.LpPool(2.0, 2, gaussian_sigma="default"),
         F.lp_pool(x, 2.0, 2, weights=F.gaussian_window(2))),
        (L.FeaturePool(2, p="max"), F.feature_pool(x, 2, p="max")),
        (L.LocalContrastNorm(5), F.local_contrast_norm(x, 5)),
        (L.LocalResponseNorm(3, 1e-3, 0.5, 1.0), F.local_response_norm(x, 3, 1e-3, 0.5, 1.0)),
        (L.AdaptiveAvgPool(3), F.adaptive_avg_pool(x, 3)),
        (L.Activation("tanh_abs"), jnp.abs(jnp.tanh(x))),
        (L.Flatten(), x.reshape(2, -1)),
    ]
    for module, want in cases:
        np.testing.assert_allclose(module(x), want, rtol=1e-6, atol=1e-6,
                                   err_msg=type(module).__name__)


def test_stage_composes_conv_rectification_lcn_pool():
    stage = L.Stage(1, 4, 3, activation="abs", lcn_kernel_size=3, pool="l2", rngs=nnx.Rngs(0))
    assert stage.layer_names == ("conv", "act", "lcn", "pool")
    x = _x(2, 8, 8, 1)
    h = jnp.abs(F.conv2d(x, stage.conv.kernel[...], stage.conv.bias[...]))
    want = F.lp_pool(F.local_contrast_norm(h, 3), 2.0, 2, weights=F.gaussian_window(2))
    np.testing.assert_allclose(stage(x), want, rtol=1e-5, atol=1e-5)
    plain = L.Stage(1, 4, 3, lcn_kernel_size=None, pool="none", rngs=nnx.Rngs(0))
    assert plain.layer_names == ("conv", "act") and plain(x).shape == (2, 8, 8, 4)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: L.Stage(1, 4, 3, pool="median", rngs=nnx.Rngs(0)), "unknown pool 'median'"),
        (lambda: L.Activation("gelu6"), "unknown activation 'gelu6'"),
        (lambda: L.Conv(3, 4, 3, groups=2, rngs=nnx.Rngs(0)), "divisible by groups=2"),
        (lambda: L.LocallyConnected(1, 1, 5, input_size=(3, 3), rngs=nnx.Rngs(0)),
         "larger than the padded input"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.slow
def test_layers_inside_a_linen_model_via_bridge():
    class LinenNet(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = bridge.to_linen(L.Conv, 1, 4, 3)(x)
            x = F.local_contrast_norm(x, 3)
            return bridge.to_linen(L.LocallyConnected, 4, 2, 3, input_size=(8, 8))(x)

    x = _x(2, 8, 8, 1)
    variables = LinenNet().init(jax.random.key(0), x)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes["ToLinen_0"]["kernel"] == (3, 3, 1, 4)
    assert shapes["ToLinen_1"]["kernel"] == (6, 6, 3, 3, 4, 2)
    p = variables["params"]
    h = F.local_contrast_norm(F.conv2d(x, p["ToLinen_0"]["kernel"], p["ToLinen_0"]["bias"]), 3)
    want = F.locally_connected2d(h, p["ToLinen_1"]["kernel"], p["ToLinen_1"]["bias"],
                                 kernel_size=3)
    np.testing.assert_allclose(LinenNet().apply(variables, x), want, rtol=1e-5, atol=1e-5)
