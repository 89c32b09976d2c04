"""Reading image files for prediction, with one clear error per bad file.

Only regular files are opened: a FIFO, a device, a socket or a directory is refused from its
``stat`` (opening a FIFO would wait forever for a writer). An image's size is checked from its
header, before its pixels are decoded: against `MAX_PIXELS`, and against the size the model
takes when the caller asks for that size exactly (resize policy ``"none"``: a 7000x7000 PNG
for an 8x8 model is refused without decoding its 49 M pixels).

`load_image` brings a file of any size to the model's ``(H, W, C)``: colour converted to the
model's channels first (ITU-R 601-2 luma for gray), then one of `RESIZE_POLICIES` with PIL's
antialiased bilinear filter:

- ``"fit"``: the whole image scaled to ``H x W`` (the aspect ratio changes if it differs);
- ``"crop"``: scaled to cover ``H x W``, aspect ratio kept, the centre cut out
  (`PIL.ImageOps.fit`);
- ``"pad"``: scaled to fit inside ``H x W``, aspect ratio kept, the rest filled with black
  (`PIL.ImageOps.pad`; black is the background of digits and MNIST);
- ``"none"``: the file must already be ``H x W``.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse images above this many pixels before decoding them (a decompression bomb guard that
# raises our own error instead of PIL's warning). PIL's own guard (a warning above ~89M pixels,
# an error above ~179M, raised while opening) is turned into the same `ImageError`.
MAX_PIXELS = 64_000_000

# What PIL raises on truncated or corrupt data while decoding: OSError ("image file is
# truncated"), SyntaxError ("broken PNG file"), ValueError ("Truncated IHDR chunk"), EOFError,
# and the errors `Image.open` itself treats as "not an image".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
                  struct.error, zlib.error)


RESIZE_POLICIES = ("fit", "crop", "pad", "none")
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased when shrinking, as torchvision's
_NONE_HINT = " (resize policy 'none'; --resize fit, crop or pad resizes it)"
_MODE_NAMES = {"1": "1-bit", "L": "gray", "LA": "gray+alpha", "P": "palette", "PA": "palette",
               "RGB": "RGB", "RGBA": "RGBA", "RGBX": "RGB", "CMYK": "CMYK", "YCbCr": "YCbCr"}


class ImageError(ValueError):
    """A file that cannot be used as an input image; the message names the file and why."""


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _not_regular(path, mode: int) -> ImageError:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return ImageError(f"{path}: unreadable image (not a regular file: {kind})")


def _open_regular(path: str | os.PathLike) -> BinaryIO:
    """Opens `path` for reading if it is a regular file; anything else is refused from its
    ``stat``, without opening it (a FIFO swapped in between does not block: O_NONBLOCK).

    Raises:
      ImageError: missing, not a regular file, or not readable.
    """
    try:
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            raise _not_regular(path, mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:  # no permission, a path through a file, ...
        raise ImageError(f"{path}: unreadable image ({_one_line(e)})") from None
    if not stat.S_ISREG(mode := os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return os.fdopen(fd, "rb")


def read_image(path: str | os.PathLike, channels: int,
               size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a PNG/JPEG/... file as uint8 `(H, W, channels)`.

    Gray images are expanded to 3 channels and colour images converted to gray (ITU-R 601-2
    luma, PIL's "L" mode) as the model needs; an alpha channel is dropped (not composited),
    as `img.convert("RGB")` does. 16-bit gray and 32-bit int/float images are rejected rather
    than guessed (PIL itself reads 16-bit RGB PNGs as 8-bit, keeping the high byte).

    Args:
      path: the file.
      channels: 1 (gray) or 3 (RGB).
      size: ``(height, width)`` the image must have, checked from the header before
        decoding; None: any size up to `MAX_PIXELS`.

    Raises:
      ImageError: missing, not a regular file, unreadable, truncated, not an image, too
        large, not `size`, or an unsupported mode — the message names the path.
    """
    image, _ = _read(path, channels, size)
    return _array(image)


