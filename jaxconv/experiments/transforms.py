"""Evaluation transforms: what the test images go through in an ``eval_of`` variant.

Each is a frozen dataclass (so the report can print its parameters) called on uint8
``(N, H, W, C)`` images, returning uint8 images of the same shape, rounded and clipped to
0..255 like stored data. They probe what the chapter says a network is robust to: where a
feature is (`Shift`), and the brightness and contrast of the image (`Brightness`,
`Contrast`, `Gradient`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (N, H, W, C), got {images.dtype} "
                         f"{images.shape}")
    return images


@dataclasses.dataclass(frozen=True)
class Shift:
    """Moves the image content by ``(dy, dx)`` pixels (down, right); vacated pixels are 0."""

    dy: int = 0
    dx: int = 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = _check(images)
        out = np.zeros_like(images)
        h, w = images.shape[1:3]
        dy, dx = self.dy, self.dx
        if abs(dy) >= h or abs(dx) >= w:
            return out
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        return out


@dataclasses.dataclass(frozen=True)
class Brightness:
    """Adds ``delta`` (on the [0, 1] scale) to every pixel."""

    delta: float

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return _to_uint8(_check(images).astype(np.float32) + 255.0 * self.delta)


@dataclasses.dataclass(frozen=True)
class Contrast:
    """Scales each image's deviation from its own mean grey level by ``factor``."""

    factor: float

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = _check(images).astype(np.float32)
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return _to_uint8(mean + self.factor * (x - mean))


@dataclasses.dataclass(frozen=True)
class Gradient:
    """Adds a left-to-right brightness ramp from 0 to ``delta`` ([0, 1] scale)."""

    delta: float

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = _check(images).astype(np.float32)
        ramp = np.linspace(0.0, 255.0 * self.delta, x.shape[2], dtype=np.float32)
        return _to_uint8(x + ramp[None, None, :, None])
