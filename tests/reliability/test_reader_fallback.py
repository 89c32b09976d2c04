"""predict and plots read the newest readable checkpoint, as the trainer resumes from it.

A finished 2-step run whose step 2 is truncated: `restore_params`, ``python -m
jaxconv.predict`` and ``python -m jaxconv.plots`` use step 1 with one warning naming step 2
(no traceback, nothing moved). `read_newest` lists the steps again when the step it
reads disappears (a trainer deleting its old checkpoints) and takes the newest then.
"""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image
from shipped_configs import load_config

from jaxconv import runs, training
from jaxconv.plots import cli as plots_cli
from jaxconv.predict import cli as predict_cli

pytestmark = pytest.mark.slow  # trains or starts processes: the full suite only


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


@pytest.fixture(scope="module")
def finished(digits_dir, tmp_path_factory):
    config = load_config("default", data_dir=digits_dir, write_plots=False, batch_size=20,
                         num_train_steps=2, checkpoint_every_steps=1)
    workdir = tmp_path_factory.mktemp("finished")
    training.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    return workdir


@pytest.fixture
def broken(finished, tmp_path):
    """A copy of the finished run with the array files of its newest step truncated."""
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    for path in glob.glob(f"{workdir}/checkpoints/2/state/ocdbt*/d/*"):
        _truncate(path)
    return workdir


def _assert_params_equal(got, want):
    for (path, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(got),
                                 jax.tree_util.tree_leaves_with_path(want), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_restore_params_falls_back_with_a_warning(broken, caplog):
    with caplog.at_level(logging.WARNING):
        params = runs.restore_params(broken)
    _assert_params_equal(params, runs.read_params(str(broken / "checkpoints" / "1")))
    assert f"cannot read checkpoint {broken}/checkpoints/2/state: " in caplog.text
    assert f": using the older checkpoint {broken}/checkpoints/1" in caplog.text
    assert sorted(os.listdir(broken / "checkpoints")) == ["1", "2"]  # Nothing moved.


def test_no_readable_step_names_each(broken):
    for path in glob.glob(f"{broken}/checkpoints/1/state/ocdbt*/d/*"):
        _truncate(path)
    with pytest.raises(ValueError, match=rf"^no readable checkpoint in {broken}/checkpoints: "
                                         r"step 2: cannot read checkpoint .*; step 1: cannot"):
        runs.restore_params(broken)


def test_predict_and_plots_fall_back(broken, tmp_path, capsys):
    image = tmp_path / "seven.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(image)
    assert predict_cli.main(["--workdir", str(broken), str(image)]) == 0
    out, err = capsys.readouterr()
    assert str(image) in out
    [warning] = err.splitlines()
    assert warning.startswith(f"warning: cannot read checkpoint {broken}/checkpoints/2/state:")
    assert warning.endswith(f": using the older checkpoint {broken}/checkpoints/1")
    assert plots_cli.main(["--workdir", str(broken)]) == 0
    out, err = capsys.readouterr()
    assert f"{broken}/plots/filters.png" in out.splitlines()
    assert "Traceback" not in err and f"{broken}/checkpoints/2/state" in err


def test_a_step_deleted_while_read_is_retried_on_the_newest(finished, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    checkpoints = workdir / "checkpoints"
    reads = []

    def read(step_dir):  # A trainer saves step 3 and deletes step 2 while 2 is read.
        reads.append(os.path.basename(step_dir))
        if len(reads) == 1:
            shutil.copytree(step_dir, checkpoints / "3")
            shutil.rmtree(step_dir)
            raise ValueError(f"cannot read checkpoint {step_dir}: gone")
        return runs.read_params(step_dir)

    _assert_params_equal(runs.read_newest(workdir, read),
                         runs.read_params(str(checkpoints / "3")))
    assert reads == ["2", "3"]
