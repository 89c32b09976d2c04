"""Corrupt, partial and foreign checkpoints: fall back to an older step or fail naming the path.

`Checkpointer.restore_latest` on a two-step directory (steps 1 and 2) after damaging step 2
in each way a crash, a full disk or a user can: truncated or emptied array files, a truncated
``_METADATA`` or iterator JSON, a missing item, an empty step directory, an unfinished Orbax
write. Then a checkpoint of another model (shapes or structure), every step unreadable, and
through `train_and_evaluate`: a workdir of another model (``run.json``), a finished workdir
whose checkpoints were deleted, a truncated newest step that the run resumes past.
"""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from configs import default as default_lib
from jaxconv import data, training
from jaxconv.training.checkpoint import Checkpointer, CheckpointError
from jaxconv.training.resume import ConfigMismatchError, RunComplete

STATE = {"params": {"w": np.arange(1000, dtype=np.float32), "b": np.ones(3, np.float32)},
         "step": np.asarray(0, np.int32)}


def _state(step):
    return {"params": {"w": STATE["params"]["w"] + step, "b": STATE["params"]["b"] * step},
            "step": np.asarray(step, np.int32)}


@pytest.fixture
def iterator(digits_dir):
    data.ensure_prepared("digits", digits_dir)
    return lambda: data.train_iterator("digits", digits_dir, global_batch_size=10, seed=0)


@pytest.fixture
def two_steps(tmp_path, iterator):
    """A checkpoint directory with steps 1 and 2 (the iterator advanced once per step)."""
    directory = tmp_path / "checkpoints"
    it = iterator()
    ckpt = Checkpointer(directory, max_to_keep=3)
    for step in (1, 2):
        next(it)
        ckpt.save(step, _state(step), it)
    ckpt.close()
    return str(directory)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _each(pattern):
    paths = glob.glob(pattern)
    assert paths, pattern
    return paths


DAMAGE = {
    "truncated array files": lambda d: [_truncate(p) for p in _each(f"{d}/state/ocdbt*/d/*")],
    "emptied array files": lambda d: [open(p, "w").close() for p in _each(f"{d}/state/ocdbt*/d/*")],
    "truncated manifest": lambda d: _truncate(f"{d}/state/manifest.ocdbt"),
    "truncated _METADATA": lambda d: _truncate(f"{d}/state/_METADATA"),
    "truncated iterator json": lambda d: [_truncate(p) for p in _each(f"{d}/data/*.json")],
    "missing state item": lambda d: shutil.rmtree(f"{d}/state"),
    "missing data item": lambda d: shutil.rmtree(f"{d}/data"),
    "empty step directory": lambda d: (shutil.rmtree(d), os.mkdir(d)),
}


# A failed Orbax read can leave coroutines and an asyncio callback that fires after its event
# loop closed; pyproject.toml's filterwarnings ignores those two (Orbax's cleanup), no others.
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_unreadable_newest_step_falls_back_with_a_warning(two_steps, iterator, damage, caplog):
    DAMAGE[damage](os.path.join(two_steps, "2"))
    ckpt = Checkpointer(two_steps, max_to_keep=3)
    try:
        with caplog.at_level(logging.WARNING):
            state, it = ckpt.restore_latest(STATE, iterator())
        assert int(state["step"]) == 1
        np.testing.assert_array_equal(state["params"]["w"], _state(1)["params"]["w"])
        assert f"checkpoint {two_steps}/2 cannot be read" in caplog.text
        assert f"resuming from the older checkpoint {two_steps}/1" in caplog.text
        # Set aside for inspection; the resumed run can save step 2 again.
        assert sorted(os.listdir(two_steps)) == ["1", "2.unreadable"]
        next(it)
        ckpt.save(2, _state(2), it)
        ckpt.wait()
        assert ckpt.latest_step() == 2
    finally:
        ckpt.close()


def test_unfinished_write_is_ignored_and_removed(two_steps, iterator):
    # What a kill during an async save leaves: the files under a temporary name.
    shutil.copytree(os.path.join(two_steps, "2"), os.path.join(two_steps, "3.orbax-checkpoint-tmp"))
    ckpt = Checkpointer(two_steps, max_to_keep=3)
    try:
        assert ckpt.latest_step() == 2
        assert int(ckpt.restore_latest(STATE, iterator())[0]["step"]) == 2
        assert sorted(os.listdir(two_steps)) == ["1", "2"]
    finally:
        ckpt.close()


