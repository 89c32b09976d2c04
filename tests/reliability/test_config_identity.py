"""Resuming with another config: trained keys stop the run, bookkeeping keys are recorded.

Every key of ``configs/default.py`` (and of each shipped config) is classified by
`jaxconv.training.config_keys`, so that a new key cannot slip through as "allowed to change".
Through `train_and_evaluate` on one workdir: a changed learning rate and seed stop the run
with one line naming both, before anything is written; a length below the step reached is
an error; a longer run with a changed log cadence continues, warns how the cosine schedule
changes, keeps the started config in ``run.json`` and appends the resume.
"""

import json
import logging
import os

import jax
import pytest
from shipped_configs import load_config

from configs import default as default_lib
from jaxconv import runs, training
from jaxconv.training import config_keys
from jaxconv.training.resume import ConfigMismatchError

SHIPPED = ["default", "mnist5k_pretrain", "mnist5k_finetune", "mnist_lenet5", "cifar10_stagenet",
           "imagenet_alexnet"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_config_key_is_classified(name):
    keys = config_keys.flatten(load_config(name))
    unclassified = [k for k in keys if not config_keys.is_classified(k)]
    assert not unclassified, f"classify in jaxconv/training/config_keys.py: {unclassified}"


def test_the_kinds_are_disjoint_and_name_only_default_keys():
    kinds = [config_keys.TRAINED, config_keys.LENGTH, config_keys.BOOKKEEPING]
    assert sum(map(len, kinds)) == len(frozenset().union(*kinds))
    keys = set(config_keys.flatten(default_lib.get_config()))
    assert frozenset().union(*kinds) <= keys  # No stale names.
    assert config_keys.kind("compute_dtype") == "trained"
    assert config_keys.kind("profile_steps") == "bookkeeping"
    assert config_keys.kind("model_kwargs.features") == "trained"
    assert config_keys.kind("some.new_key") == "trained"  # The safe side.


def test_compare_sorts_the_changes_by_kind():
    old = default_lib.get_config()
    new = default_lib.get_config()
    new.seed, new.model_kwargs.features = 1, (8, 16)
    new.num_train_steps, new.data_dir, new.keep_checkpoints = 500, "/elsewhere", 5
    changes = config_keys.compare(json.loads(json.dumps(old.to_dict())), new)
    assert changes.trained == {"model_kwargs.features": ([16, 32], [8, 16]), "seed": (0, 1)}
    assert changes.length == {"num_train_steps": (-1, 500)}
    assert changes.bookkeeping == {"data_dir": ("~/tensorflow_datasets", "/elsewhere"),
                                   "keep_checkpoints": (2, 5)}
    assert changes.describe("trained") == "model_kwargs.features (16, 32) → (8, 16), seed 0 → 1"
    del new.model_kwargs["features"]  # A model argument set on one side only.
    changes = config_keys.compare(old, new)
    assert str(changes.trained["model_kwargs.features"][1]) == "unset"


def _config(data_dir, **overrides):
    settings = dict(data_dir=data_dir, write_plots=False, batch_size=20, num_train_steps=2,
                    checkpoint_every_steps=1, log_every_steps=1,
                    distortion__rotation_degrees=0.0, distortion__translate=0.0,  # Faster
                    distortion__scale=(1.0, 1.0))                                 # compile.
    return load_config("default", **{**settings, **overrides})


def _train(config, workdir):
    return training.train_and_evaluate(config, workdir, devices=jax.devices()[:1])


@pytest.mark.slow
def test_resume_compares_the_config(digits_dir, tmp_path, caplog):
    workdir = tmp_path / "run"
    _train(_config(digits_dir), workdir)
    run_json = (workdir / "run.json").read_bytes()

    with pytest.raises(ConfigMismatchError, match=(
            rf"^{workdir} holds a run trained with another config: optimizer.learning_rate "
            r"0.05 → 0.1, seed 0 → 7\. .*use a new --workdir \(add --config.init.checkpoint=")):
        _train(_config(digits_dir, optimizer__learning_rate=0.1, seed=7), workdir)
    with pytest.raises(ConfigMismatchError, match=r"num_train_steps 2 → 1 makes the run 1 "
                                                  r"steps long, but .* already reached step 2"):
        _train(_config(digits_dir, num_train_steps=1), workdir)
    assert (workdir / "run.json").read_bytes() == run_json  # Nothing was written.

    with caplog.at_level(logging.WARNING):
        state = _train(_config(digits_dir, num_train_steps=4, log_every_steps=2), workdir)
    assert int(state.step) == 4
    assert ("num_train_steps 2 → 4: the run now ends at step 4 instead of 2; the cosine "
            "schedule now ends at step 4 instead of 2: the learning rate at step 2 is 0.025 "
            "(it was 0)") in caplog.text
    record = json.loads((workdir / "run.json").read_text())
    assert record["config"]["num_train_steps"] == 2  # The started config is kept.
    [entry] = record["resumes"]
    assert entry["step"] == 2
    assert entry["changed"] == {"log_every_steps": [1, 2], "num_train_steps": [2, 4]}
    assert runs.read_run_info(workdir).config["num_train_steps"] == 4  # In force now.
    with open(os.path.join(workdir, "metrics.json")) as f:
        assert json.load(f)["step"] == 4


@pytest.mark.slow
def test_a_run_recorded_before_compute_dtype_still_resumes(digits_dir, tmp_path):
    """run.json files written before config.compute_dtype existed lack the precision keys (in
    the config and in model_kwargs): they trained in float32 and resume as such; asking for
    bfloat16 on them is a config mismatch."""
    workdir = tmp_path / "old"
    _train(_config(digits_dir), workdir)
    (workdir / "metrics.json").unlink()  # Unfinished, as if stopped at step 2.
    record = json.loads((workdir / "run.json").read_text())
    for key in ("compute_dtype", "profile_steps"):
        del record["config"][key]
    for key in ("dtype", "param_dtype"):
        del record["model_kwargs"][key]
    (workdir / "run.json").write_text(json.dumps(record))
    with pytest.raises(training.CheckpointError, match="holds a run with model_kwargs"):
        _train(_config(digits_dir, num_train_steps=3, compute_dtype="bfloat16"), workdir)
    state = _train(_config(digits_dir, num_train_steps=3), workdir)
    assert int(state.step) == 3
