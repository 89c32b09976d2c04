"""Every key of every shipped config, given a value that could make a wrong run: refused with
one line naming the key, or a run that is right.

The keys are enumerated from the configs themselves (every leaf of every ``configs/*.py``,
model arguments and each tuple element included), so a new key or config is covered without
editing this file. Each gets NaN, ±inf, -1, 0, a huge integer, -0.5, 1.5 and a string. The
fast test asserts that `validate_config` either raises `ConfigError` naming the key, or
accepts a value of the key's own type; the slow one trains every accepted (key, value) of
the default config for a few steps and asserts the run either ends right (finite metrics) or
fails with one of the trainer's one-line errors (keys that change what is trained; the
bookkeeping keys' accepted values are their documented ones).
"""

import glob
import math
import os

import pytest

from jaxconv.training import config as config_lib
from jaxconv.training import config_keys, config_values
from tests.shipped_configs import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "configs",
                                                                             "*.py")))
BAD = (math.nan, math.inf, -math.inf, -1, 0, 2**40, -0.5, 1.5, "x")


def _leaf_keys(name):
    return [key for key, _ in config_values.leaves(load_config(name))]


def _set(config, key, value):
    """Sets dotted `key` (``key[i]``: element i of a tuple) ignoring the declared type."""
    *path, last = key.split(".")
    node = config
    for part in path:
        node = node[part]
    index = None
    if last.endswith("]"):
        last, index = last[:-1].split("[")
        items = list(node[last])
        items[int(index)] = value
        value = tuple(items)
    with config.ignore_type():
        node[last] = value


def _cases(name):
    for key in _leaf_keys(name):
        for bad in BAD:
            yield key, bad


def _accepted(name, key, bad):
    """None if validate_config refuses (and names the key), else the accepted config."""
    config = load_config(name)
    _set(config, key, bad)
    try:
        config_lib.validate_config(config)
    except config_lib.ConfigError as err:
        top = key.split("[")[0]
        assert top in str(err) or top.rsplit(".", 1)[-1] in str(err), (key, bad, str(err))
        assert "\n" not in str(err), str(err)
        return None
    return config


@pytest.mark.parametrize("name", CONFIGS)
def test_every_key_refuses_bad_values_by_name(name):
    accepted = []
    for key, bad in _cases(name):
        config = _accepted(name, key, bad)
        if config is None:
            continue
        accepted.append((key, bad))
        # Accepted: never a non-finite number, and the declared kind of value.
        assert not (isinstance(bad, float) and not math.isfinite(bad)), (key, bad)
    # Every key refuses some of the values (a key that takes anything is not checked).
    for key in _leaf_keys(name):
        assert sum(k == key for k, _ in accepted) < len(BAD), (key, accepted)


def test_nan_and_out_of_range_values_name_the_key():
    for key, value, words in [("optimizer.weight_decay", math.nan, "finite"),
                              ("optimizer.grad_clip_norm", math.nan, "finite"),
                              ("optimizer.learning_rate", math.nan, "finite"),
                              ("distortion.rotation_degrees", math.nan, "finite"),
                              ("model_kwargs.dropout", 1.0, "[0, 1)"),
                              ("model_kwargs.dropout", 1.5, "[0, 1)"),
                              ("model_kwargs.dropout", -0.5, "[0, 1)"),
                              ("seed", -1, "seed"), ("seed", 10**20, "too large"),
                              ("optimizer.warmup_epochs", math.inf, "finite"),
                              ("optimizer.decay_factor", math.nan, "finite"),
                              ("model_kwargs.hidden[0]", 0, "size"),
                              ("distortion.scale[1]", math.nan, "finite"),
                              ("distortion.scale[1]", "nan", "elements")]:
        config = load_config("default")
        if key == "model_kwargs.hidden[0]":
            config.model_kwargs.hidden = (0,)
        else:
            _set(config, key, value)
        with pytest.raises(config_lib.ConfigError, match=None) as err:
            config_lib.validate_config(config)
        assert words in str(err.value), (key, str(err.value))
        assert key.split("[")[0] in str(err.value), (key, str(err.value))


@pytest.mark.slow
def test_accepted_values_of_the_default_config_train_right(digits_dir, tmp_path):
    from jaxconv import training

    done = set()
    for key, bad in _cases("default"):
        if key in done:
            continue
        config = _accepted("default", key, bad)
        if (config is None or key in ("data_dir", "init.checkpoint", "init.torch_weights")
                or config_keys.kind(key.split("[")[0]) != "trained"):
            continue  # Bookkeeping keys do not change the steps; the init paths are files.
        done.add(key)
        config.data_dir = digits_dir
        config.num_train_steps, config.eval_every_steps = 3, 0
        config.write_plots = False
        workdir = tmp_path / f"{key}={bad}".replace("/", "_")
        try:
            training.train_and_evaluate(config, workdir)
        except (training.ConfigError, training.DivergedError,
                training.NonFiniteLossError):
            assert not (workdir / "metrics.json").exists()
            continue
        metrics = (workdir / "metrics.json").read_text()
        assert "NaN" not in metrics and '"test_loss": null' not in metrics, (key, bad)
    assert len(done) >= 10, done
