"""On-device input distortion (data augmentation) and normalization, pure JAX and jit-able.

The host pipeline yields uint8 batches; inside the train step do::

    x = images.astype(jnp.float32) / 255                      # [0, 1], fill value 0 = black
    x = distort(jax.random.fold_in(key, step), x, distortion)   # per-example random distortion
    x = normalize(x, info.mean, info.std)                      # (x - mean) / std

(`distort_and_normalize` does these three lines.) Distorting on the [0, 1] scale keeps the
meaning of the fill value (0 = black, the background of digits/MNIST) and of `brightness`.

Each example ``i`` of the batch draws its parameters from ``jax.random.fold_in(key, i +
index_offset)``, so a distortion is a function of (key, example index) only: pass the global
index of the batch's first example as `index_offset` when each process distorts its local part,
and the result does not depend on the number of processes or devices.

`Distortion` (all off by default; an all-off distortion returns its input unchanged), applied
in this order, photometric steps first so that the fill value of the geometric ones stays 0:

1. ``horizontal_flip``: mirror left-right with probability 1/2 (exact).
2. ``brightness``: add a delta uniform in ``[-brightness, brightness]`` (same for all pixels
   and channels of an example). No clipping (as ``tf.image.random_brightness``).
3. ``contrast``: scale each channel's deviation from its spatial mean by a factor uniform in
   ``[1 - contrast, 1 + contrast]``. No clipping.
4. ``crop_padding`` (int pixels): pad each side (zeros, or ``crop_padding_mode="reflect"``),
   then crop the original size at a uniformly random integer offset (the CIFAR recipe).
5. one affine warp, about the image centre, by bilinear interpolation
   (``jax.scipy.ndimage.map_coordinates``, ``order=1``), fill 0 outside the image:
   rotation by an angle uniform in ``[-rotation_degrees, rotation_degrees]`` (positive =
   counter-clockwise as displayed, rows downwards: +90 degrees equals ``np.rot90``),
   zoom by a factor uniform in ``scale = (min, max)`` (> 1 enlarges), and a shift uniform in
   ``[-translate, translate]`` **pixels**, independently along y and x (fractional shifts
   interpolate).

Each example's 9 parameters come from one ``jax.random.uniform(key_i, (9,))`` draw with a
fixed slot per parameter, so switching one distortion on or off leaves the others' draws
unchanged. (Order note, measured on CPU: with brightness/contrast after the warp, XLA
recomputed the interpolation inside each consumer, 4-10x slower for 128 CIFAR images.)

References:
  Simard, Steinkraus & Platt 2003, "Best practices for CNNs applied to visual document
  analysis" (affine distortions of digits); Krizhevsky et al. 2012 (crops, flips);
  Sermanet & LeCun 2011 (rotation/scale/translation jitter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

PAD_MODES = ("constant", "reflect")  # Distortion.crop_padding_mode values.


@dataclasses.dataclass(frozen=True)
class Distortion:
    """Random distortion settings (hashable: pass as a static argument under `jax.jit`).

    Attributes:
      rotation_degrees: maximum absolute rotation angle in degrees.
      translate: maximum absolute shift in pixels, along each of y and x.
      scale: ``(min, max)`` zoom factor, sampled uniformly; ``(1, 1)`` is off.
      horizontal_flip: mirror left-right with probability 1/2.
      crop_padding: pixels of padding on each side before a random crop of the original size.
      crop_padding_mode: ``"constant"`` (zeros) or ``"reflect"``.
      brightness: maximum absolute brightness delta, on the [0, 1] image scale.
      contrast: maximum contrast factor delta: factor in ``[1 - contrast, 1 + contrast]``.
    """

    rotation_degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    horizontal_flip: bool = False
    crop_padding: int = 0
    crop_padding_mode: str = "constant"
    brightness: float = 0.0
    contrast: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        for field in ("rotation_degrees", "translate", "crop_padding", "brightness"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}.")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max, got {self.scale}.")
        if not 0 <= self.contrast <= 1:
            raise ValueError(f"contrast must be in [0, 1], got {self.contrast}.")
        if int(self.crop_padding) != self.crop_padding:
            raise ValueError(f"crop_padding must be an integer, got {self.crop_padding}.")
        if self.crop_padding_mode not in PAD_MODES:
            raise ValueError(
                f"crop_padding_mode must be one of {PAD_MODES}, got {self.crop_padding_mode!r}."
            )

    @property
    def has_warp(self) -> bool:
        """Whether the affine warp (rotation, translation or scale) is on."""
        return bool(self.rotation_degrees or self.translate or self.scale != (1.0, 1.0))

    @property
    def is_identity(self) -> bool:
        """Whether every distortion is off (then `distort` returns its input)."""
        return not (
            self.has_warp
            or self.horizontal_flip
            or self.crop_padding
            or self.brightness
            or self.contrast
        )


def affine_warp(
    image: jax.Array, angle_degrees: jax.Array, scale: jax.Array, shift: jax.Array
) -> jax.Array:
    """Rotates, zooms and shifts one image about its centre, bilinear, fill 0.

    Output pixel ``p`` takes the input at ``R(-angle) (p - c - shift) / scale + c``, with
    ``c = ((H - 1) / 2, (W - 1) / 2)``; positive angles turn the image counter-clockwise as
    displayed (+90 degrees equals ``np.rot90(image)`` for a square image).

    Args:
      image: float ``(H, W, C)``.
      angle_degrees: scalar rotation angle in degrees.
      scale: scalar zoom factor (> 1 enlarges).
      shift: ``(2,)`` shift ``(dy, dx)`` in pixels (+dy moves content down, +dx right).

    Returns:
      float ``(H, W, C)``, same dtype as `image`.
    """
    if image.ndim != 3:
        raise ValueError(f"affine_warp expects one image (H, W, C), got shape {image.shape}.")
    h, w = image.shape[:2]
    theta = jnp.deg2rad(jnp.asarray(angle_degrees, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = jnp.meshgrid(
        jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij"
    )
    shift = jnp.asarray(shift, jnp.float32)
    dy = (yy - cy - shift[0]) / scale
    dx = (xx - cx - shift[1]) / scale
    coords = [cos * dy + sin * dx + cy, -sin * dy + cos * dx + cx]

    def warp_channel(channel):
        return ndimage.map_coordinates(channel, coords, order=1, mode="constant", cval=0.0)

    out = jax.vmap(warp_channel, in_axes=-1, out_axes=-1)(image.astype(jnp.float32))
    return out.astype(image.dtype)


def _random_crop(offsets: jax.Array, image: jax.Array, padding: int, mode: str) -> jax.Array:
    h, w, c = image.shape
    padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=mode)
    return jax.lax.dynamic_slice(padded, (offsets[0], offsets[1], 0), (h, w, c))


# Slots of the per-example uniform draws: fixed, so turning one distortion on or off does not
# change the random draws of the others.
_SLOTS = range(9)
_CROP_Y, _CROP_X, _ANGLE, _SCALE, _SHIFT_Y, _SHIFT_X, _FLIP, _BRIGHT, _CONTRAST = _SLOTS


def _distort_one(u: jax.Array, image: jax.Array, d: Distortion) -> jax.Array:
    """Distorts one ``(H, W, C)`` image with parameters from its 9 uniform draws `u`."""

    def between(slot, lo, hi):
        return lo + (hi - lo) * u[slot]

    # Photometric first (on the input, so the fill value of the geometric steps stays 0),
    # then geometric.
    if d.horizontal_flip:
        image = jnp.where(u[_FLIP] < 0.5, image[:, ::-1], image)
    if d.brightness:
        delta = between(_BRIGHT, -d.brightness, d.brightness)
        image = image + delta.astype(image.dtype)
    if d.contrast:
        factor = between(_CONTRAST, 1 - d.contrast, 1 + d.contrast)
        mean = jnp.mean(image.astype(jnp.float32), axis=(0, 1), keepdims=True)
        image = ((image - mean) * factor + mean).astype(image.dtype)
    if d.crop_padding:
        p = int(d.crop_padding)
        offsets = jnp.minimum(jnp.floor(u[jnp.array([_CROP_Y, _CROP_X])] * (2 * p + 1)), 2 * p)
        image = _random_crop(offsets.astype(jnp.int32), image, p, d.crop_padding_mode)
    if d.has_warp:
        angle = between(_ANGLE, -d.rotation_degrees, d.rotation_degrees)
        zoom = between(_SCALE, *d.scale)
        shift = jnp.stack([between(s, -d.translate, d.translate) for s in (_SHIFT_Y, _SHIFT_X)])
        image = affine_warp(image, angle, zoom, shift)
    return image


def distort(
    key: jax.Array,
    images: jax.Array,
    distortion: Distortion,
    *,
    index_offset: int | jax.Array = 0,
) -> jax.Array:
    """Applies a random `Distortion` to each image, independently and deterministically.

    Example ``i`` uses the key ``jax.random.fold_in(key, index_offset + i)``.

    Args:
      key: PRNG key, e.g. ``jax.random.fold_in(seed_key, step)``.
      images: float ``(B, H, W, C)``, best on the [0, 1] scale (fill value 0 = black).
      distortion: the settings (static under `jax.jit`).
      index_offset: global index of ``images[0]`` (e.g. ``process_index * local_batch``).

    Returns:
      float ``(B, H, W, C)``, same dtype; `images` itself when `distortion` is all off.

    Raises:
      ValueError: `images` not rank 4 or not floating point.

    Examples:
      >>> d = Distortion(rotation_degrees=10, translate=1.0, scale=(0.9, 1.1))
      >>> x = distort(jax.random.key(0), jnp.zeros((128, 8, 8, 1)), d)
    """
    if images.ndim != 4:
        raise ValueError(f"distort expects images (B, H, W, C), got shape {images.shape}.")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"distort expects float images (e.g. uint8 / 255), got dtype {images.dtype}."
        )
    if distortion.is_identity:
        return images
    indices = index_offset + jnp.arange(images.shape[0])
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
    u = jax.vmap(lambda k: jax.random.uniform(k, (len(_SLOTS),)))(keys)  # (B, 9)
    return jax.vmap(lambda ui, x: _distort_one(ui, x, distortion))(u, images)


def normalize(
    images: jax.Array,
    mean: Sequence[float] | jax.Array,
    std: Sequence[float] | jax.Array,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """Standardizes images: ``(x - mean) / std`` with ``x`` on the [0, 1] scale.

    Args:
      images: ``(*batch, H, W, C)``: uint8 in 0..255 (divided by 255 first), or floating
        point already on the [0, 1] scale (e.g. the output of `distort`).
      mean: per-channel mean on the [0, 1] scale, length C or 1 (`DatasetInfo.mean`).
      std: per-channel standard deviation, length C or 1 (`DatasetInfo.std`).
      dtype: output dtype.

    Returns:
      ``(*batch, H, W, C)`` of `dtype`.

    Raises:
      ValueError: integer images other than uint8, or mean/std not of length C or 1.
    """
    images = jnp.asarray(images)
    mean = jnp.asarray(mean, jnp.float32).reshape(-1)
    std = jnp.asarray(std, jnp.float32).reshape(-1)
    channels = images.shape[-1] if images.ndim else 0
    for what, v in (("mean", mean), ("std", std)):
        if v.shape[0] not in (1, channels):
            raise ValueError(f"{what} must have length 1 or {channels}, got {v.shape[0]}.")
    if images.dtype == jnp.uint8:
        x = images.astype(jnp.float32) / 255.0
    elif jnp.issubdtype(images.dtype, jnp.floating):
        x = images.astype(jnp.float32)
    else:
        raise ValueError(f"normalize expects uint8 or float images, got dtype {images.dtype}.")
    return ((x - mean) / std).astype(dtype)


def distort_and_normalize(
    key: jax.Array,
    images: jax.Array,
    distortion: Distortion,
    mean: Sequence[float] | jax.Array,
    std: Sequence[float] | jax.Array,
    *,
    index_offset: int | jax.Array = 0,
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
    """uint8 ``(B, H, W, C)`` batch -> distorted, normalized float batch (module docstring).

    Args:
      key: PRNG key for this step, e.g. ``jax.random.fold_in(seed_key, step)``.
      images: uint8 ``(B, H, W, C)``.
      distortion: the settings (static under `jax.jit`).
      mean: per-channel mean on the [0, 1] scale.
      std: per-channel standard deviation on the [0, 1] scale.
      index_offset: global index of ``images[0]``.
      dtype: output dtype.

    Returns:
      ``(B, H, W, C)`` of `dtype`.

    Raises:
      ValueError: `images` not uint8 or not rank 4.
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8:
        raise ValueError(f"distort_and_normalize expects uint8 images, got {images.dtype}.")
    x = images.astype(jnp.float32) / 255.0
    x = distort(key, x, distortion, index_offset=index_offset)
    return normalize(x, mean, std, dtype)
