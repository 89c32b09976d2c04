"""Checkpoints: exact resumption, and a non-finite loss stops without saving the bad state."""

import os

import jax
import numpy as np
import pytest

from configs import default as default_lib
from jaxconv import training
from jaxconv.training import Checkpointer

N = 4


def _config(data_dir: str, num_train_steps: int):
    c = default_lib.get_config()
    c.data_dir = data_dir
    c.progress_bar = False
    c.write_plots = False  # Tested once, in test_plots_workdir.py.
    c.batch_size = 20
    c.eval_batch_size = 100
    c.num_train_steps = num_train_steps
    c.checkpoint_every_steps = N
    c.log_every_steps = 1
    # Dropout and distortions on: the resumed run must also restore the RNG and data order.
    c.model_kwargs.hidden = (16,)
    c.model_kwargs.dropout = 0.5
    # A schedule that does not depend on num_train_steps (cosine's horizon would): the rate
    # drops at step 3 (epoch 0.04 of 75 steps per epoch), across the resume point.
    c.optimizer.schedule = "step"
    c.optimizer.decay_epochs = (0.04,)
    return c


def _leaves(state):
    return jax.tree_util.tree_leaves_with_path(jax.device_get(state))


@pytest.mark.slow
def test_resume_is_bit_exact(digits_dir, tmp_path):
    uninterrupted = training.train_and_evaluate(_config(digits_dir, 2 * N), tmp_path / "a")
    first_half = training.train_and_evaluate(_config(digits_dir, N), tmp_path / "b")
    assert int(first_half.step) == N
    resumed = training.train_and_evaluate(_config(digits_dir, 2 * N), tmp_path / "b")
    assert int(resumed.step) == int(uninterrupted.step) == 2 * N
    for (path, a), (_, b) in zip(_leaves(uninterrupted), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    # The second half really changed the parameters.
    assert not np.array_equal(jax.device_get(first_half.params["output"]["kernel"]),
                              jax.device_get(resumed.params["output"]["kernel"]))
    assert sorted(os.listdir(tmp_path / "b" / "checkpoints")) == [str(N), str(2 * N)]


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(digits_dir, tmp_path):
    config = _config(digits_dir, 2)
    config.model_kwargs.dropout = 0.0
    config.distortion.rotation_degrees = config.distortion.translate = 0.0  # Faster compile.
    config.distortion.scale = (1.0, 1.0)
    config.checkpoint_every_steps = 1
    training.train_and_evaluate(config, tmp_path)  # Good checkpoints at steps 1 and 2.
    config.num_train_steps = 12
    config.optimizer.learning_rate = 1e30  # Resumes at 2; step 3 overflows the parameters.
    # A changed learning rate is refused on resume (jaxconv.training.resume); without
    # run.json the checkpoints are resumed unchecked.
    os.remove(tmp_path / "run.json")
    with pytest.raises(training.NonFiniteLossError, match=r"is (nan|inf) at step 3:"):
        training.train_and_evaluate(config, tmp_path)
    checkpoint = Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
    try:
        assert checkpoint.latest_step() == 2
    finally:
        checkpoint.close()
