"""Failures at the edges are one ``error:`` line naming the path and the reason.

The ``--config`` file (missing, a directory, empty, a syntax error with its line, an error
while loading it or in ``get_config``), the workdir (under a regular file, read-only, no
permission, a malformed ``run.json``), a full disk (the intact checkpoint steps named), and
a ``metrics.json`` that is not a metrics file (moved aside with a warning; the run goes on).
The full disk is simulated twice: by a hook raising ENOSPC after a save (always), and on a
real 200 KiB tmpfs (when this process may mount one, as root can).
"""

import errno
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import pytest
from shipped_configs import load_config

from jaxconv import data, runs, training
from jaxconv.training import config_file
from jaxconv.training.workdir import DiskFullError, WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("content, arg, expected", [
    ("def get_config(:\n", "", "{path}:1: invalid syntax (syntax error in the --config file)"),
    ("import ml_collections\n\nx = undefined_name\n", "",
     "{path}:3: NameError: name 'undefined_name' is not defined (while loading the --config "
     "file)"),
    ("def get_config():\n    raise ValueError('no such preset')\n", "",
     "{path}:2: get_config() raised ValueError: no such preset"),
    ("def get_config():\n    return {}\n", "",
     "--config {path}: get_config() returned dict, not an ml_collections.ConfigDict"),
    ("x = 1\n", "", "--config {path}: defines no get_config() function"),
    ("import ml_collections\ndef get_config(arg):\n    return ml_collections.ConfigDict("
     "{'a': int(arg)})\n", ":3", None),
], ids=["syntax", "load", "get_config-raises", "not-a-configdict", "no-get_config", "arg"])
def test_config_file_problems_are_one_line(tmp_path, content, arg, expected):
    path = _write(tmp_path / "config.py", content)
    got = config_file.problem(["train.py", f"--config={path}{arg}", "--workdir", "w"])
    assert got == (expected and expected.format(path=path))


def test_config_path_problems(tmp_path):
    assert config_file.problem(["t", "--config", "nope.py"]) == "--config nope.py: no such file"
    assert config_file.problem(["t", f"--config={tmp_path}"]) == (
        f"--config {tmp_path}: is a directory, not a config file (e.g. configs/default.py)")
    assert config_file.problem(["t", "--config", ""]) == (
        "--config is empty: give a config file, e.g. --config configs/default.py")
    assert config_file.problem(["t", "--config", "configs/default.py"]) is None
    assert config_file.problem(["t", "--workdir", "w"]) is None  # absl names the missing flag.


def _cli(args, tmp_path):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="",
                                   JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
                                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"))


