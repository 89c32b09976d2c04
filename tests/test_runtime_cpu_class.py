"""Tests for `jaxconv.runtime.cpu_class`: CPU class detection and the bfloat16 advice's condition.

Closed forms only: `/proc/cpuinfo` texts and flag sets written out here (the flags of the
three machines the measurements come from), never timings.
"""

import pytest

from jaxconv.runtime import cpu_class as cc

ZEN3 = "fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni"  # AVX2 only
ZEN4 = ZEN3 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni"
SPR = ZEN4 + " amx_bf16 amx_tile amx_int8"  # Intel Xeon with AMX


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv(cc.CLASS_ENV, raising=False)
    monkeypatch.delenv(cc.NO_BF16_WARNING_ENV, raising=False)


def test_read_cpu_flags_takes_the_first_flags_line():
    text = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 fma\n\n"
            "processor\t: 1\nflags\t\t: fpu\n")
    assert cc.read_cpu_flags(text) == {"fpu", "avx2", "fma"}
    assert cc.read_cpu_flags("processor\t: 0\n") == frozenset()


def test_read_cpu_flags_of_this_machine_is_a_set():
    assert isinstance(cc.read_cpu_flags(), frozenset)


@pytest.mark.parametrize("flags, expected", [
    (ZEN3, "avx2"), (ZEN4, "avx512"), (SPR, "amx"),
    ("fpu sse2 avx", "baseline"), ("avx2", "baseline"),  # AVX2 without FMA
    ("avx512f amx_tile", "avx512"),  # AMX tiles without bfloat16 tiles
    ("", "baseline"),
])
def test_cpu_class(flags, expected):
    assert cc.cpu_class(flags.split()) == expected


def test_class_env_overrides_and_is_checked(monkeypatch):
    monkeypatch.setenv(cc.CLASS_ENV, "avx2")
    assert cc.cpu_class(SPR.split()) == "avx2"
    monkeypatch.setenv(cc.CLASS_ENV, "sse")
    with pytest.raises(ValueError, match="JAXCONV_CPU_CLASS='sse'.*'amx'"):
        cc.cpu_class(SPR.split())


@pytest.mark.parametrize("flags", [ZEN3, ZEN4, SPR, "fpu"])
@pytest.mark.parametrize("dtype", ["bfloat16", "jnp.bfloat16"])
def test_bf16_advice_warns_on_every_measured_class(flags, dtype):
    advice = cc.bf16_advice(flags.split(), dtype)
    assert advice is not None and "\n" not in advice
    assert "compute_dtype='float32'" in advice and cc.NO_BF16_WARNING_ENV in advice


def test_bf16_advice_gives_the_measured_reason():
    assert "0.99x float32's time (283.7 vs 286.6 ms" in cc.bf16_advice(ZEN4.split(), "bfloat16")
    assert "333 vs 328 ms" in cc.bf16_advice(SPR.split(), "bfloat16")
    assert "no bfloat16 arithmetic" in cc.bf16_advice(ZEN3.split(), "bfloat16")


@pytest.mark.parametrize("dtype, platform", [
    ("float32", "cpu"), (None, "cpu"), ("bfloat16", "gpu"), ("bfloat16", "tpu"),
])
def test_bf16_advice_silent_off_cpu_or_without_bfloat16(dtype, platform):
    assert cc.bf16_advice(SPR.split(), dtype, platform) is None


def test_bf16_advice_silent_where_bfloat16_pays():
    pays = dict(cc.BF16_CONV_TIME_RATIO, amx=0.5)  # a jaxlib whose bfloat16 convs pay
    assert cc.bf16_advice(SPR.split(), "bfloat16", conv_time_ratio=pays) is None
    assert cc.bf16_advice(ZEN4.split(), "bfloat16", conv_time_ratio=pays) is not None
    # A class without a measurement: no claim either way.
    assert cc.bf16_advice(SPR.split(), "bfloat16", conv_time_ratio={}) is None
    slow = cc.bf16_advice(SPR.split(), "bfloat16", conv_time_ratio={"amx": 0.9})
    assert slow is not None and "0.90x float32's time" in slow


def test_bf16_advice_opt_out_and_dtype_objects(monkeypatch):
    import jax.numpy as jnp

    assert cc.bf16_advice(ZEN4.split(), jnp.bfloat16) is not None
    assert cc.bf16_advice(ZEN4.split(), jnp.dtype("bfloat16")) is not None
    monkeypatch.setenv(cc.NO_BF16_WARNING_ENV, "1")
    assert cc.bf16_advice(ZEN4.split(), "bfloat16") is None
