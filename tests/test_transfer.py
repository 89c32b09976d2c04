"""jaxconv.transfer: freezing is exact (bit-identical, no decay), loading reports what it did."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxconv.models import StageNet
from jaxconv.transfer import (
    flat_params,
    freeze_labels,
    load_matching,
    parameter_layers,
    path_name,
    with_frozen,
)


def _net(num_classes=10, seed=0):
    return StageNet(num_classes, input_shape=(8, 8, 1), hidden=(16,), rngs=nnx.Rngs(seed))


def test_path_name_spells_every_kind_of_path_the_same():
    keys = jax.tree_util
    path = (keys.DictKey("stage1"), keys.GetAttrKey("conv"), keys.SequenceKey(0),
            keys.GetAttrKey("value"))
    assert path_name(path) == "stage1/conv/0"  # nnx's `.value` attribute key is dropped.
    assert path_name(("fc8", "kernel")) == "fc8/kernel"  # nnx.to_flat_state paths.
    state = nnx.state(_net(), nnx.Param)
    assert list(flat_params(state)) == list(flat_params(nnx.to_pure_dict(state)))
    assert "stage1/conv/kernel" in flat_params(state)


def test_parameter_layers_bottom_first():
    assert parameter_layers(_net()) == ["stage1/conv", "stage2/conv", "fc1", "output"]


def test_labels_by_count_and_pattern():
    model = _net()
    params = nnx.state(model, nnx.Param)
    flat = flat_params(freeze_labels(model, first_layers=1, patterns=["fc1/bias"],
                                     lower_lr=True)(params))
    assert flat == {
        "stage1/conv/kernel": "frozen", "stage1/conv/bias": "frozen",
        "stage2/conv/kernel": "lower", "stage2/conv/bias": "lower",
        "fc1/kernel": "lower", "fc1/bias": "frozen",
        "output/kernel": "trainable", "output/bias": "trainable",
    }
    with pytest.raises(ValueError, match=r"first_layers must be in \[0, 4\]"):
        freeze_labels(model, first_layers=5)
    with pytest.raises(ValueError, match="pattern 'stage9/\\*' matches no parameter"):
        freeze_labels(model, patterns=["stage9/*"])


@pytest.mark.slow
def test_frozen_params_bit_identical_and_lower_lr_scaled():
    model = _net()
    graphdef, params = nnx.split(model, nnx.Param)
    start = {k: np.array(v) for k, v in flat_params(params).items()}
    base = optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.1, momentum=0.9))
    tx = with_frozen(base, freeze_labels(model, first_layers=2, lower_lr=True), 0.1)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 1)), jnp.float32)

    def loss(p):
        return jnp.mean(nnx.merge(graphdef, p)(x) ** 2)

    grads = jax.grad(loss)(params)
    updates = flat_params(tx.update(grads, tx.init(params), params)[0])
    reference = flat_params(base.update(grads, base.init(params), params)[0])
    np.testing.assert_allclose(updates["fc1/kernel"], 0.1 * reference["fc1/kernel"], rtol=1e-6)
    np.testing.assert_array_equal(updates["output/kernel"], reference["output/kernel"])
    p, opt_state = params, tx.init(params)
    for _ in range(3):
        step, opt_state = tx.update(jax.grad(loss)(p), opt_state, p)
        p = optax.apply_updates(p, step)
    after = flat_params(p)
    for name in ("stage1/conv/kernel", "stage1/conv/bias", "stage2/conv/kernel"):
        np.testing.assert_array_equal(after[name], start[name])  # bit-identical despite decay
    assert not np.array_equal(after["output/kernel"], start["output/kernel"])


def test_load_matching_replaces_head():
    source = _net(10, seed=1)
    model = _net(5, seed=2)
    fresh_head = np.array(model.output.kernel[...])
    report = load_matching(model, nnx.state(source, nnx.Param))
    assert report.new == ("output/bias", "output/kernel")
    assert "stage1/conv/kernel" in report.loaded and report.unused == ()
    np.testing.assert_array_equal(model.stage1.conv.kernel[...], source.stage1.conv.kernel[...])
    np.testing.assert_array_equal(model.output.kernel[...], fresh_head)
    assert "new (freshly initialised): ['output/bias', 'output/kernel']" in str(report)
    with pytest.raises(ValueError, match="'output/kernel' could not be loaded"):
        load_matching(_net(5), nnx.state(source, nnx.Param), strict_shapes=["output/kernel"])
    with pytest.raises(ValueError, match="no pretrained parameter matches"):
        load_matching(_net(), {"conv9/kernel": np.zeros((3,))})
