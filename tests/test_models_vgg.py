"""jaxconv.models.vgg: published parameter counts, layer layout, shapes, errors, registry."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv.models import MODELS, VGG, count_params, create_model


@pytest.mark.parametrize("depth, params, convs", [(11, 132_863_336, 8), (16, 138_357_544, 13)])
def test_vgg_published_counts(depth, params, convs):
    model = nnx.eval_shape(lambda: VGG(depth=depth, rngs=nnx.Rngs(0)))
    assert count_params(model) == params
    assert sum(n.startswith("conv") for n in model.layer_names) == convs
    assert model.fc6.kernel.shape == (7 * 7 * 512, 4096)
    assert model.conv5_1.kernel.shape == (3, 3, 512, 512)


def test_vgg_head_order_is_torchvisions():
    model = nnx.eval_shape(lambda: VGG(rngs=nnx.Rngs(0)))
    names = model.layer_names
    assert names[names.index("pool5"):] == ("pool5", "avgpool", "flatten", "fc6", "relu6",
                                             "drop6", "fc7", "relu7", "drop7", "fc8")


@pytest.fixture(scope="module")
def small_vgg():
    # One conv kernel shape, 3x3x3x3: random initialisers compile per shape, slowly for 4-D.
    return VGG(4, depth=11, channels=(3,) * 5, hidden=16, rngs=nnx.Rngs(0))


def test_vgg_small_forward_any_size_and_dropout_modes(small_vgg):
    apply = nnx.jit(lambda m, v: m(v))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 40, 33, 3)), jnp.float32)
    small_vgg.train()
    train = apply(small_vgg, x)
    small_vgg.eval()
    assert train.shape == (2, 4)
    np.testing.assert_array_equal(apply(small_vgg, x), apply(small_vgg, x))
    assert not np.allclose(train, apply(small_vgg, x))  # dropout was active


def test_vgg_init_follows_torchvision(small_vgg):
    # He normal with fan_out = 3*3*3: std sqrt(2/27) (8 kernels, 648 values: the estimate's
    # relative sd is 2.8%); FC kernels N(0, 0.01) (fc6: 2,352 values, 1.5%); zero biases.
    convs = [getattr(small_vgg, n).kernel[...] for n in small_vgg.layer_names
             if n.startswith("conv")]
    np.testing.assert_allclose(np.std(np.stack(convs)), np.sqrt(2 / 27), rtol=0.1)
    np.testing.assert_allclose(np.std(small_vgg.fc6.kernel[...]), 0.01, rtol=0.06)
    np.testing.assert_array_equal(small_vgg.conv1_1.bias[...], 0.0)
    np.testing.assert_array_equal(small_vgg.fc8.bias[...], 0.0)


def test_vgg_errors_and_registry():
    with pytest.raises(ValueError, match=r"unknown VGG depth 13; valid: \[11, 16\]"):
        VGG(depth=13, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="one width per stage"):
        VGG(channels=(8, 8), rngs=nnx.Rngs(0))
    assert MODELS["vgg"] is VGG
    model = nnx.eval_shape(lambda: create_model("vgg", depth=16, num_classes=3,
                                                 rngs=nnx.Rngs(0)))
    assert model.depth == 16
    with pytest.raises(ValueError, match=r"expects images .*any, any, 3"):
        model(jnp.ones((1, 32, 32, 1)))
