"""Bad inputs to every public op, layer and model: one clear error line each, never XLA's.

A table of (target, bad input) cases: wrong rank, int/bool images, non-arrays, zero-size
dims, windows larger than the input, zero/negative/float windows and strides, bad paddings,
channels not divisible by groups, kernels and biases of the wrong shape, bad p / eps / sigma /
alpha / beta / k. Each must raise `ValueError` from jaxconv's own checks with a single-line
message naming the bad value and what was expected. An empty leading batch `(0, H, W, C)` is
not an error: every op, layer and model returns an empty output of the right shape.

Errors are raised while tracing, so image cases run under `jax.eval_shape` (as under `jit`;
nothing is compiled) and layers/models are abstract (`nnx.eval_shape`, no parameters made).
"""

import inspect
import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxconv import functional as F
from jaxconv import layers as L
from jaxconv.models import MODELS

from .bad_input_cases import IMAGE, IMAGE_CASES, OP_CASES, OPS, Case
from .bad_layer_cases import (
    LAYER_CASES,
    LAYERS,
    MODEL_CASES,
    MODEL_FACTORIES,
    _call_abstract,
    _zeros,
)

# Words that would mean an error escaped from XLA, jnp or Python internals, not our checks.
FOREIGN = ("XlaRuntimeError", "dot_general", "conv_general_dilated", "reduce_window", "jnp.",
           "lax.", "broadcast", "unsupported operand", "has no attribute", "by zero",
           "not iterable", "invalid literal", "could not convert", "not supported between",
           "to unpack", "pad_width", "index out of range")
ALL_CASES = IMAGE_CASES + OP_CASES + LAYER_CASES + MODEL_CASES


def _run(case: Case):
    if isinstance(case.x, jax.Array):
        return jax.eval_shape(case.call, case.x)
    return case.call(case.x)  # None (no image), a list, ...


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_bad_input_raises_one_clear_line(case):
    with pytest.raises(ValueError) as excinfo:
        _run(case)
    message = str(excinfo.value)
    assert re.search(case.match, message), f"{message!r} does not match {case.match!r}"
    assert "\n" not in message, f"multi-line message: {message!r}"
    assert not any(word in message for word in FOREIGN), f"foreign error: {message!r}"
    raised_in = str(excinfo.traceback[-1].path)
    assert "/jaxconv/" in raised_in, f"raised in {raised_in}, not by jaxconv's checks"


def test_every_public_op_layer_and_model_is_tried():
    ops = {c.target for c in IMAGE_CASES + OP_CASES}
    assert ops == set(F.__all__), set(F.__all__) ^ ops
    ours = {name for name, cls in inspect.getmembers(L, inspect.isclass)
            if cls.__module__ == L.__name__}
    layers = {c.target for c in LAYER_CASES}
    assert layers == ours, layers ^ ours
    models = {c.target for c in MODEL_CASES} - {"models"}
    assert {name.split("-")[0] for name in models} == {cls.__name__ for cls in MODELS.values()}
    # The figures quoted in README.md ("Reliability"); shown with `pytest -s`.
    print(f"\nbad-input cases: {len(ALL_CASES)} = {len(IMAGE_CASES) + len(OP_CASES)} on "
          f"{len(ops)} ops + {len(LAYER_CASES)} on {len(layers)} layers + {len(MODEL_CASES)} "
          f"on {len(MODEL_FACTORIES)} models")


# ---------------------------------------------------------------- an empty batch works


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_on_empty_batch_returns_empty_output(name):
    op = jax.jit(OPS[name])
    want = jax.eval_shape(OPS[name], IMAGE).shape
    assert op(IMAGE[:0]).shape == (0,) + want[1:]
    x = jnp.zeros((3, 0) + IMAGE.shape[1:])  # an empty inner batch dim
    assert op(x).shape == (3, 0) + want[1:]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_on_empty_batch_returns_empty_output(name):
    want = _call_abstract(LAYERS[name])(IMAGE).shape
    y = nnx.jit(lambda m, x: m(x))(_zeros(LAYERS[name]), IMAGE[:0])
    assert y.shape == (0,) + want[1:]


@pytest.mark.parametrize("name", sorted(MODEL_FACTORIES))
def test_model_on_empty_batch_returns_empty_logits(name):
    make, shape, classes = MODEL_FACTORIES[name]
    x = jax.ShapeDtypeStruct((0,) + shape, jnp.float32)
    assert _call_abstract(make)(x).shape == (0, classes)


def test_lenet5_runs_an_empty_batch():
    model = _zeros(MODEL_FACTORIES["LeNet5"][0])  # a compiled call, not only shapes
    assert nnx.jit(lambda m, x: m(x))(model, jnp.zeros((0, 32, 32, 1))).shape == (0, 10)
