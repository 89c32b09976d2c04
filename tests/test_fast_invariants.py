"""What matters most, in the fast tier: an exact resume, a predictor that predicts as the
trainer evaluates, and the config keys that change what is trained.

One module fixture trains a tiny StageNet (one 4-map stage, an 8-unit hidden layer with
dropout, the default distortions) for 4 steps on 1 device, checkpointing every 2 steps; then
it makes the workdir what a kill after the step-2 checkpoint leaves (step 4's checkpoint and
``metrics.json`` removed) and runs the same config again, in-process. The slow tier does the
same with real signals (``tests/reliability/test_kill_resume.py``); this one costs two short
runs (~5 s on 2 cores).
"""

import os
import shutil

import jax
import numpy as np
import pytest

from configs import default as default_lib
from jaxconv import data, runs, training
from jaxconv.predict import Predictor
from jaxconv.training import config_keys
from jaxconv.training.resume import ConfigMismatchError, RunComplete

STEPS = 4


def _config(data_dir):
    c = default_lib.get_config()
    c.data_dir = data_dir
    c.num_train_steps = STEPS
    c.checkpoint_every_steps = 2
    c.batch_size = 16
    c.eval_batch_size = 100  # 297 test digits: the last batch has 3 padded (masked) rows.
    c.progress_bar = False
    c.write_plots = False
    c.model_kwargs.features = (4,)
    c.model_kwargs.lcn_kernel_size = (3,)
    c.model_kwargs.hidden = (8,)
    c.model_kwargs.dropout = 0.5
    return c


@pytest.fixture(scope="module")
def resumed(digits_dir, tmp_path_factory):
    """`(uninterrupted final state, resumed final state, workdir, config)`."""
    config, workdir = _config(digits_dir), str(tmp_path_factory.mktemp("resume"))
    one_device = jax.devices()[:1]
    straight = training.train_and_evaluate(config, workdir, devices=one_device)
    checkpoints = os.path.join(workdir, runs.CHECKPOINTS_DIR)
    assert runs.complete_steps(checkpoints) == [2, STEPS]
    shutil.rmtree(os.path.join(checkpoints, str(STEPS)))
    os.remove(os.path.join(workdir, runs.METRICS_FILE))
    again = training.train_and_evaluate(config, workdir, devices=one_device)
    return straight, again, workdir, config


def test_resume_is_bit_exact(resumed):
    """Params, optimizer state, step and RNG equal the uninterrupted run's, bit for bit: a
    batch skipped or repeated, a restored RNG or momentum off by anything, shows here."""
    straight, again, _, _ = resumed
    assert int(again.step) == STEPS
    pairs = zip(jax.tree.leaves(jax.device_get(straight)), jax.tree.leaves(jax.device_get(again)),
                strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    # It trained: the momentum holds gradients (a run that never moved would also "resume").
    trace = jax.tree.leaves(jax.device_get(again.opt_state))
    assert any(np.abs(np.asarray(t)).max() > 0 for t in trace if np.ndim(t) > 0)


def test_predictor_predicts_as_the_trainer_evaluates(resumed, digits_dir):
    """The predictor of the run (from its workdir) on the test split gives the trainer's final
    test loss and accuracy (``metrics.json``): same normalization, same parameters."""
    _, _, workdir, _ = resumed
    (batch,) = data.eval_batches("digits", digits_dir, batch_size=297)
    images, labels = batch["image"][batch["mask"]], batch["label"][batch["mask"]]
    probs = Predictor.from_checkpoint(workdir, batch_size=297).probabilities(images)
    metrics = runs.read_metrics(workdir)
    assert metrics["test_examples"] == len(labels) == 297
    loss = float(np.mean(-np.log(probs[np.arange(len(labels)), labels])))
    # float32 softmax vs the trainer's log-softmax cross-entropy: ~1e-7 relative.
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-5)
    assert np.sum(probs.argmax(-1) == labels) == round(metrics["test_accuracy"] * 297)


