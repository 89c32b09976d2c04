"""Bad image files for `read_image` / `Predictor.predict_files`: one `ImageError` naming the file.

Truncated PNG/JPEG (every prefix), randomly corrupted bytes, text named .png, empty files,
directories, 16-bit and float images, huge headers (checked without decoding), wrong sizes.
Modes that have one right answer are converted, equal to PIL's own conversion: RGBA (alpha
dropped), palette (with and without transparency), LA, 1-bit, CMYK, 16-bit RGB, and gray <->
RGB as the model needs. In `predict_files` every other file still gets its prediction.
"""

import resource
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxconv.predict import ImageError, read_image
from jaxconv.predict.images import MAX_PIXELS

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (8, 8), dtype=np.uint8)


def _save(path, image: Image.Image, **kw):
    image.save(path, **kw)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width, height, bit_depth, color_type, raw: bytes) -> bytes:
    """A PNG from its header fields and raw (filter byte + row) data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b""))


def _read_error(path, channels=3) -> str:
    with pytest.raises(ImageError) as excinfo:
        read_image(path, channels)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message and "Traceback" not in message
    return message


# ---------------------------------------------------------------- broken files


@pytest.mark.parametrize("ext, kw", [("png", {}), ("jpg", {"quality": 90})])
def test_every_truncation_is_an_image_error_or_the_full_image(tmp_path, ext, kw):
    full = _save(tmp_path / f"full.{ext}", Image.fromarray(RGB), **kw)
    data, want = full.read_bytes(), read_image(full, 3)
    cut = tmp_path / f"cut.{ext}"
    decoded = []
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        try:
            got = read_image(cut, 3)
        except ImageError as e:
            assert str(e).startswith(f"{cut}: ") and "\n" not in str(e)
        else:  # only the trailer is missing: every pixel must be there
            np.testing.assert_array_equal(got, want)
            decoded.append(n)
    # PIL checks neither the zlib checksum nor IEND: a PNG decodes without its last ~20 bytes.
    assert all(n >= len(data) - 20 for n in decoded), decoded


@pytest.mark.parametrize("ext, kw", [("png", {}), ("jpg", {"quality": 90})])
def test_corrupted_bytes_decode_or_raise_image_error(tmp_path, ext, kw):
    # JPEG entropy data decodes to garbage pixels without any error; that is not detectable.
    data = _save(tmp_path / f"full.{ext}", Image.fromarray(RGB), **kw).read_bytes()
    rng = np.random.default_rng(1)
    bad = tmp_path / f"bad.{ext}"
    outcomes = {"decoded": 0, "ImageError": 0}
    for _ in range(150):
        mutated = bytearray(data)
        for i in rng.integers(0, len(data), rng.integers(1, 4)):
            mutated[i] = rng.integers(0, 256)
        bad.write_bytes(bytes(mutated))
        try:
            image = read_image(bad, 3)
        except ImageError as e:
            assert str(e).startswith(f"{bad}: ")
            outcomes["ImageError"] += 1
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
            outcomes["decoded"] += 1
    assert outcomes["ImageError"] > 0


@pytest.mark.parametrize("name, content, message", [
    ("notes.png", b"just some text\n", "not an image file PIL can read"),
    ("empty.png", b"", "not an image file PIL can read"),
    ("random.jpg", bytes(np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8)),
     "not an image file PIL can read"),
    ("zero-width.png", _png(0, 5, 8, 0, b""), "not an image file PIL can read"),
    ("short-ihdr.png", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", bytes(12)),
     "unreadable image (Truncated IHDR chunk)"),  # PIL raised a bare ValueError
], ids=["text", "empty", "random-bytes", "zero-width", "short-ihdr"])
def test_not_an_image(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    assert message in _read_error(path)


def test_directory_and_missing_file(tmp_path):
    assert "unreadable image" in _read_error(tmp_path)
    assert "no such file" in _read_error(tmp_path / "missing.png")


@pytest.mark.parametrize("mode, array", [
    ("I;16", RNG.integers(0, 2**16, (8, 8), dtype=np.uint16)),
    ("F", RNG.normal(size=(8, 8)).astype(np.float32)),
    ("I", RNG.integers(0, 1000, (8, 8)).astype(np.int32)),
])
def test_16_bit_gray_and_float_images_are_refused(tmp_path, mode, array):
    path = _save(tmp_path / ("g.png" if mode == "I;16" else "g.tiff"), Image.fromarray(array))
    assert Image.open(path).mode == mode
    assert f"{mode} images (16-bit/float) are not supported" in _read_error(path, 1)


# ---------------------------------------------------------------- huge headers


def _huge_jpeg(tmp_path, width, height):
    """A real 8x8 JPEG whose SOF0 header claims `width` x `height`."""
    data = bytearray(_save(tmp_path / "small.jpg", Image.fromarray(RGB)).read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("width, height, fmt", [
    (100_000, 100_000, "png"),  # PIL's own guard (an error) fires while opening
    (10_000, 9_000, "png"),  # PIL's warning band, above our limit
    (8_001, 8_000, "png"),  # just above our 64M-pixel limit, below PIL's
    (65_000, 65_000, "jpg"),
])
def test_huge_header_is_refused_before_decoding(tmp_path, width, height, fmt):
    assert width * height > MAX_PIXELS
    if fmt == "png":  # header only: the pixel data is a few bytes, not width * height
        path = tmp_path / "huge.png"
        path.write_bytes(_png(width, height, 8, 0, b"\x00" * 16))
    else:
        path = _huge_jpeg(tmp_path, width, height)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    message = _read_error(path)
    assert time.perf_counter() - start < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 64 * 1024  # < 64 MiB
    assert f"larger than the {MAX_PIXELS:,}-pixel limit" in message


# ---------------------------------------------------------------- modes that convert


@pytest.mark.parametrize("make", [
    lambda: Image.fromarray(RGB),
    lambda: Image.fromarray(GRAY),
    lambda: Image.fromarray(np.dstack([RGB, GRAY]), "RGBA"),
    lambda: Image.fromarray(np.dstack([GRAY, GRAY[::-1]]), "LA"),
    lambda: Image.fromarray(GRAY > 128),
    lambda: Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16),
], ids=["RGB", "L", "RGBA", "LA", "1", "P"])
@pytest.mark.parametrize("channels", [1, 3])
def test_modes_convert_like_pil(tmp_path, make, channels):
    image = make()
    path = _save(tmp_path / "x.png", image)
    got = read_image(path, channels)
    want = np.asarray(Image.open(path).convert("L" if channels == 1 else "RGB"))
    assert got.shape == (8, 8, channels) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want.reshape(got.shape))


def test_palette_with_transparency_converts_without_warning(tmp_path):
    image = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    path = _save(tmp_path / "t.png", image, transparency=bytes([0, 128] + [255] * 14))
    got = read_image(path, 3)  # warnings are errors in this suite
    np.testing.assert_array_equal(got, np.asarray(Image.open(path).convert("RGBA"))[..., :3])


def test_cmyk_jpeg_and_16_bit_rgb_png(tmp_path):
    cmyk = _save(tmp_path / "c.jpg", Image.fromarray(RGB).convert("CMYK"), quality=95)
    np.testing.assert_array_equal(read_image(cmyk, 3), np.asarray(Image.open(cmyk).convert("RGB")))
    deep = RNG.integers(0, 2**16, (4, 5, 3), dtype=np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in deep)
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png(5, 4, 16, 2, raw))
    np.testing.assert_array_equal(read_image(path, 3), deep >> 8)  # PIL keeps the high byte


def test_rgb_file_for_a_gray_model_is_pil_luma(tmp_path):
    path = _save(tmp_path / "rgb.png", Image.fromarray(RGB))
    want = np.asarray(Image.fromarray(RGB).convert("L"))  # ITU-R 601-2 luma
    np.testing.assert_array_equal(read_image(path, 1)[..., 0], want)
    gray = _save(tmp_path / "gray.png", Image.fromarray(GRAY))
    np.testing.assert_array_equal(read_image(gray, 3), np.repeat(GRAY[..., None], 3, axis=-1))


def test_channels_other_than_1_or_3_are_a_caller_error(tmp_path):
    path = _save(tmp_path / "rgb.png", Image.fromarray(RGB))
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 4"):
        read_image(path, 4)


# ---------------------------------------------------------------- predict_files




def test_bad_files_do_not_stop_the_good_ones(tmp_path, predictor):
    good_gray = _save(tmp_path / "gray.png", Image.fromarray(GRAY))
    good_rgb = _save(tmp_path / "rgb.jpg", Image.fromarray(RGB), quality=95)  # -> gray
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good_gray.read_bytes()[:40])
    text = tmp_path / "text.png"
    text.write_text("hello")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png(100_000, 100_000, 8, 0, b"\x00"))
    wrong_size = _save(tmp_path / "big.png", Image.fromarray(np.zeros((9, 8), np.uint8)))
    deep = _save(tmp_path / "deep.png", Image.fromarray(GRAY.astype(np.uint16) * 257))
    paths = [truncated, good_gray, text, tmp_path, empty, good_rgb, huge, wrong_size, deep,
             tmp_path / "missing.png"]
    results = predictor.predict_files([str(p) for p in paths], top_k=3)
    assert [r.file for r in results] == [str(p) for p in paths]
    good = {str(good_gray): GRAY, str(good_rgb): np.asarray(Image.open(good_rgb).convert("L"))}
    want = predictor.predict(np.stack(list(good.values()))[..., None], top_k=3)
    for result in results:
        if result.file in good:
            assert result.error is None
            assert result.top_k == want[list(good).index(result.file)]
        else:
            assert result.top_k == () and result.error.startswith(f"{result.file}: ")
            assert "\n" not in result.error
    errors = {r.file: r.error for r in results}
    assert "is 8x9 (WxH), the model expects 8x8" in errors[str(wrong_size)]
    assert "pixel limit" in errors[str(huge)]
    assert "not supported" in errors[str(deep)]
