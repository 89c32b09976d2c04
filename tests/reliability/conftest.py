"""Fixtures shared by the reliability tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxconv.models import StageNet
from jaxconv.predict import Predictor


@pytest.fixture(scope="module")
def predictor():
    """A digits-shaped `Predictor` with random parameters (no initialiser runs or compiles),
    taking 8x8 files only (resize policy "none": the size checks are under test)."""
    model = nnx.eval_shape(lambda: StageNet(10, input_shape=(8, 8, 1), rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(3)
    state = jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), state)
    return Predictor(nnx.merge(graphdef, state), class_names=[str(i) for i in range(10)],
                     image_shape=(8, 8, 1), mean=(0.3,), std=(0.4,), batch_size=4,
                     resize="none")
