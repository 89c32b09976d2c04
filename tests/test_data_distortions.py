"""Tests for jaxconv.data.distortions: closed forms, determinism, jit, normalize."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxconv.data import Distortion, affine_warp, distort, distort_and_normalize, normalize

RNG = np.random.default_rng(0)
KEY = jax.random.key(0)
# One jitted function and few shapes: each (distortion, shape) pair compiles once (~1 s).
jit_distort = jax.jit(distort, static_argnames="distortion")
jit_warp = jax.jit(affine_warp)
ALL_ON = Distortion(
    rotation_degrees=15,
    translate=1.5,
    scale=(0.9, 1.1),
    horizontal_flip=True,
    crop_padding=2,
    brightness=0.1,
    contrast=0.2,
)


def _images(b=16, h=8, w=8, c=1):
    """Random images in [0, 1); the default shape is shared by most tests."""
    return jnp.asarray(RNG.random((b, h, w, c), dtype=np.float32))


def test_identity_when_all_off():
    x = _images()
    assert Distortion().is_identity
    assert distort(KEY, x, Distortion()) is x
    assert distort(KEY, x, Distortion(scale=(1, 1), crop_padding_mode="reflect")) is x
    y = jax.jit(lambda k, x: distort(k, x, Distortion()))(KEY, x)
    np.testing.assert_array_equal(y, x)


def test_horizontal_flip_is_exact():
    x = _images()
    y = np.asarray(jit_distort(KEY, x, distortion=Distortion(horizontal_flip=True)))
    flipped = [np.array_equal(yi, xi[:, ::-1]) for xi, yi in zip(np.asarray(x), y)]
    kept = [np.array_equal(yi, xi) for xi, yi in zip(np.asarray(x), y)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 16  # Both outcomes occur (p = 1/2 each).


@pytest.mark.parametrize("k", [1, 2, 3, -1])
def test_quarter_turns_equal_rot90(k):
    image = np.arange(7 * 7 * 2, dtype=np.float32).reshape(7, 7, 2)
    out = jit_warp(jnp.asarray(image), 90.0 * k, 1.0, jnp.zeros(2))
    np.testing.assert_allclose(out, np.rot90(image, k), atol=1e-4)


@pytest.mark.parametrize("shift", [(1, 0), (0, -2), (2, 3), (-3, -1)])
def test_integer_translation_is_shift_with_zero_fill(shift):
    image = RNG.random((7, 9, 2), dtype=np.float32)
    dy, dx = shift
    expected = np.zeros_like(image)
    h, w = image.shape[:2]
    expected[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    out = jit_warp(jnp.asarray(image), 0.0, 1.0, jnp.asarray(shift, jnp.float32))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_zoom_by_two_about_centre():
    image = np.zeros((7, 9, 2), np.float32)
    image[3, 4] = 1.0  # Centre pixel; its neighbours at half-pixel spacing interpolate.
    out = np.asarray(jit_warp(jnp.asarray(image), 0.0, 2.0, jnp.zeros(2)))[..., 0]
    assert out[3, 4] == 1.0
    np.testing.assert_allclose(out[3, [3, 5]], 0.5)
    np.testing.assert_allclose(out[[2, 4], 4], 0.5)
    np.testing.assert_allclose(out[[2, 2, 4, 4], [3, 5, 3, 5]], 0.25)
    assert out.sum() == pytest.approx(4.0)  # Nothing else is lit.


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crop_padding_is_a_window_of_the_padded_image(mode):
    x = _images()
    p = 2
    d = Distortion(crop_padding=p, crop_padding_mode=mode)
    y = np.asarray(jit_distort(KEY, x, distortion=d))
    padded = np.pad(np.asarray(x), ((0, 0), (p, p), (p, p), (0, 0)), mode=mode)
    offsets = set()
    for i in range(len(x)):
        matches = [
            (oy, ox)
            for oy in range(2 * p + 1)
            for ox in range(2 * p + 1)
            if np.array_equal(y[i], padded[i, oy : oy + 8, ox : ox + 8])
        ]
        assert matches, i
        offsets.add(matches[0])
    assert len(offsets) > 5


def test_brightness_then_contrast():
    x = _images(c=3)
    y = np.asarray(jit_distort(KEY, x, distortion=Distortion(brightness=0.2, contrast=0.5)))
    x = np.asarray(x)
    # Brightness shifts every pixel and channel of an example by one delta in [-0.2, 0.2];
    # contrast then scales deviations from each channel's mean by one factor in [0.5, 1.5].
    delta = y.mean(axis=(1, 2)) - x.mean(axis=(1, 2))
    np.testing.assert_allclose(delta, delta[:, :1] * np.ones_like(delta), atol=1e-5)
    assert np.abs(delta).max() <= 0.2 and np.ptp(delta[:, 0]) > 0.05
    dx = x - x.mean(axis=(1, 2), keepdims=True)
    dy = y - y.mean(axis=(1, 2), keepdims=True)
    factor = (dx * dy).sum(axis=(1, 2)) / (dx * dx).sum(axis=(1, 2))  # (B, C) least squares
    np.testing.assert_allclose(factor, factor[:, :1] * np.ones_like(factor), rtol=1e-4)
    np.testing.assert_allclose(dy, factor[:, None, None, :] * dx, atol=1e-5)
    assert ((factor >= 0.5 - 1e-4) & (factor <= 1.5 + 1e-4)).all() and np.ptp(factor) > 0.1


def test_deterministic_per_key_and_example_index():
    x = jnp.broadcast_to(_images(b=1), (16, 8, 8, 1))  # Sixteen copies of one image.
    y = jit_distort(KEY, x, distortion=ALL_ON)
    np.testing.assert_array_equal(y, jit_distort(KEY, x, distortion=ALL_ON))
    assert len({np.asarray(yi).tobytes() for yi in y}) == 16  # Each index differs.
    assert not np.array_equal(y, jit_distort(jax.random.key(1), x, distortion=ALL_ON))
    # Example i uses fold_in(key, index_offset + i): the same index gives the same distortion.
    x = _images()
    y = jit_distort(KEY, x, distortion=ALL_ON)
    rolled = jnp.roll(x, -5, axis=0)  # rolled[j] = x[j + 5]
    y_rolled = jit_distort(KEY, rolled, distortion=ALL_ON, index_offset=5)
    np.testing.assert_allclose(y_rolled[:11], y[5:], atol=1e-6)


def test_jit_batch_128_is_fast():
    x = _images(b=128)
    jax.block_until_ready(jit_distort(KEY, x, distortion=ALL_ON))
    start = time.perf_counter()
    for step in range(20):
        out = jit_distort(jax.random.fold_in(KEY, step), x, distortion=ALL_ON)
    jax.block_until_ready(out)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert (time.perf_counter() - start) / 20 < 0.1  # ~1-2 ms on 2 CPU cores.


def test_normalize_and_distort_and_normalize():
    u8 = jnp.asarray(RNG.integers(0, 256, (4, 5, 5, 3)), jnp.uint8)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 2.0)
    expected = (np.asarray(u8) / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(normalize(u8, mean, std), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(normalize(u8 / 255.0, mean, std), expected, rtol=1e-5, atol=1e-6)
    assert normalize(u8, (0.5,), (0.5,), dtype=jnp.bfloat16).dtype == jnp.bfloat16
    np.testing.assert_allclose(
        distort_and_normalize(KEY, u8, Distortion(), mean, std), expected, rtol=1e-5, atol=1e-6
    )
    u8 = jnp.asarray(RNG.integers(0, 256, (16, 8, 8, 1)), jnp.uint8)
    fn = jax.jit(distort_and_normalize, static_argnames=("distortion", "mean", "std"))
    out = fn(KEY, u8, distortion=ALL_ON, mean=(0.3,), std=(0.4,))
    manual = normalize(
        jit_distort(KEY, u8.astype(jnp.float32) / 255, distortion=ALL_ON), (0.3,), (0.4,)
    )
    np.testing.assert_allclose(out, manual, atol=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="length 1 or 3"):
        normalize(jnp.zeros((2, 4, 4, 3), jnp.uint8), (0.1, 0.2), (1.0, 1.0))
    with pytest.raises(ValueError, match="uint8 or float"):
        normalize(jnp.zeros((2, 4, 4, 1), jnp.int32), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="float images"):
        distort(KEY, jnp.zeros((2, 4, 4, 1), jnp.uint8), ALL_ON)
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        distort(KEY, jnp.zeros((4, 4, 1)), ALL_ON)
    with pytest.raises(ValueError, match="uint8"):
        distort_and_normalize(KEY, jnp.zeros((2, 4, 4, 1)), ALL_ON, (0.5,), (0.5,))
    for bad in (
        dict(scale=(1.2, 1.0)),
        dict(scale=(0.0, 1.0)),
        dict(rotation_degrees=-1),
        dict(contrast=1.5),
        dict(crop_padding=1.5),
        dict(crop_padding_mode="wrap"),
    ):
        with pytest.raises(ValueError):
            Distortion(**bad)
