"""jaxconv: convolutional networks in JAX / Flax NNX.

- `jaxconv.functional`: pure ops (conv, locally-connected, pools, LCN, LRN).
- `jaxconv.layers`: thin `flax.nnx` modules over them.
- `jaxconv.models`: LeNet-5, StageNet (Jarrett et al. 2009), AlexNet.
"""

from jaxconv import functional

__version__ = "0.1.0"
__all__ = ["functional"]
