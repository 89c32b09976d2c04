"""configs/default.py:<model>: every model from the command line, on every shipped dataset
whose image size it takes (docs/training.md, "Another model")."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from configs import default
from jaxconv import data, training
from jaxconv.models import MODELS, create_model
from jaxconv.training import config as config_lib

ROOT = Path(__file__).resolve().parent.parent
# The shipped datasets' image shapes and class counts (imagenet2012: the default 224 crop).
SHAPES = {"digits": ((8, 8, 1), 10), "mnist5k": ((28, 28, 1), 10), "mnist": ((28, 28, 1), 10),
          "cifar10": ((32, 32, 3), 10), "imagenet2012": ((224, 224, 3), 1000),
          # mnist5k's smaller training sets (10/50/100 per class): the same images.
          "mnist5k_100": ((28, 28, 1), 10), "mnist5k_500": ((28, 28, 1), 10),
          "mnist5k_1000": ((28, 28, 1), 10)}
# Which model takes which dataset's images (the table of docs/training.md).
FITS = {"stagenet": set(SHAPES), "lenet5": {"mnist5k", "mnist5k_100", "mnist5k_500",
                                           "mnist5k_1000", "mnist", "cifar10", "imagenet2012"},
        "vgg": {"cifar10", "imagenet2012"}, "alexnet": {"imagenet2012"},
        "connectivity": set(SHAPES)}


def test_every_model_has_a_preset_and_the_table_knows_every_dataset():
    assert set(default.MODEL_PRESETS) == set(MODELS) == set(FITS)
    assert set(SHAPES) == set(data.DATASETS)


def _info(dataset):
    shape, classes = SHAPES[dataset]
    return data.DatasetInfo(dataset, classes, shape, 1, 1, tuple(map(str, range(classes))),
                            "train", "test", mean=(0.5,) * shape[-1], std=(0.25,) * shape[-1])


def _logits_shape(config, dataset):
    """The logits' shape of the config's model on one image of `dataset` (shapes only)."""
    info = _info(dataset)
    kwargs = config_lib.model_kwargs(config, info)
    model = nnx.eval_shape(lambda: create_model(config.model, rngs=nnx.Rngs(0), **kwargs))
    model.eval()
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((1, *info.image_shape), jnp.float32)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape


@pytest.mark.parametrize("model", sorted(FITS))
@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_preset_validates_and_builds_where_the_images_fit(model, dataset):
    config = default.get_config(model)
    assert config.model == model
    assert config.dataset in FITS[model]  # the preset's own dataset fits
    config.dataset = dataset
    config_lib.validate_config(config)  # every model_kwargs key is the model's
    if dataset in FITS[model]:
        assert _logits_shape(config, dataset) == (1, SHAPES[dataset][1])
    else:
        with pytest.raises((ValueError, TypeError)):
            _logits_shape(config, dataset)


def test_an_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*valid: \['alexnet'"):
        default.get_config("resnet")


@pytest.mark.slow
@pytest.mark.parametrize("preset,dataset", [("lenet5", "mnist5k"), ("stagenet", "mnist5k"),
                                            ("stagenet", "digits")])
def test_train_py_trains_a_preset(preset, dataset, digits_dir, tmp_path):
    """The command docs/training.md gives, shortened: the offline datasets train."""
    workdir = tmp_path / "run"
    run = subprocess.run(
        [sys.executable, "train.py", f"--config=configs/default.py:{preset}",
         f"--workdir={workdir}", f"--config.dataset={dataset}", f"--config.data_dir={digits_dir}",
         "--config.num_train_steps=2", "--config.progress_bar=false",
         "--config.write_plots=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "test accuracy" in run.stdout + run.stderr
    assert (workdir / "run.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["vgg", "alexnet"])
def test_a_preset_on_a_builtin_dataset_trains_on_mock_data(preset, tmp_path):
    """The presets whose datasets cannot be prepared offline (cifar10, imagenet2012), on
    tfds.testing.mock_data: two steps, one device, finite figures."""
    config = default.get_config(preset)
    config.update(data_dir=str(tmp_path / "tfds"), batch_size=4, eval_batch_size=8,
                  num_train_steps=2, log_every_steps=1, eval_every_steps=0,
                  progress_bar=False, write_plots=False)
    with tfds.testing.mock_data(num_examples=12):
        training.train_and_evaluate(config, tmp_path / "run", devices=jax.devices()[:1])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == preset and metrics["step"] == 2
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["test_loss"])
