"""Mixed precision in the models: bfloat16 compute, float32 parameters and logits.

Reference: the same model in float32 (same seed, hence the same parameters). bfloat16 keeps 8
bits of mantissa (relative step 2**-8 = 0.0039); through a few layers the logits drift by a few
of those steps, so the bound is a relative 5 % of the logits' scale, while a model that ignored
`dtype` would give errors of exactly 0 (also asserted: the bf16 logits must differ).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv.layers import Conv
from jaxconv.models import VGG, AlexNet, LeNet5, StageNet, create_model

CASES = {
    "lenet5": (lambda **kw: LeNet5(input_size=28, **kw), (2, 28, 28, 1)),
    "stagenet": (lambda **kw: StageNet(10, input_shape=(16, 16, 1), hidden=(32,),
                                       pool=("max", "l2"), **kw), (2, 16, 16, 1)),
    "alexnet": (lambda **kw: AlexNet(10, variant="original", **kw), (1, 227, 227, 3)),
    "vgg": (lambda **kw: VGG(10, channels=(4, 4, 8, 8, 8), hidden=16, **kw), (2, 32, 32, 3)),
}


@nnx.jit
def _logits(model, x):
    return model(x)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n != "lenet5" else n
    for n in sorted(CASES)])
def test_bfloat16_model_matches_float32_within_bf16_tolerance(name):
    make, shape = CASES[name]
    x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    ref = _logits(make(rngs=nnx.Rngs(0)), x)
    model = make(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}  # master weights
    got = _logits(model, x)
    assert got.dtype == jnp.float32  # softmax / loss / metrics in float32
    scale = float(jnp.max(jnp.abs(ref)))
    err = float(jnp.max(jnp.abs(got - ref)))
    assert 0 < err <= 0.05 * scale, (err, scale)


def test_bfloat16_layers_compute_in_bfloat16():
    model = LeNet5(input_size=28, dtype="bfloat16", rngs=nnx.Rngs(0))
    assert model.c1.dtype == jnp.bfloat16
    h = model.c1(jnp.ones((1, 28, 28, 1)))
    assert h.dtype == jnp.bfloat16 and model.c1.kernel[...].dtype == jnp.float32


@pytest.mark.slow
def test_bfloat16_gradients_are_float32_and_finite():
    make, shape = CASES["stagenet"]
    model = make(dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), shape)

    def loss(m):
        return jnp.mean(jax.nn.log_softmax(m(x))[:, 0])

    grads = nnx.grad(loss)(model)
    for g in jax.tree.leaves(grads):
        assert g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g)))


def test_create_model_passes_dtypes():
    model = create_model("lenet5", rngs=nnx.Rngs(0), dtype="bfloat16", param_dtype="float32")
    assert isinstance(model.c1, Conv) and model.c1.dtype == jnp.bfloat16


@pytest.mark.parametrize("bad", ["int8", "nope", 3])
def test_bad_dtype_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="floating dtype"):
        LeNet5(dtype=bad, rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_float32_default_unchanged():
    model = LeNet5(rngs=nnx.Rngs(0))
    out = _logits(model, jnp.ones((1, 32, 32, 1)))
    assert out.dtype == jnp.float32 and model.c1.dtype is None
    np.testing.assert_array_equal(out, model(jnp.ones((1, 32, 32, 1))))