def test_a_changed_trained_key_stops_the_resume_and_bookkeeping_does_not(resumed):
    """On the finished run: a new learning rate (or seed, or batch) is refused before anything
    runs; a new logging interval is allowed (the run is complete, so nothing runs either)."""
    _, _, workdir, config = resumed
    for key, value in (("optimizer.learning_rate", 0.04), ("seed", 1), ("batch_size", 8),
                       ("model_kwargs.dropout", 0.25), ("distortion.rotation_degrees", 5.0)):
        changed = config.copy_and_resolve_references()
        section, _, name = key.rpartition(".")
        setattr(changed[section] if section else changed, name, value)
        with pytest.raises(ConfigMismatchError, match=key.replace(".", r"\.")):
            training.train_and_evaluate(changed, workdir)
    changed = config.copy_and_resolve_references()
    changed.log_every_steps = 7
    with pytest.raises(RunComplete):
        training.train_and_evaluate(changed, workdir)


# Every key of configs/default.py and its kind, written out (jaxconv.training.config_keys):
# a key whose kind changes, or a new key, has to be decided here too.
TRAINED_KEYS = """
seed num_seeds dataset classes image_size train_crop crop_resize_size worker_count
distortion.rotation_degrees distortion.translate distortion.scale distortion.horizontal_flip
distortion.crop_padding distortion.crop_padding_mode distortion.brightness distortion.contrast
model compute_dtype model_kwargs.features model_kwargs.kernel_size model_kwargs.lcn_kernel_size
model_kwargs.pool model_kwargs.hidden model_kwargs.dropout
init.checkpoint init.torch_weights init.exclude
freeze.first_layers freeze.patterns freeze.lower_lr_scale
batch_size optimizer.learning_rate optimizer.momentum optimizer.nesterov optimizer.weight_decay
optimizer.no_decay_names optimizer.schedule optimizer.warmup_epochs optimizer.decay_epochs
optimizer.decay_factor optimizer.final_lr_fraction optimizer.grad_clip_norm parallelism
""".split()
LENGTH_KEYS = ["num_train_steps", "num_epochs"]
BOOKKEEPING_KEYS = """
data_dir eval_batch_size log_every_steps eval_every_steps checkpoint_every_steps
keep_checkpoints profile_steps progress_bar write_plots divergence_factor
""".split()
EXPECTED_KINDS = {**dict.fromkeys(TRAINED_KEYS, "trained"),
                  **dict.fromkeys(LENGTH_KEYS, "length"),
                  **dict.fromkeys(BOOKKEEPING_KEYS, "bookkeeping")}


@pytest.mark.parametrize("key", sorted(EXPECTED_KINDS))
def test_config_key_kind(key):
    assert config_keys.kind(key) == EXPECTED_KINDS[key]
    assert config_keys.is_classified(key)


def test_every_default_key_has_its_kind_written_out():
    keys = set(config_keys.flatten(default_lib.get_config()))
    assert keys - set(EXPECTED_KINDS) == set(), "a new config key: add it to this file's lists"
    # Model arguments of other models (not in the default config) are trained too.
    assert config_keys.kind("model_kwargs.depth") == "trained"
    assert config_keys.kind("model_kwargs.variant") == "trained"


def test_compare_puts_each_change_in_its_kind():
    old = default_lib.get_config()
    new = old.copy_and_resolve_references()
    new.optimizer.learning_rate = 0.1
    new.num_train_steps = 5
    new.log_every_steps = 3
    changes = config_keys.compare(old.to_dict(), new)
    assert changes.trained == {"optimizer.learning_rate": (0.05, 0.1)}
    assert changes.length == {"num_train_steps": (-1, 5)}
    assert changes.bookkeeping == {"log_every_steps": (50, 3)}


def test_show_writes_values_as_the_command_line_takes_them():
    """The form the resume error prints (``--config.key=value``): a one-element tuple keeps
    its comma, so the printed value parses back to a tuple."""
    assert config_keys.show([16]) == "(16,)"
    assert config_keys.show([16, 32]) == "(16, 32)"
    assert config_keys.show([]) == "()"
    assert config_keys.show([[1, 2], "a"]) == "((1, 2), 'a')"
    assert config_keys.show("max") == "'max'"
    assert config_keys.show(0.05) == "0.05"