def test_every_step_unreadable_raises_naming_the_path(two_steps, iterator):
    for step in ("1", "2"):
        DAMAGE["truncated _METADATA"](os.path.join(two_steps, step))
    ckpt = Checkpointer(two_steps, max_to_keep=3)
    try:
        with pytest.raises(CheckpointError, match=rf"no readable checkpoint in {two_steps}: "
                                                  r"step 2: .*; step 1: .*use a new --workdir"):
            ckpt.restore_latest(STATE, iterator())
        assert sorted(os.listdir(two_steps)) == ["1", "2"]  # Nothing moved or deleted.
    finally:
        ckpt.close()


@pytest.mark.parametrize("other, problem", [
    ({"params": {"w": np.zeros(10, np.float32), "b": np.ones(3, np.float32)},
      "step": np.asarray(0, np.int32)}, r"params/w is float32\[1000\] there, float32\[10\] here"),
    ({"params": {"w": STATE["params"]["w"], "b": np.ones(3, np.float64)},
      "step": np.asarray(0, np.int32)}, r"params/b is float32\[3\] there, float64\[3\] here"),
    ({"params": {"w": STATE["params"]["w"], "b": STATE["params"]["b"], "c": np.ones(2)},
      "step": np.asarray(0, np.int32)}, r"params/c is missing from the checkpoint"),
    ({"params": {"w": STATE["params"]["w"]}, "step": np.asarray(0, np.int32)},
     r"the checkpoint has params/b, this run does not"),
])
def test_checkpoint_of_another_model_raises(two_steps, iterator, other, problem):
    # Orbax alone restores a float32[1000] array into a float32[10] target as a silent slice.
    ckpt = Checkpointer(two_steps, max_to_keep=3)
    try:
        with pytest.raises(CheckpointError, match=rf"checkpoint {two_steps}/2/state does not "
                                                  rf"fit this config .*: {problem}"):
            ckpt.restore_latest(other, iterator())
    finally:
        ckpt.close()


def _config(data_dir, steps=2, **model_kwargs):
    c = default_lib.get_config()
    c.data_dir = data_dir
    c.progress_bar = c.write_plots = False
    c.batch_size, c.eval_batch_size = 20, 300
    c.num_train_steps = steps
    c.checkpoint_every_steps = 1
    c.distortion.rotation_degrees = c.distortion.translate = 0.0  # Faster compile.
    c.distortion.scale = (1.0, 1.0)
    c.model_kwargs.update(model_kwargs)
    return c


def _train(config, workdir):
    return training.train_and_evaluate(config, workdir, devices=jax.devices()[:1])


@pytest.mark.slow
def test_workdir_faults_through_train_and_evaluate(digits_dir, tmp_path, caplog):
    workdir = tmp_path / "run"
    done = _train(_config(digits_dir), workdir)
    checkpoints = workdir / "checkpoints"

    # Another model in the same workdir: run.json says so before anything is overwritten.
    with pytest.raises(ConfigMismatchError, match=rf"{workdir} holds a run trained with another "
                                                  r"config: model_kwargs.features \(16, 32\) → "
                                                  r"\(8, 32\).*use a new --workdir"):
        _train(_config(digits_dir, features=(8, 32)), workdir)

    # The newest step truncated (and the run killed before its final evaluation): resumes
    # from step 1 with a warning, ends where it did.
    os.remove(workdir / "metrics.json")
    for path in glob.glob(f"{checkpoints}/2/state/ocdbt*/d/*"):
        _truncate(path)
    with caplog.at_level(logging.WARNING):
        again = _train(_config(digits_dir), workdir)
    assert f"resuming from the older checkpoint {checkpoints}/1" in caplog.text
    np.testing.assert_array_equal(np.asarray(again.params["output"]["kernel"]),
                                  np.asarray(done.params["output"]["kernel"]))

    # Checkpoints gone but metrics.json there: refuse to start over on top of it (the same
    # length is complete as it is; a longer one has nothing to continue from).
    shutil.rmtree(checkpoints)
    with pytest.raises(RunComplete):
        _train(_config(digits_dir), workdir)
    with pytest.raises(CheckpointError, match=rf"{checkpoints} has no complete checkpoint, "
                                              r"but .*metrics.json shows a run finished"):
        _train(_config(digits_dir, steps=4), workdir)
