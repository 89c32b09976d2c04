"""Shapes and padding arithmetic shared by the conv and locally-connected tests.

Written from the test's side (SAME through `lax.padtype_to_pads`, output sizes from the
formula), independent of `jaxconv.functional.args`.
"""

import jax.numpy as jnp
import numpy as np
from jax import lax

GEOMETRIES = [
    (1, "VALID", 1),
    (2, 1, 1),
    ((2, 1), (1, 0), (2, 1)),
    (1, ((0, 2), (1, 0)), (2, 1)),
    (2, "SAME", (2, 1)),
    ((2, 1), "SAME", 1),
]


def normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def explicit_padding(padding, in_hw, window, stride, dilation):
    """((top, bottom), (left, right)) from the test's side: SAME via lax's own rule."""
    if padding == "SAME":
        eff = [(k - 1) * d + 1 for k, d in zip(window, pair(dilation))]
        return tuple(tuple(p) for p in lax.padtype_to_pads(in_hw, eff, pair(stride), "SAME"))
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if all(isinstance(p, int) for p in padding):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return tuple(tuple(p) for p in padding)


def out_hw(in_hw, pads, window, stride, dilation):
    return tuple(
        (n + lo + hi - (k - 1) * d - 1) // s + 1
        for n, (lo, hi), k, s, d in zip(in_hw, pads, window, pair(stride), pair(dilation))
    )
