"""Pure JAX ops for convolutional networks on NHWC arrays `(*batch, height, width, channels)`.

Usable without any module system: every op is a function of arrays and static arguments and
works under `jit`, `vmap` and `grad`.
"""

from jaxconv.functional.conv import conv2d, extract_patches, locally_connected2d
from jaxconv.functional.normalization import local_contrast_norm, local_response_norm
from jaxconv.functional.pooling import (
    adaptive_avg_pool,
    avg_pool,
    feature_pool,
    gaussian_window,
    lp_pool,
    max_pool,
)

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
