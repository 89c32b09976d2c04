"""ImageNet evaluation preprocessing, as torchvision's pretrained AlexNet / VGG expect it.

torchvision's `IMAGENET1K_V1` eval transform, step for step on the host (NumPy + Pillow):
`Resize(256)` (shorter side to 256, the longer `int(256 * long / short)`, Pillow bilinear,
which antialiases when shrinking), `CenterCrop(224)` (offsets `round((size - 224) / 2)`),
`ToTensor` (/255) and `Normalize(mean, std)`, but NHWC float32 instead of CHW.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SIZE = 256
CROP_SIZE = 224


def to_rgb_array(image) -> np.ndarray:
    """A PIL image or uint8 array (H, W), (H, W, 1) or (H, W, 3) -> uint8 (H, W, 3).

    Raises:
      ValueError: not uint8, or not 1 or 3 channels.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected an image (H, W), (H, W, 1) or (H, W, 3), got shape "
                         f"{image.shape}")
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def resize_shorter_side(image: np.ndarray, size: int = RESIZE_SIZE) -> np.ndarray:
    """Bilinear (antialiased) resize so the shorter side is `size`, keeping the aspect ratio.

    Args:
      image: uint8 `(H, W, 3)`.
      size: the new shorter side; the longer one is `int(size * long / short)` (torchvision).

    Returns:
      uint8 `(H', W', 3)` with `min(H', W') == size` (the input itself if already so).
    """
    h, w = image.shape[:2]
    if min(h, w) == size:
        return image
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))


def center_crop(image: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The central `(size, size)` window of `(H, W, ...)`, offsets `round((H - size) / 2)`.

    Raises:
      ValueError: the image is smaller than `size` on a side.
    """
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"cannot center-crop {size}x{size} from an image of shape {image.shape}")
    top, left = round((h - size) / 2), round((w - size) / 2)
    return image[top:top + size, left:left + size]


def normalize(images, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD):
    """`(images / 255 - mean) / std` per channel, float32.

    Args:
      images: uint8 (or 0..255 float) `(*batch, H, W, C)`, NumPy or JAX.
      mean, std: per-channel statistics of images scaled to [0, 1].

    Returns:
      float32 array of the same shape (and kind, NumPy or JAX).
    """
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    return (images.astype(np.float32) / np.float32(255) - mean) / std


def resize_center_crop(image, resize_size: int = RESIZE_SIZE,
                       crop_size: int = CROP_SIZE) -> np.ndarray:
    """The geometric part of `imagenet_eval`: uint8 in, uint8 `(crop_size, crop_size, 3)` out.

    It fits `jaxconv.predict.Predictor(resize=...)`, which normalises on device itself.

    Raises:
      ValueError: `crop_size > resize_size`, or an image `to_rgb_array` rejects.
    """
    if crop_size > resize_size:
        raise ValueError(f"crop_size {crop_size} must be <= resize_size {resize_size}")
    return center_crop(resize_shorter_side(to_rgb_array(image), resize_size), crop_size)


def imagenet_eval(image, resize_size: int = RESIZE_SIZE, crop_size: int = CROP_SIZE,
                  mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """torchvision's ImageNet eval transform for one image, NHWC: resize, crop, normalise.

    Args:
      image: a PIL image or a uint8 array `(H, W)`, `(H, W, 1)` or `(H, W, 3)`.
      resize_size: shorter side after resizing (256).
      crop_size: side of the central crop (224); at most `resize_size`.
      mean, std: normalisation statistics (ImageNet's).

    Returns:
      float32 `(crop_size, crop_size, 3)`.

    Examples:
      >>> import numpy as np
      >>> from jaxconv.transfer import imagenet_eval
      >>> x = imagenet_eval(np.zeros((300, 400, 3), np.uint8))
      >>> x.shape, round(float(x[0, 0, 0]), 4)  # (0 - 0.485) / 0.229
      ((224, 224, 3), -2.1179)
    """
    return normalize(resize_center_crop(image, resize_size, crop_size), mean, std)


def imagenet_eval_batch(images: Iterable, **kwargs) -> np.ndarray:
    """`imagenet_eval` on each image, stacked: float32 `(N, crop_size, crop_size, 3)`."""
    return np.stack([imagenet_eval(image, **kwargs) for image in images])
