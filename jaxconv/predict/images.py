"""Reading image files for prediction, with one clear error per bad file."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

# Refuse images above this many pixels before decoding them (a decompression bomb guard that
# raises our own error instead of PIL's warning).
MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """A file that cannot be used as an input image; the message names the file and why."""


def read_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """Reads a PNG/JPEG/... file as uint8 `(H, W, channels)`.

    Gray images are expanded to 3 channels and colour images converted to gray (ITU-R 601-2
    luma, PIL's "L" mode) as the model needs; 16-bit images are rejected rather than guessed.

    Args:
      path: the file.
      channels: 1 (gray) or 3 (RGB).

    Raises:
      ImageError: missing, unreadable, truncated, not an image, too large, or an unsupported
        mode — the message names the path.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{path}: {img.width}x{img.height} pixels is larger than the "
                                 f"{MAX_PIXELS:,}-pixel limit")
            if img.mode in ("I;16", "I;16B", "I", "F"):
                raise ImageError(f"{path}: {img.mode} images (16-bit/float) are not supported; "
                                 "save it as 8-bit gray or RGB")
            img.load()
            converted = img.convert("L" if channels == 1 else "RGB")
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except OSError as e:  # truncated / corrupt data
        raise ImageError(f"{path}: unreadable image ({e})") from None
    array = np.asarray(converted, np.uint8)
    return array[..., None] if channels == 1 else array


def check_size(image: np.ndarray, path, expected_hw: tuple[int, int]) -> np.ndarray:
    """Returns `image` if it is `expected_hw`, else raises `ImageError` naming both sizes."""
    if tuple(image.shape[:2]) != tuple(expected_hw):
        raise ImageError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]} (WxH), the model expects "
            f"{expected_hw[1]}x{expected_hw[0]} like its dataset's images"
        )
    return image
