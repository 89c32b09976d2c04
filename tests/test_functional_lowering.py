"""Tests for `jaxconv.functional.lowering`: the mode API, and that each mode picks its lowering.

The values and gradients of both lowerings are checked against the references in the op tests
(`test_functional_pooling.py`, `_conv.py`, `_locally_connected.py`, `_normalization.py`, run
under both modes; the conv's CPU forms in `_cpu_conv.py`); here the compiled programs show
which primitives each mode emits.
"""

import jax
import jax.numpy as jnp
import pytest

from jaxconv import functional as F

X = jnp.ones((2, 8, 8, 4))

# op, the primitive XLA's lowering uses that the CPU lowering avoids
OPS = {
    "max_pool 3/2": (lambda x: F.max_pool(x, 3, 2), "reduce_window_max"),
    "lp_pool weighted": (lambda x: F.lp_pool(x, 2, 2, weights=F.gaussian_window(2)),
                         "conv_general_dilated"),
    "local_contrast_norm": (lambda x: F.local_contrast_norm(x, 3), "conv_general_dilated"),
    "conv2d 1 channel": (lambda x: F.conv2d(x[..., :1], jnp.ones((3, 3, 1, 2))),
                         "conv_general_dilated"),
}  # locally_connected2d's two forms are both one dot_general (an einsum, a batched matmul)


def _primitives(f, *args):
    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            yield eqn.primitive.name
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns"):
                        yield from walk(inner)

    # A fresh function each time: make_jaxpr, like jit, reuses a function's cached trace.
    return set(walk(jax.make_jaxpr(lambda *a: f(*a))(*args).jaxpr))


@pytest.mark.parametrize("name", sorted(OPS))
def test_modes_pick_their_lowering(name):
    op, xla_only = OPS[name]
    grad = jax.grad(lambda x: op(x)[0, 0, 0, 0])  # a sum would add a reduce_sum
    for f in (op, grad):
        with F.lowering("xla"):
            assert xla_only in _primitives(f, X)
        with F.lowering("cpu"):
            assert xla_only not in _primitives(f, X)


def test_auto_follows_the_default_backend(monkeypatch):
    assert F.get_lowering() == "auto"
    op, xla_only = OPS["max_pool 3/2"]
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert xla_only in _primitives(op, X)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert xla_only not in _primitives(op, X)


def test_set_lowering_returns_previous_and_context_restores():
    assert F.set_lowering("xla") == "auto"
    try:
        with pytest.raises(RuntimeError), F.lowering("cpu"):
            assert F.get_lowering() == "cpu"
            raise RuntimeError
        assert F.get_lowering() == "xla"
    finally:
        assert F.set_lowering("auto") == "xla"


@pytest.mark.parametrize("mode", ["gpu", "native", None])
def test_rejects_unknown_mode(mode):
    with pytest.raises(ValueError, match="lowering must be one of"):
        F.set_lowering(mode)
    assert F.get_lowering() == "auto"
