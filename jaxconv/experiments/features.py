"""Penultimate features of a trained classifier, and how much a test transform moves them.

The penultimate features are the classifier layer's input: every layer of the model except
the last (``output``), on normalized images, flattened. `similarity` is the mean over images
of the cosine similarity between the features of an image and of its transformed copy: 1
when the transform leaves them unchanged. The pooling claim reads it under shifts ("pooling
makes the representation stable to where a feature is"), the LCN claim under lighting.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.data import normalize

BATCH = 500


class Penultimate:
    """Computes penultimate features in fixed-size jitted batches.

    Args:
      model: a trained `jaxconv.models` classifier (a `Sequential` whose last layer is the
        classifier), in eval mode.
      mean, std: the dataset's normalization (``DatasetInfo.mean`` / ``.std``).
      batch_size: images per jitted call (inputs are padded to it: one compilation).
    """

    def __init__(self, model: nnx.Module, mean, std, batch_size: int = BATCH):
        model.eval()
        self.graphdef, self.state = nnx.split(model)
        self.mean, self.std, self.batch_size = tuple(mean), tuple(std), batch_size
        self._features = jax.jit(self._forward)

    def _forward(self, state, images):
        model = nnx.merge(self.graphdef, state)
        x = normalize(images, self.mean, self.std)
        for _, layer in model.named_layers()[:-1]:
            x = layer(x)
        return x.reshape(x.shape[0], -1).astype(jnp.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(N, H, W, C)`` -> float32 ``(N, features)``."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = np.zeros((self.batch_size, *images.shape[1:]), images.dtype)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self._features(self.state, padded))[:len(chunk)])
        return np.concatenate(out)


def similarity(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Mean over rows of the cosine similarity of ``a[i]`` and ``b[i]`` (``(N, F)`` each).

    A pair where either vector is all zero counts as 1 if both are, else 0.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.einsum("nf,nf->n", a, b) / np.maximum(na * nb, eps)
    both_zero = (na < eps) & (nb < eps)
    return float(np.where(both_zero, 1.0, cos).mean())
