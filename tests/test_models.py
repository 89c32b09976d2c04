"""jaxconv.models: published parameter counts, output shapes, registry, dropout modes."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv.models import MODELS, AlexNet, LeNet5, StageNet, count_params, create_model


def _abstract(make):
    return nnx.eval_shape(make)


@nnx.jit
def _apply(model, x):
    return model(x)


@pytest.mark.parametrize("input_size", [32, 28])
def test_lenet5_parameter_count_and_shape(input_size):
    model = LeNet5(input_size=input_size, rngs=nnx.Rngs(0))
    assert count_params(model) == 61_706
    assert _apply(model, jnp.ones((3, input_size, input_size, 1))).shape == (3, 10)


def test_alexnet_original_published_counts():
    model = _abstract(lambda: AlexNet(rngs=nnx.Rngs(0)))
    assert count_params(model) == 60_965_224
    assert count_params(model.fc6) == 37_752_832
    assert count_params(model.fc7) == 16_781_312
    assert model.conv2.kernel.shape == (5, 5, 48, 256)  # two towers as groups=2


def test_alexnet_torchvision_count():
    assert count_params(_abstract(lambda: AlexNet(variant="torchvision", rngs=nnx.Rngs(0)))) \
        == 61_100_840


@pytest.mark.slow
def test_alexnet_forward_shapes():
    model = AlexNet(num_classes=7, rngs=nnx.Rngs(0))
    model.eval()
    assert _apply(model, jnp.ones((1, 227, 227, 3))).shape == (1, 7)
    tv = AlexNet(num_classes=5, variant="torchvision", rngs=nnx.Rngs(0))
    tv.eval()
    assert _apply(tv, jnp.ones((2, 100, 90, 3))).shape == (2, 5)
    with pytest.raises(ValueError, match=r"expects images .*227, 227, 3.*got shape"):
        model(jnp.ones((1, 224, 224, 3)))


@pytest.mark.slow
def test_stagenet_structure_and_count():
    model = StageNet(10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    # conv 3x3: 1->16 (160) and 16->32 (4,640); 2x2x32 -> 10 linear (1,290).
    assert count_params(model) == 160 + 4_640 + 1_290
    assert model.stage1.layer_names == ("conv", "act", "lcn", "pool")
    assert _apply(model, jnp.ones((4, 8, 8, 1))).shape == (4, 10)
    deep = StageNet(3, input_shape=(16, 16, 3), features=(8, 8, 8), pool=("max", "l2", "avg"),
                    lcn_kernel_size=None, hidden=(12,), dropout=0.5, rngs=nnx.Rngs(0))
    assert _apply(deep, jnp.ones((2, 16, 16, 3))).shape == (2, 3)
    assert count_params(deep.fc1) == 2 * 2 * 8 * 12 + 12


def test_dropout_follows_train_eval_modes():
    model = StageNet(10, input_shape=(8, 8, 1), hidden=(64,), dropout=0.5, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 1)), jnp.float32)
    model.eval()
    np.testing.assert_array_equal(_apply(model, x), _apply(model, x))
    model.train()
    assert not np.allclose(_apply(model, x), _apply(model, x))


def test_registry_and_errors():
    assert {"lenet5", "stagenet", "alexnet"} <= set(MODELS)
    assert isinstance(create_model("lenet5", rngs=nnx.Rngs(0), input_size=28), LeNet5)
    with pytest.raises(ValueError, match=r"unknown model 'resnet'; valid: \[.*'lenet5'"):
        create_model("resnet", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="bad arguments for model 'lenet5'"):
        create_model("lenet5", rngs=nnx.Rngs(0), depth=3)
    with pytest.raises(ValueError, match="unknown AlexNet variant 'caffe'"):
        AlexNet(variant="caffe", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expects float images"):
        LeNet5(rngs=nnx.Rngs(0))(jnp.ones((1, 32, 32, 1), jnp.uint8))
