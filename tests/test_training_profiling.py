"""config.profile_steps: `ProfileHook` traces exactly steps start..stop-1 into workdir/profile."""

import glob
import gzip
import json
import os

import jax
import jax.numpy as jnp
import pytest

from configs import default as default_lib
from jaxconv import training
from jaxconv.training.profiling import ProfileHook, profile_hook


def _marked_step(i):
    """A jitted function whose name (``marker_step_<i>``) the trace records when it runs."""
    def f(x):
        return jnp.sin(x) * i

    f.__name__ = f"marker_step_{i}"
    return jax.jit(f)


def _traced_markers(log_dir) -> list[int]:
    """The step indices whose marker functions ran inside the one trace under `log_dir`."""
    (path,) = glob.glob(os.path.join(log_dir, "plugins", "profile", "*", "perfetto_trace.json.gz"))
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {e.get("name", "") for e in events}
    return sorted(int(n[len("PjitFunction(marker_step_"):-1]) for n in names
                  if n.startswith("PjitFunction(marker_step_"))


def _drive(hook, first, last):
    """The loop's calls: on_start(first), then step `i` dispatched before on_step(i + 1)."""
    x = jnp.ones((16, 16))
    hook.on_start(first)
    for step in range(first + 1, last + 1):
        x = _marked_step(step - 1)(x)
        hook.on_step(step)
    hook.on_end(last)
    hook.on_close()


@pytest.mark.parametrize("window, first, last, traced", [
    ((2, 4), 0, 6, [2, 3]),  # Starts at step 2, stops after step 3.
    ((0, 2), 0, 4, [0, 1]),  # From the first step (compilation included).
    ((2, 5), 3, 7, [3, 4]),  # Resumed inside the window: from the resumed step.
    ((3, 9), 0, 5, [3, 4]),  # Training ends inside the window: stopped at the end.
])
def test_trace_holds_exactly_the_window(tmp_path, window, first, last, traced):
    _drive(ProfileHook(tmp_path, *window), first, last)
    assert glob.glob(str(tmp_path / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert _traced_markers(tmp_path) == traced


def test_resumed_after_the_window_traces_nothing(tmp_path):
    _drive(ProfileHook(tmp_path / "profile", 1, 3), 5, 7)
    assert not os.path.exists(tmp_path / "profile")


def test_an_exception_inside_the_window_stops_the_trace(tmp_path):
    hook = ProfileHook(tmp_path / "a", 0, 10)
    hook.on_start(0)
    hook.on_close()  # What the loop calls when a step raises.
    assert not hook.active
    _drive(ProfileHook(tmp_path / "b", 0, 2), 0, 2)  # A new trace can start.
    assert _traced_markers(tmp_path / "b") == [0, 1]


def test_bad_window_is_refused():
    with pytest.raises(ValueError, match=r"0 <= start < stop, got \(3, 3\)"):
        ProfileHook("unused", 3, 3)


def test_off_by_default():
    assert profile_hook(default_lib.get_config(), "unused") is None


@pytest.mark.slow
def test_training_run_writes_a_trace(digits_dir, tmp_path):
    c = default_lib.get_config()
    c.data_dir, c.progress_bar, c.write_plots = digits_dir, False, False
    c.batch_size, c.eval_batch_size, c.num_train_steps = 20, 100, 4
    c.profile_steps = (1, 3)
    training.train_and_evaluate(c, tmp_path)
    runs = glob.glob(str(tmp_path / "profile" / "plugins" / "profile" / "*"))
    assert len(runs) == 1
    files = os.listdir(runs[0])
    assert any(f.endswith(".xplane.pb") for f in files), files
    assert "perfetto_trace.json.gz" in files