@pytest.mark.slow
def test_train_py_prints_one_line_for_a_bad_config_file_and_workdir(tmp_path):
    bad = _write(tmp_path / "bad.py", "import ml_collections\n\ndef get_config(:\n")
    result = _cli(["--config", bad, "--workdir", str(tmp_path / "w")], tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: {bad}:3: invalid syntax (syntax error in the --config file)\n"
    afile = _write(tmp_path / "afile", "")
    result = _cli(["--config", "configs/default.py", "--workdir", f"{afile}/run"], tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"error: cannot use --workdir {afile}/run: {afile} is a file, not a "
                             f"directory\n")


def _config(data_dir, steps=2):
    c = load_config("default", data_dir=data_dir, write_plots=False, batch_size=20,
                    num_train_steps=steps, checkpoint_every_steps=1)
    c.distortion.rotation_degrees = c.distortion.translate = 0.0  # Faster compile.
    c.distortion.scale = (1.0, 1.0)
    return c


def _train(config, workdir, hooks=None):
    return training.train_and_evaluate(config, workdir, devices=jax.devices()[:1], hooks=hooks)


def test_workdir_under_a_file(tmp_path, digits_dir):
    afile = _write(tmp_path / "afile", "")
    with pytest.raises(WorkdirError, match=rf"^cannot use --workdir {afile}/a/b: {afile} is a "
                                           r"file, not a directory$"):
        _train(_config(digits_dir), f"{afile}/a/b")


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory this process cannot write: chmod for a user, a read-only tmpfs for root."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                      capture_output=True).returncode:
        pytest.skip("root cannot mount a read-only tmpfs here")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_read_only_workdir(read_only_dir, digits_dir):
    reason = "Permission denied" if os.geteuid() else "Read-only file system"
    with pytest.raises(WorkdirError, match=rf"^cannot create --workdir {read_only_dir}/run: "
                                           rf"{reason}$"):
        _train(_config(digits_dir), read_only_dir / "run")
    with pytest.raises(WorkdirError, match=rf"^cannot write to --workdir {read_only_dir}: "
                                           rf"{read_only_dir}/train.lock: {reason}$"):
        _train(_config(digits_dir), read_only_dir)


def test_malformed_run_json(tmp_path, digits_dir):
    workdir = tmp_path / "run"
    workdir.mkdir()
    _write(workdir / "run.json", '{"model": "stagenet", "config": ')
    with pytest.raises(WorkdirError, match=rf"^{workdir}/run.json is not a valid run.json "
                                           r"\(JSONDecodeError: .*\); move it away to start a "
                                           r"new run there, or use a new --workdir$"):
        _train(_config(digits_dir), workdir)


class _DiskFullAfterSave(training.Hooks):
    def on_save(self, step):
        if step == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.slow
def test_disk_full_names_the_intact_steps(tmp_path, digits_dir):
    workdir = tmp_path / "run"
    with pytest.raises(DiskFullError, match=(
            rf"^no space left on the device of {workdir} while writing the run; intact "
            rf"checkpoint steps: 1, 2 in {workdir}/checkpoints; free space and run the same "
            r"command to resume from step 2$")):
        _train(_config(digits_dir, steps=4), workdir, _DiskFullAfterSave())
    assert int(runs.restore_params(workdir)["output"]["bias"].shape[0]) == 10


@pytest.fixture
def tiny_tmpfs(tmp_path):
    path = tmp_path / "tiny"
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(path)],
            capture_output=True).returncode:
        pytest.skip("needs to mount a small tmpfs (root)")
    yield path
    subprocess.run(["umount", str(path)], check=True)


@pytest.mark.slow
def test_full_disk_through_train_py(tiny_tmpfs, tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    workdir = tiny_tmpfs / "run"  # A checkpoint is ~60 KB: the third one does not fit.
    result = _cli(["--config", "configs/default.py", "--workdir", str(workdir),
                   f"--config.data_dir={data_dir}", "--config.num_train_steps=40",
                   "--config.checkpoint_every_steps=5", "--config.keep_checkpoints=5",
                   "--config.progress_bar=False"], tmp_path)
    intact = runs.complete_steps(workdir / "checkpoints")
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"error: no space left on the device of {workdir} while writing the run; intact "
        f"checkpoint steps: {', '.join(map(str, intact))} in {workdir}/checkpoints; free "
        f"space and run the same command to resume from step {intact[-1]}\n")
    assert intact and runs.restore_params(workdir)  # The steps it names are readable.


@pytest.fixture(scope="module")
def finished(digits_dir, tmp_path_factory):
    """A finished 2-step run."""
    workdir = tmp_path_factory.mktemp("finished")
    _train(_config(digits_dir), workdir)
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("content", ["[]", "null", '{"history": [1]}', '{"step": 2, "hi'])
def test_unreadable_metrics_json_is_moved_aside(finished, tmp_path, digits_dir, caplog,
                                                content):
    workdir = tmp_path / "run"
    shutil.copytree(finished, workdir)
    _write(workdir / "metrics.json", content)
    with caplog.at_level(logging.WARNING):
        state = _train(_config(digits_dir), workdir)  # Evaluates step 2 again.
    assert int(state.step) == 2
    assert (workdir / "metrics.json.unreadable").read_text() == content
    assert f"{workdir}/metrics.json" in caplog.text
    assert f": moved it to {workdir}/metrics.json.unreadable; the run goes on" in caplog.text
    assert json.loads((workdir / "metrics.json").read_text())["step"] == 2
