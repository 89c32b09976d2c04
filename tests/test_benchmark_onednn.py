"""Tests for the oneDNN FFI prototype (`benchmarks/onednn/`), skipped unless it is built.

CI never builds it (`bash benchmarks/onednn/build.sh` needs g++ and the oneDNN wheels); where a
developer has, this checks its forward pass and both gradients against
`lax.conv_general_dilated` in float32 to float tolerance, and bfloat16 to bfloat16's.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "onednn"))
import onednn_conv  # noqa: E402

pytestmark = pytest.mark.skipif(not onednn_conv.available(),
                                reason="oneDNN prototype not built (benchmarks/onednn/build.sh)")

CASES = [  # x shape, kernel shape, stride, padding
    ((2, 8, 8, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1))),
    ((4, 9, 7, 6), (5, 5, 6, 8), (2, 1), ((2, 1), (0, 2))),
    ((3, 16, 16, 16), (3, 3, 16, 32), (2, 2), ((0, 0), (0, 0))),
    ((2, 12, 12, 64), (1, 1, 64, 24), (1, 1), ((0, 0), (0, 0))),
]


def _run(conv, x, w, dy, stride, padding):
    y, vjp = jax.vjp(jax.jit(lambda a, b: conv(a, b, stride, padding)), x, w)
    return (y, *vjp(dy))


@pytest.mark.parametrize("dtype, rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CASES)
def test_forward_and_both_gradients_equal_lax(x_shape, w_shape, stride, padding, dtype, rtol):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype)
    w = jnp.asarray(rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[:3])), dtype)
    y_shape = jax.eval_shape(lambda: onednn_conv.lax_conv2d(x, w, stride, padding)).shape
    dy = jnp.asarray(rng.standard_normal(y_shape), dtype)
    got = _run(onednn_conv.conv2d, x, w, dy, stride, padding)
    want = _run(onednn_conv.lax_conv2d, x, w, dy, stride, padding)
    for name, a, b in zip(("y", "dx", "dw"), got, want):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.max(np.abs(a - b)) <= rtol * np.max(np.abs(b)), name