def load_image(path: str | os.PathLike, shape: tuple[int, int, int],
               resize: str = "fit") -> tuple[np.ndarray, str]:
    """Reads a file as the uint8 `shape` ``(H, W, C)`` a model takes, and says what was done.

    Args:
      path: the file.
      shape: ``(height, width, channels)``, channels 1 (gray) or 3 (RGB).
      resize: one of `RESIZE_POLICIES` (module docstring).

    Returns:
      ``(image, description)``: uint8 `shape`, and e.g. ``"320x240 RGB -> 8x8 gray (fit)"``
      or ``"8x8 gray"`` (nothing changed).

    Raises:
      ImageError: as `read_image`; with ``resize="none"``, a file of another size.
      ValueError: an unknown `resize`.
    """
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {resize!r}")
    height, width, channels = shape
    exact = (height, width) if resize == "none" else None
    image, source = _read(path, channels, exact)
    size = (width, height)
    if image.size != size:
        if resize == "crop":
            image = ImageOps.fit(image, size, _RESAMPLE)
        elif resize == "pad":
            image = ImageOps.pad(image, size, _RESAMPLE, color=0)
        else:
            image = image.resize(size, _RESAMPLE)
    return _array(image), describe(source, (height, width, channels), resize)


def describe(source: tuple[int, int, str], shape: tuple[int, int, int], resize: str) -> str:
    """``"320x240 RGB -> 8x8 gray (fit)"``: a file's ``(width, height, PIL mode)`` and what
    `resize` made of it for a model taking `shape` ``(H, W, C)``; ``"8x8 gray"`` when the
    file is used as it is."""
    width, height, mode = source
    before = f"{width}x{height} {_MODE_NAMES.get(mode, mode)}"
    after = f"{shape[1]}x{shape[0]} {'gray' if shape[-1] == 1 else 'RGB'}"
    if (height, width) != tuple(shape[:2]):
        return f"{before} -> {after} ({resize})"
    return after if before == after else f"{before} -> {after}"


def _read(path, channels: int, size) -> tuple[Image.Image, tuple[int, int, str]]:
    """The file converted to `channels`, and its ``(width, height, mode)`` before that."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    with _open_regular(path) as f:
        return _decode(f, path, channels, size)


def _array(image: Image.Image) -> np.ndarray:
    array = np.asarray(image, np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _decode(f: BinaryIO, path, channels: int, size: tuple[int, int] | None):
    """`_read` on the opened file `f`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(f)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: larger than the {MAX_PIXELS:,}-pixel limit ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except _DECODE_ERRORS as e:  # a corrupt header
        raise ImageError(f"{path}: unreadable image ({_one_line(e)})") from None
    try:
        with img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{path}: {img.width}x{img.height} pixels is larger than the "
                                 f"{MAX_PIXELS:,}-pixel limit")
            if size is not None and (img.height, img.width) != tuple(size):
                raise ImageError(_size_message(path, img.width, img.height, size, _NONE_HINT))
            if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                raise ImageError(f"{path}: {img.mode} images (16-bit/float) are not supported; "
                                 "save it as 8-bit gray or RGB")
            img.load()
            source = (img.width, img.height, img.mode)
            mode = "L" if channels == 1 else "RGB"
            if img.mode == "P" and "transparency" in img.info:
                # Through RGBA, as PIL asks (a direct convert warns on every such file).
                converted = img.convert("RGBA").convert(mode)
            else:
                converted = img.convert(mode)
    except ImageError:
        raise
    except _DECODE_ERRORS as e:  # truncated / corrupt data
        raise ImageError(f"{path}: unreadable image ({_one_line(e)})") from None
    return converted, source


def _size_message(path, width: int, height: int, expected_hw, hint: str = "") -> str:
    return (f"{path}: image is {width}x{height} (WxH), the model expects "
            f"{expected_hw[1]}x{expected_hw[0]} like its dataset's images{hint}")


def check_size(image: np.ndarray, path, expected_hw: tuple[int, int]) -> np.ndarray:
    """Returns `image` if it is `expected_hw`, else raises `ImageError` naming both sizes."""
    if tuple(image.shape[:2]) != tuple(expected_hw):
        raise ImageError(_size_message(path, image.shape[1], image.shape[0], expected_hw))
    return image
