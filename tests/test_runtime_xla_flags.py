"""Tests for `jaxconv.runtime.xla_flags`: when the CPU flags apply; they change kernels only.

The effect on XLA needs a fresh process (flags are read once, when the backend starts), so those
tests run small child Pythons: one with the flags, one without, on the same conv + ReLU + grad.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxconv import runtime
from jaxconv.runtime import guard, malloc, xla_flags

REPO = Path(__file__).resolve().parent.parent
FLAG_NAME, FLAG_VALUE = xla_flags.CPU_PERFORMANCE_FLAGS[0]
FLAG = f"{FLAG_NAME}={FLAG_VALUE}"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No XLA_FLAGS / JAX_PLATFORMS / opt-out, and a private cache directory."""
    for name in ("XLA_FLAGS", "JAX_PLATFORMS", xla_flags.DISABLE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def test_import_changes_nothing():
    code = ("import os, jaxconv.runtime; from jax._src import xla_bridge; "
            "print(repr(os.environ.get('XLA_FLAGS')), xla_bridge.backends_are_initialized())")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["None", "False"]


def test_opt_out(clean_env, monkeypatch):
    monkeypatch.setenv(xla_flags.DISABLE_ENV, "1")
    assert xla_flags.apply_cpu_performance_flags() == []
    assert "XLA_FLAGS" not in os.environ


def test_guard_reads_opt_out_and_platforms(monkeypatch):
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    for value, allowed in (("", True), ("0", True), ("1", False), ("yes", False)):
        monkeypatch.setenv("JAXCONV_TEST_OPT_OUT", value)
        assert guard.tuning_allowed("JAXCONV_TEST_OPT_OUT") is allowed
    monkeypatch.delenv("JAXCONV_TEST_OPT_OUT")
    for platforms, allowed in (("cpu", True), ("cuda,CPU", True), ("cuda", False)):
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
        assert guard.tuning_allowed("JAXCONV_TEST_OPT_OUT") is allowed


def test_tune_cpu_with_both_opt_outs_applies_nothing(clean_env, monkeypatch):
    monkeypatch.setenv(xla_flags.DISABLE_ENV, "1")
    monkeypatch.setenv(malloc.DISABLE_ENV, "1")
    assert runtime.tune_cpu() == runtime.CpuTuning(xla_flags=[], malloc=False)
    assert "XLA_FLAGS" not in os.environ


def test_user_value_wins(clean_env, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", f"{FLAG_NAME}=-individual_convolution --xla_foo=1")
    assert xla_flags.apply_cpu_performance_flags() == []
    assert os.environ["XLA_FLAGS"] == f"{FLAG_NAME}=-individual_convolution --xla_foo=1"


def test_not_applied_without_cpu_platform(clean_env, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert xla_flags.apply_cpu_performance_flags() == []


def test_too_late_once_backends_started(clean_env, caplog):
    import jax

    jax.devices()  # this test process's backend is running: XLA has read its flags
    with caplog.at_level("WARNING", logger="jaxconv.runtime.xla_flags"):
        assert xla_flags.apply_cpu_performance_flags() == []
    assert "already started" in caplog.text
    assert "XLA_FLAGS" not in os.environ


def test_bogus_value_is_rejected_and_cached(clean_env):
    bogus = f"{FLAG_NAME}=-no_such_fusion_type"
    assert not xla_flags.jaxlib_accepts(bogus)
    cache = (clean_env / "jaxconv" / "xla_flags.json").read_text()
    assert "no_such_fusion_type" in cache and "false" in cache


def test_installed_jaxlib_accepts_the_flags(clean_env):
    assert xla_flags.jaxlib_accepts(FLAG, use_cache=False)


_CHILD = textwrap.dedent("""
    import sys
    from jaxconv.runtime import xla_flags
    if sys.argv[1] == "apply":
        print("APPLIED", xla_flags.apply_cpu_performance_flags())
    import jax, jax.numpy as jnp, numpy as np
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 16, 16, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 16, 32)), jnp.float32) * 0.1
    def loss(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jax.nn.relu(y + 0.1) ** 2)
    f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    print("YNN", "ynn_fusion" in f.lower(x, w).compile().as_text())
    value, (gx, gw) = f(x, w)
    np.savez(sys.argv[2], value=value, gx=gx, gw=gw)
""")


def _child(mode, out, env):
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, str(out)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_flags_move_convs_off_ynn_without_changing_results(clean_env, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    plain = _child("plain", tmp_path / "plain.npz", env)
    applied = _child("apply", tmp_path / "apply.npz", env)
    assert FLAG in applied
    # The default pipeline fuses the conv into YNNPACK (where jaxlib has it); the flags remove it.
    assert "YNN False" in applied
    a, b = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "apply.npz")
    for key in ("value", "gx", "gw"):
        np.testing.assert_allclose(a[key], b[key], rtol=2e-5, atol=1e-4 * np.abs(a[key]).max())
    assert "YNN" in plain


# ------------------------------------------------------------------ the flags per CPU class

ZEN3 = frozenset("fpu sse2 avx fma avx2".split())
ZEN4 = ZEN3 | {"avx512f", "avx512_bf16"}
SPR = ZEN4 | {"amx_tile", "amx_bf16"}


def test_every_cpu_class_has_its_flags():
    from jaxconv.runtime import cpu_class

    assert set(xla_flags.FLAGS_BY_CLASS) == set(cpu_class.CLASSES)
    for cls in cpu_class.CLASSES:
        flags = xla_flags.flags_for(cls)
        assert flags and all(name.startswith("--xla_cpu_") for name, _ in flags)
        assert (FLAG_NAME, FLAG_VALUE) in flags  # YNN off on every class measured
    with pytest.raises(ValueError, match="unknown CPU class 'sse'"):
        xla_flags.flags_for("sse")


@pytest.mark.parametrize("cpu_flags, cls", [(ZEN3, "avx2"), (ZEN4, "avx512"), (SPR, "amx")])
def test_choose_flags_by_detected_class(clean_env, cpu_flags, cls):
    expected = [f"{name}={value}" for name, value in xla_flags.flags_for(cls)]
    assert xla_flags.choose_flags(cpu_flags) == (cls, expected)
    # The user's value of a flag wins: it is left out.
    assert xla_flags.choose_flags(cpu_flags, f"{FLAG_NAME}=-dot --xla_foo=1")[1] == [
        f for f in expected if not f.startswith(FLAG_NAME)]


def test_class_override_picks_that_class(clean_env, monkeypatch):
    monkeypatch.setenv("JAXCONV_CPU_CLASS", "avx2")
    assert xla_flags.choose_flags(SPR)[0] == "avx2"
    monkeypatch.setenv("JAXCONV_CPU_CLASS", "bogus")
    with pytest.raises(ValueError, match="JAXCONV_CPU_CLASS"):
        xla_flags.choose_flags(SPR)


def test_apply_logs_the_class_and_flags(clean_env, monkeypatch, caplog):
    # Unit test of the log line: this worker's backend may already run (another test), and
    # the flags' acceptance is tested above; both are stubbed here.
    monkeypatch.setattr(guard, "backends_started", lambda: False)
    monkeypatch.setattr(xla_flags, "jaxlib_accepts", lambda flags, use_cache=True: True)
    with caplog.at_level("INFO", logger="jaxconv.runtime.xla_flags"):
        applied = xla_flags.apply_cpu_performance_flags(cpu_flags=ZEN4)
    assert applied == [FLAG] and os.environ["XLA_FLAGS"] == FLAG
    assert "CPU class avx512" in caplog.text and "JAXCONV_CPU_CLASS" in caplog.text
