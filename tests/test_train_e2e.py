"""End to end: the default config on the real digits (shrunk), each shipped config on mock data."""

import glob
import json
import os

import chex
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from shipped_configs import load_config

from jaxconv import training

SUMMARY_KEYS = {"step", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                "test_examples", "wall_seconds", "images_per_second", "history"}


@pytest.mark.slow
def test_default_config_learns_digits(digits_dir, tmp_path):
    """90 steps of batch 40 (2.4 epochs): metrics.json, TensorBoard, checkpoints, one trace."""
    chex.clear_trace_counter()
    config = load_config("default", data_dir=digits_dir, batch_size=40, eval_batch_size=100,
                         num_train_steps=90, log_every_steps=10, eval_every_steps=30,
                         checkpoint_every_steps=45)
    state = training.train_and_evaluate(config, tmp_path,
                                        wrap_steps=lambda f: chex.assert_max_traces(f, n=1))
    assert int(state.step) == 90
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    assert SUMMARY_KEYS <= set(metrics), set(metrics)
    assert metrics["step"] == 90 and metrics["test_examples"] == 297
    assert metrics["test_accuracy"] > 0.5, metrics  # Chance: 0.1.
    assert metrics["images_per_second"] > 0 and metrics["wall_seconds"] > 0
    evals = [r["step"] for r in metrics["history"] if "test_accuracy" in r]
    assert evals == [30, 60, 90]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["45", "90"]
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist_lenet5", "cifar10_stagenet", "imagenet_alexnet"])
def test_shipped_config_runs_on_mock_data(name, tmp_path):
    """Each config as shipped (AlexNet at 227x227), on one device, batch 4, two steps."""
    config = load_config(name, data_dir=str(tmp_path / "tfds"), batch_size=4,
                         eval_batch_size=8, num_train_steps=2, log_every_steps=1)
    with tfds.testing.mock_data(num_examples=12):
        # One device: AlexNet's 61 M parameters replicated on 4 fake devices cost 4x.
        state = training.train_and_evaluate(config, tmp_path / "run", devices=jax.devices()[:1])
    with open(tmp_path / "run" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["step"] == 2 and metrics["test_examples"] == 12
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["test_loss"])
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state.params)))
