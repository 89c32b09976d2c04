"""Fine-tuning from config (config.classes / init / freeze): the digits 0-4 -> 5-9 demo, errors."""

import json
import os
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import save_file
from shipped_configs import load_config

from jaxconv import training
from jaxconv.models import VGG, StageNet
from jaxconv.runs import read_run_info, restore_params
from jaxconv.training import finetune
from jaxconv.training.config import ConfigError, validate_config


def _config(name="default", **overrides):
    return load_config(name, write_plots=False, **overrides)


@pytest.mark.parametrize("overrides, match", [
    ({"classes": (3, 3)}, r"config.classes=\(3, 3\) must be \(\) or at least 2 distinct"),
    ({"classes": (1,)}, "at least 2 distinct"),
    ({"init__checkpoint": "a", "init__torch_weights": "b"},
     "config.init.torch_weights='b' cannot be combined with config.init.checkpoint"),
    ({"freeze__first_layers": -1}, "config.freeze.first_layers=-1 must be >= 0"),
    ({"freeze__lower_lr_scale": 0.0}, r"config.freeze.lower_lr_scale=0.0 must be in \(0, 1\]"),
    ({"freeze__patterns": (3,)}, "config.freeze.patterns=.* must be shell patterns"),
])
def test_bad_transfer_config_values(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(_config(**overrides))


def _stagenet(num_classes=5):
    return StageNet(num_classes, input_shape=(8, 8, 1), rngs=nnx.Rngs(0))


def test_freeze_errors_name_the_layers():
    with pytest.raises(ConfigError, match=r"config.freeze: freeze first_layers must be in "
                                          r"\[0, 3\]"):
        finetune.freeze_optimizer(optax.sgd(0.1), _stagenet(), _config(freeze__first_layers=4))
    with pytest.raises(ConfigError, match="pattern 'fc\\*' matches no parameter"):
        finetune.freeze_optimizer(optax.sgd(0.1), _stagenet(), _config(freeze__patterns=("fc*",)))


def test_lower_lr_scale_scales_the_updates_below_the_head():
    """stage1 frozen, stage2 at half the head's rate: updates vs plain SGD's, closed form."""
    model = _stagenet()
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    grads = jax.tree.map(lambda p: np.full(p.shape, 0.5, np.float32), params)
    tx = finetune.freeze_optimizer(optax.sgd(0.1), model, _config(
        freeze__first_layers=1, freeze__lower_lr_scale=0.5))
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["stage1"]["conv"]["kernel"], 0.0)
    np.testing.assert_allclose(updates["stage2"]["conv"]["kernel"], -0.025)
    np.testing.assert_allclose(updates["output"]["kernel"], -0.05)


def test_no_freeze_keeps_the_optimizer():
    tx = optax.sgd(0.1)
    assert finetune.freeze_optimizer(tx, _stagenet(), _config()) is tx


@pytest.mark.slow
def test_init_from_torchvision_weights_replaces_the_head(tmp_path):
    """A VGG-11 (torchvision layout, 10 classes) into a 5-class model: all but fc8 loaded."""
    torch_import = pytest.importorskip("test_pretrained_torch_import")
    net = torch_import.torch_vgg(11, 10, **torch_import.TINY)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    path = tmp_path / "vgg11.safetensors"
    save_file(state, str(path))
    model = VGG(depth=11, num_classes=5, rngs=nnx.Rngs(1), **torch_import.TINY)
    report = finetune.load_pretrained(model, _config(init__torch_weights=str(path)))
    assert set(report.new) == {"fc8/kernel", "fc8/bias"}
    assert len(report.loaded) == 2 * 10  # 8 convs + fc6 + fc7, kernel and bias each.
    np.testing.assert_array_equal(model.conv1_1.kernel[...],
                                  state["features.0.weight"].transpose(2, 3, 1, 0))


def test_init_torch_weights_on_a_model_without_torchvision_layout(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"features.0.weight": np.zeros((4, 3, 3, 3), np.float32)}, str(path))
    with pytest.raises(ConfigError, match="config.init.torch_weights=.* with config.model="
                                          "'stagenet': StageNet .* has no torchvision layout"):
        finetune.load_pretrained(_stagenet(), _config(init__torch_weights=str(path)))


def test_init_checkpoint_missing_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no complete checkpoint in {tmp_path}"):
        finetune.load_pretrained(_stagenet(), _config(init__checkpoint=str(tmp_path)))


@pytest.mark.slow
def test_mnist5k_pretrain_then_finetune(digits_dir, tmp_path, capsys):
    """The shipped demo, shortened: frozen stages bit-identical, head new, resumable alone."""
    pre, fine = tmp_path / "pre", tmp_path / "fine"
    training.train_and_evaluate(_config("mnist5k_pretrain", data_dir=digits_dir,
                                        num_train_steps=20, checkpoint_every_steps=20), pre)
    config = _config("mnist5k_finetune", data_dir=digits_dir, init__checkpoint=str(pre),
                     num_train_steps=6, checkpoint_every_steps=6, batch_size=40)
    training.train_and_evaluate(config, fine)
    assert ("initialized from " + str(pre) + ": loaded 4 pretrained parameters; new (freshly "
            "initialised): ['output/bias', 'output/kernel']") in capsys.readouterr().out
    before, after = restore_params(pre), restore_params(fine)
    frozen = config.freeze.first_layers
    for i, stage in enumerate(("stage1", "stage2")):
        same = [np.array_equal(after[stage]["conv"][n], before[stage]["conv"][n])
                for n in ("kernel", "bias")]
        assert same == [i < frozen] * 2, (stage, frozen)
    assert not np.allclose(after["output"]["kernel"], before["output"]["kernel"])
    info = read_run_info(fine)
    assert info.dataset.class_names == ("5", "6", "7", "8", "9")
    assert info.dataset.name == "mnist5k_100" and info.dataset.num_train == 50
    with open(fine / "metrics.json") as f:
        assert json.load(f)["test_examples"] == 500  # mnist5k's 100 test images per class
    # A run killed before its final evaluation resumes from its own checkpoint: the
    # pretrained source is not needed.
    shutil.rmtree(pre)
    os.remove(fine / "metrics.json")
    state = training.train_and_evaluate(config, fine)
    assert int(state.step) == 6
