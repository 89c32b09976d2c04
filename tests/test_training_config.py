"""Config checks: one clear line naming the key, from `validate_config` and from train.py."""

import os
import subprocess
import sys

import pytest

from configs import default as default_lib
from jaxconv.training import ConfigError, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
    c = default_lib.get_config()
    for dotted, value in overrides.items():
        node = c
        *path, last = dotted.split("__")
        for part in path:
            node = node[part]
        with c.ignore_type():
            node[last] = value
    return c


def test_default_config_is_valid():
    validate_config(default_lib.get_config(), device_count=4)


@pytest.mark.parametrize("overrides", [
    {"compute_dtype": "bfloat16"}, {"profile_steps": (0, 1)}, {"profile_steps": [10, 20]},
])
def test_mixed_precision_and_profiling_values_are_valid(overrides):
    validate_config(_config(**overrides), device_count=4)


@pytest.mark.parametrize("overrides, expected", [
    ({"model": "resnet"}, ["config.model='resnet'", "lenet5", "stagenet"]),
    ({"dataset": "svhn"}, ["config.dataset='svhn'", "digits", "mnist"]),
    ({"parallelism": "pjit"}, ["config.parallelism='pjit'", "jit", "pmap"]),
    ({"optimizer__schedule": "linear"}, ["config.optimizer.schedule", "cosine"]),
    ({"batch_size": 10}, ["config.batch_size=10", "divisible", "(4)"]),
    ({"eval_batch_size": 6}, ["config.eval_batch_size=6", "divisible"]),
    ({"batch_size": "100"}, ["config.batch_size='100'", "expected int"]),
    ({"progress_bar": 1}, ["config.progress_bar=1", "expected bool"]),
    ({"optimizer__momentum": 1.0}, ["config.optimizer.momentum", "[0, 1)"]),
    ({"optimizer__decay_epochs": (60, 30)}, ["config.optimizer.decay_epochs", "increasing"]),
    ({"num_epochs": 0}, ["config.num_epochs=0", "num_train_steps"]),
    ({"model_kwargs__depth": 3}, ["config.model_kwargs.depth", "'stagenet'", "features"]),
    ({"distortion__scale": (1.2, 1.1)}, ["config.distortion", "scale"]),
    ({"compute_dtype": "float16"},
     ["config.compute_dtype='float16'", "['float32', 'bfloat16']", "loss scaling"]),
    ({"compute_dtype": "bf16"}, ["config.compute_dtype='bf16'", "['float32', 'bfloat16']"]),
    ({"model_kwargs__dtype": "bfloat16"}, ["config.model_kwargs.dtype", "config.compute_dtype"]),
    ({"model_kwargs__param_dtype": "bfloat16"}, ["config.model_kwargs.param_dtype", "float32"]),
    ({"profile_steps": (20, 10)}, ["config.profile_steps=(20, 10)", "0 <= start < stop"]),
    ({"profile_steps": (-1, 3)}, ["config.profile_steps=(-1, 3)", "0 <= start < stop"]),
    ({"profile_steps": (5,)}, ["config.profile_steps=(5,)", "(start, stop)"]),
    ({"profile_steps": (1.0, 2)}, ["config.profile_steps=(1.0, 2)", "integers"]),
    ({"profile_steps": 10}, ["config.profile_steps=10", "expected tuple"]),
])
def test_bad_values_name_the_key(overrides, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(_config(**overrides), device_count=4)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, (part, message)


def test_missing_and_unknown_keys():
    c = default_lib.get_config()
    del c["log_every_steps"]
    with pytest.raises(ConfigError, match=r"config.log_every_steps is missing"):
        validate_config(c, device_count=1)
    c = default_lib.get_config()
    c.learning_rate = 0.1  # At the top level instead of under optimizer.
    with pytest.raises(ConfigError, match=r"config.learning_rate is not a config key"):
        validate_config(c, device_count=1)


def _run_train(workdir, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", "--config", "configs/default.py", "--workdir", str(workdir),
         *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
def test_train_py_prints_one_error_line(tmp_path):
    """Unknown key, wrong type, bad model, indivisible batch: one stderr line, exit 2."""
    cases = {
        "unknown key": (["--config.optimizer.lr=0.1"],
                        ["--config.optimizer.lr=0.1", "'lr' is not a key of config.optimizer",
                         "learning_rate"]),
        "wrong type": (["--config.batch_size=abc"],
                       ["--config.batch_size=abc", "expected int", "100"]),
        "bad model": (["--config.model=resnet"], ["config.model='resnet'", "stagenet"]),
        # conftest gives 4 CPU devices; the subprocess inherits XLA_FLAGS.
        "indivisible batch": (["--config.batch_size=10"],
                              ["config.batch_size=10", "divisible by the number of devices"]),
    }
    procs = {name: _run_train(tmp_path / name.replace(' ', '_'), *args)
             for name, (args, _) in cases.items()}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2, (name, stderr)
        assert len(lines) == 1, (name, stderr)
        assert lines[0].startswith("error: "), (name, stderr)
        for part in cases[name][1]:
            assert part in lines[0], (name, part, lines[0])
