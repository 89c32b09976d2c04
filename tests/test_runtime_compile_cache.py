"""The persistent compilation cache: where it goes, the opt-out, a second process hits it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxconv.runtime import compile_cache

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # starts processes: the full suite only

# A fresh process enables the cache as the entry points do, compiles one program and reports
# jax's cache-hit events.
SCRIPT = """
import json, jax, jax.numpy as jnp
from jaxconv import runtime
path = runtime.enable_compilation_cache()
events = []
jax.monitoring.register_event_listener(lambda event, **kw: events.append(event))
value = float(jax.jit(lambda x: jnp.sin(x) * 2.0 + 1.0)(jnp.arange(5.0)).sum())
print(json.dumps({"dir": path, "value": value,
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "max_size": jax.config.jax_compilation_cache_max_size,
                  "min_time": jax.config.jax_persistent_cache_min_compile_time_secs}))
"""


def _env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV)}
    env.update(overrides)
    return env


def _run_script(**env: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=_env(**env),
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cache_dir_from_the_environment(tmp_path):
    home = os.path.expanduser("~")
    assert compile_cache.cache_dir({}) == os.path.join(home, ".cache", "jaxconv", "jax")
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": "/xdg"}) == "/xdg/jaxconv/jax"
    assert compile_cache.cache_dir({compile_cache.ENV: "1", "XDG_CACHE_HOME": "/x"}) == \
        "/x/jaxconv/jax"
    for off in ("0", "off", "false", "no", " 0 "):
        assert compile_cache.cache_dir({compile_cache.ENV: off}) is None
    assert compile_cache.cache_dir({compile_cache.ENV: str(tmp_path)}) == str(tmp_path)
    assert compile_cache.cache_dir({compile_cache.ENV: "~/cc"}) == os.path.join(home, "cc")


def test_importing_the_library_configures_nothing():
    import jaxconv.plots  # noqa: F401
    import jaxconv.predict  # noqa: F401
    import jaxconv.training  # noqa: F401

    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        assert jax.config.jax_compilation_cache_dir is None
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0  # jax's default


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    cache = tmp_path / "cache"
    first = _run_script(JAXCONV_COMPILATION_CACHE=str(cache))
    assert first["dir"] == str(cache) and first["hits"] == 0
    assert first["min_time"] == compile_cache.MIN_COMPILE_TIME_SECS == 0.0
    assert first["max_size"] == compile_cache.MAX_SIZE_BYTES  # Also: reads and writes locked.
    entries = os.listdir(cache)
    assert any(name.endswith("-cache") for name in entries), entries  # Small programs too.
    second = _run_script(JAXCONV_COMPILATION_CACHE=str(cache))
    assert second["hits"] >= 1  # The jitted function (and the eager ops) loaded, not compiled.
    assert second["value"] == first["value"]  # The same program: bit for bit.
    np.testing.assert_allclose(first["value"], np.sum(np.sin(np.arange(5.0)) * 2 + 1), rtol=1e-6)
    assert sorted(os.listdir(cache)) == sorted(entries)  # Nothing new to write.


def test_the_variable_turns_it_off(tmp_path):
    xdg = tmp_path / "xdg"
    off = _run_script(JAXCONV_COMPILATION_CACHE="0", XDG_CACHE_HOME=str(xdg))
    assert off["dir"] is None and off["hits"] == 0
    assert not xdg.exists()
    default = _run_script(XDG_CACHE_HOME=str(xdg), JAX_COMPILATION_CACHE_MAX_SIZE="-1")
    assert default["dir"] == str(xdg / "jaxconv" / "jax")  # Unset: the default directory.
    assert default["max_size"] == -1  # jax's own variable wins.
    assert os.listdir(xdg / "jaxconv" / "jax")


@pytest.mark.slow
def test_predict_entry_point_fills_the_cache(trained_run, tmp_path):
    """``python -m jaxconv.predict`` enables the cache (and the plots' entry point the same)."""
    png = tmp_path / "digit.png"
    Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(png)
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "jaxconv.predict", "--workdir", trained_run, str(png)],
        cwd=ROOT, env=_env(JAXCONV_COMPILATION_CACHE=str(cache)), capture_output=True,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(os.listdir(cache)) >= 2, os.listdir(cache)  # The forward pass and eager ops.
    for module in ("predict", "plots"):
        main = (ROOT / "jaxconv" / module / "__main__.py").read_text()
        assert "runtime.enable_compilation_cache()" in main
    assert "runtime.enable_compilation_cache()" in (ROOT / "train.py").read_text()
