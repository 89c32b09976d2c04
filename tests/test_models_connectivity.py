"""ConnectivityNet (FC vs LC vs conv at matched width) and StageNet's strided convolutions.

References: `jaxconv.summary.compare_connectivity`'s closed forms for the hidden layer's
parameters; a convolution written as a locally-connected layer whose per-position kernels are
all the same (weight sharing is the only difference); a conv of stride 2 as the stride-1 conv
sampled at every other position.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv.models import ConnectivityNet, StageNet, count_params, create_model
from jaxconv.summary import compare_connectivity


@nnx.jit
def _apply(model, x):
    return model(x)


def _hidden_params(connectivity, shape, features=8, k=5):
    model = nnx.eval_shape(lambda: ConnectivityNet(10, input_shape=shape, features=features,
                                                   kernel_size=k, connectivity=connectivity,
                                                   rngs=nnx.Rngs(0)))
    return count_params(model.hidden), count_params(model.output)


@pytest.mark.parametrize("shape", [(28, 28, 1), (56, 56, 1), (32, 32, 3)])
def test_hidden_layer_counts_match_the_closed_forms(shape):
    h, w, c = shape
    units = h * w * 8
    expected = compare_connectivity(shape, hidden_units=units, kernel_size=5, filters=8,
                                    bias=True)
    got = {name: _hidden_params(name, shape) for name in ("fc", "lc", "conv")}
    assert got["fc"][0] == expected["fully_connected"]
    assert got["lc"][0] == expected["locally_connected"]
    assert got["conv"][0] == expected["convolutional"] == (5 * 5 * c + 1) * 8
    # Matched width: the same classifier reads H*W*8 units in all three.
    assert {out for _, out in got.values()} == {(units + 1) * 10}


def test_fc_explodes_lc_less_conv_not_at_all():
    small = {k: _hidden_params(k, (28, 28, 1))[0] for k in ("fc", "lc", "conv")}
    large = {k: _hidden_params(k, (56, 56, 1))[0] for k in ("fc", "lc", "conv")}
    assert small["fc"] == 4_923_520 and small["lc"] == 163_072 and small["conv"] == 208
    assert large["fc"] == 16 * small["fc"] - 12 * 28 * 28 * 8  # quadratic weights, linear bias
    assert large["lc"] == 4 * small["lc"]
    assert large["conv"] == small["conv"]


def test_conv_is_lc_with_shared_weights():
    rngs = nnx.Rngs(0)
    conv = ConnectivityNet(3, input_shape=(9, 7, 2), connectivity="conv", features=4,
                           kernel_size=3, rngs=rngs)
    lc = ConnectivityNet(3, input_shape=(9, 7, 2), connectivity="lc", features=4,
                         kernel_size=3, rngs=rngs)
    kernel, bias = conv.hidden.kernel[...], conv.hidden.bias[...]
    lc.hidden.kernel[...] = jnp.broadcast_to(kernel, lc.hidden.kernel[...].shape)
    lc.hidden.bias[...] = jnp.broadcast_to(bias, lc.hidden.bias[...].shape)
    lc.output.kernel[...] = conv.output.kernel[...]
    lc.output.bias[...] = conv.output.bias[...]
    x = jax.random.normal(jax.random.key(1), (5, 9, 7, 2))
    np.testing.assert_allclose(_apply(lc, x), _apply(conv, x), rtol=1e-5, atol=1e-5)


def test_fc_sees_the_whole_image_and_layer_names():
    model = ConnectivityNet(10, input_shape=(8, 8, 1), connectivity="fc", features=2,
                            rngs=nnx.Rngs(0))
    assert model.layer_names == ("flatten", "hidden", "act", "output")
    x = jnp.zeros((1, 8, 8, 1))
    # A change in one corner pixel reaches every hidden unit of an FC layer.
    hidden = lambda x: model.act(model.hidden(model.flatten(x)))  # noqa: E731
    pre = model.hidden(model.flatten(x.at[0, 7, 7, 0].set(1.0))) - model.hidden(model.flatten(x))
    assert int(jnp.sum(pre != 0)) == 8 * 8 * 2
    assert hidden(x).shape == (1, 128)
    conv = create_model("connectivity", rngs=nnx.Rngs(0), num_classes=10,
                        input_shape=(8, 8, 1))
    assert conv.layer_names == ("hidden", "act", "flatten", "output")


@pytest.mark.parametrize("kwargs, match", [
    ({"connectivity": "dense"}, r"unknown connectivity 'dense'; valid: \['fc', 'lc', 'conv'\]"),
    ({"features": 0}, "features must be a positive int, got 0"),
])
def test_connectivity_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConnectivityNet(10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0), **kwargs)


def test_stagenet_strided_conv_replaces_pooling():
    kw = dict(input_shape=(28, 28, 1), features=(4, 8), lcn_kernel_size=None)
    pooled = StageNet(10, pool="max", rngs=nnx.Rngs(0), **kw)
    strided = StageNet(10, pool="none", conv_stride=2, rngs=nnx.Rngs(0), **kw)
    same = StageNet(10, pool="none", conv_stride=1, rngs=nnx.Rngs(0), **kw)
    # 28 -> 14 -> 7 either way: the same classifier, so the same parameter count.
    assert count_params(strided) == count_params(pooled) == 4 * 10 + 8 * 37 + 7 * 7 * 8 * 10 + 10
    assert strided.stage1.layer_names == ("conv", "act")
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    # Same weights (same seed): stride 2 samples stride 1 at the window centres "SAME" gives
    # (stride 2 pads 0 before and 1 after 28 pixels, stride 1 pads 1 and 1).
    full = same.stage1.conv(x)
    np.testing.assert_allclose(strided.stage1.conv(x), full[:, 1::2, 1::2], rtol=1e-5,
                               atol=1e-6)
    assert _apply(strided, x).shape == (2, 10)
    with pytest.raises(ValueError, match="conv_stride has 3 entries, expected one per stage"):
        StageNet(10, conv_stride=(1, 2, 2), rngs=nnx.Rngs(0), **kw)
