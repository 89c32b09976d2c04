"""Pure JAX ops for convolutional networks on NHWC arrays `(*batch, height, width, channels)`.

Usable without any module system: every op is a function of arrays and static arguments and
works under `jit`, `vmap` and `grad`. One file per concept, each op's readable `lax`/`jnp`
definition first: `conv` (conv2d), `locally_connected` (extract_patches, locally_connected2d),
`pooling` (max, average, Lp / Gaussian L2, feature and adaptive pools), `normalization` (LCN,
LRN); `args` resolves the arguments they share. Some ops have a CPU-tuned form next to XLA's
native one (`cpu/`), chosen at trace time by platform; `set_lowering(mode)` /
`with lowering(mode):` override it (`LOWERINGS`; see `lowering`'s docstring).
"""

from jaxconv.functional.conv import conv2d
from jaxconv.functional.locally_connected import extract_patches, locally_connected2d
from jaxconv.functional.lowerings import LOWERINGS as LOWERINGS  # re-exported, not ops
from jaxconv.functional.lowerings import get_lowering as get_lowering
from jaxconv.functional.lowerings import lowering as lowering
from jaxconv.functional.lowerings import set_lowering as set_lowering
from jaxconv.functional.normalization import local_contrast_norm, local_response_norm
from jaxconv.functional.pooling import (
    adaptive_avg_pool,
    avg_pool,
    feature_pool,
    gaussian_window,
    lp_pool,
    max_pool,
)

# The ops. The lowering switch (`LOWERINGS`, `set_lowering`, `get_lowering`, `lowering`) is
# importable from here too, but is not an op.
__all__ = [
    "adaptive_avg_pool",
    "avg_pool",
    "conv2d",
    "extract_patches",
    "feature_pool",
    "gaussian_window",
    "local_contrast_norm",
    "local_response_norm",
    "locally_connected2d",
    "lp_pool",
    "max_pool",
]
