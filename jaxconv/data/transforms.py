"""Host-side resize/crop of variable-size images (imagenet2012) to one fixed shape.

Fixed-size datasets (digits, mnist, cifar10) pass their uint8 images through unchanged; all
random distortions of those happen on device (`jaxconv.data.distortions`). Variable-size
images (imagenet2012) must become one fixed shape before batching, so the host crops and
resizes them with Pillow (bilinear, antialiased when shrinking):

- train, ``mode="random_resized_crop"`` (default; Szegedy et al. 2015, "Inception"): a crop
  of random area fraction in ``area_range`` and aspect ratio (log-uniform) in
  ``aspect_ratio_range`` (10 tries, else the central crop of the clamped aspect ratio),
  resized to ``image_size``.
- train, ``mode="resize_random_crop"`` (Krizhevsky et al. 2012, AlexNet): resize the
  shorter side to ``resize_size`` then a uniformly random ``image_size`` square crop.
- eval: resize the shorter side to ``resize_size`` (default ``image_size * 256 / 224``, so 256
  for 224) and take the central ``image_size`` square, done as one resize of the
  corresponding box of the original image.

Randomness comes from the ``np.random.Generator`` that grain's ``random_map`` derives from the
pipeline seed and the element's position, so crops are reproducible and survive resumes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

TRAIN_MODES = ("random_resized_crop", "resize_random_crop")


@dataclasses.dataclass(frozen=True)
class ResizeCrop:
    """How to bring variable-size images to ``(image_size, image_size)`` on the host.

    Attributes:
      image_size: output side in pixels.
      train_mode: ``"random_resized_crop"`` or ``"resize_random_crop"`` (module docstring).
      resize_size: shorter side before cropping, for eval and for ``"resize_random_crop"``;
        None means ``round(image_size * 256 / 224)``.
      area_range: (min, max) fraction of the image area a random-resized crop covers.
      aspect_ratio_range: (min, max) width/height of a random-resized crop.
    """

    image_size: int = 224
    train_mode: str = "random_resized_crop"
    resize_size: int | None = None
    area_range: tuple[float, float] = (0.08, 1.0)
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self):
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}.")
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {TRAIN_MODES}, got {self.train_mode!r}.")
        if self.resize_size is not None and self.resize_size < self.image_size:
            raise ValueError(
                f"resize_size ({self.resize_size}) must be >= image_size ({self.image_size})."
            )
        lo, hi = self.area_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"area_range must satisfy 0 < min <= max <= 1, got {(lo, hi)}.")
        lo, hi = self.aspect_ratio_range
        if not 0 < lo <= hi:
            raise ValueError(f"aspect_ratio_range must satisfy 0 < min <= max, got {(lo, hi)}.")

    @property
    def shorter_side(self) -> int:
        """The shorter side images are resized to before a central or random crop."""
        if self.resize_size is not None:
            return self.resize_size
        return round(self.image_size * 256 / 224)


def _resize_box(image: np.ndarray, box: tuple[float, float, float, float], size: int):
    """Resizes the ``(left, top, right, bottom)`` box of `image` (H, W, C) to (size, size, C)."""
    squeeze = image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR, box=box))
    return out[..., None] if squeeze else out


def center_crop(image: np.ndarray, crop: ResizeCrop) -> np.ndarray:
    """Eval transform: shorter side to ``crop.shorter_side``, central ``image_size`` square.

    Args:
      image: uint8 ``(H, W, C)``.
      crop: the resize/crop settings.

    Returns:
      uint8 ``(image_size, image_size, C)``.
    """
    h, w = image.shape[:2]
    side = crop.image_size * min(h, w) / crop.shorter_side  # Crop side in original pixels.
    top, left = (h - side) / 2, (w - side) / 2
    return _resize_box(image, (left, top, left + side, top + side), crop.image_size)


def random_crop(image: np.ndarray, crop: ResizeCrop, rng: np.random.Generator) -> np.ndarray:
    """Train transform chosen by ``crop.train_mode`` (module docstring).

    Args:
      image: uint8 ``(H, W, C)``.
      crop: the resize/crop settings.
      rng: source of the crop's randomness.

    Returns:
      uint8 ``(image_size, image_size, C)``.
    """
    h, w = image.shape[:2]
    if crop.train_mode == "resize_random_crop":
        side = crop.image_size * min(h, w) / crop.shorter_side
        top, left = rng.uniform(0, h - side), rng.uniform(0, w - side)
        return _resize_box(image, (left, top, left + side, top + side), crop.image_size)
    log_lo, log_hi = (math.log(r) for r in crop.aspect_ratio_range)
    for _ in range(10):
        area = h * w * rng.uniform(*crop.area_range)
        ratio = math.exp(rng.uniform(log_lo, log_hi))
        cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if cw <= w and ch <= h:
            top, left = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
            return _resize_box(image, (left, top, left + cw, top + ch), crop.image_size)
    # Fallback: the largest central crop whose aspect ratio is within range.
    ratio = min(max(w / h, crop.aspect_ratio_range[0]), crop.aspect_ratio_range[1])
    cw, ch = (w, w / ratio) if w / h < ratio else (h * ratio, h)
    cw, ch = min(cw, w), min(ch, h)
    top, left = (h - ch) / 2, (w - cw) / 2
    return _resize_box(image, (left, top, left + cw, top + ch), crop.image_size)
