"""Files that are not images to decode: refused from their ``stat``, their header, their name.

A FIFO (opening it would wait for a writer forever), a character device and a socket are
refused without being opened; a 7000x7000 PNG given to an 8x8 model is refused from its
header, without decoding its 49 M pixels; a file name with a newline or an escape sequence
stays on one table row (escaped), while ``--json`` keeps the real name.
"""

import json
import os
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxconv.predict import ImageError, read_image
from jaxconv.predict.cli import format_table, printable


def _refused_within_a_second(path) -> str:
    """`read_image`'s error, read in a thread so that a hang fails the test instead of it."""
    outcome = {}

    def read():
        try:
            read_image(path, 1)
        except ImageError as err:
            outcome["error"] = str(err)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=1.0)
    assert not thread.is_alive(), f"read_image({path}) blocked"
    return outcome["error"]


def test_fifo_device_and_socket_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    assert _refused_within_a_second(fifo) == (
        f"{fifo}: unreadable image (not a regular file: a FIFO)")
    assert _refused_within_a_second("/dev/null") == (
        "/dev/null: unreadable image (not a regular file: a character device)")
    path = tmp_path / "s.png"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        assert _refused_within_a_second(path) == (
            f"{path}: unreadable image (not a regular file: a socket)")
    assert _refused_within_a_second(tmp_path) == (
        f"{tmp_path}: unreadable image (not a regular file: a directory)")


def _gray_png(path, width, height, pixel_data=None):
    """An 8-bit gray PNG of `width` x `height`: black (~50 KB at 7000x7000), or with the given
    IDAT bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    if pixel_data is None:
        compressor, row = zlib.compressobj(9), b"\x00" * (width + 1)
        pixel_data = b"".join(compressor.compress(row) for _ in range(height))
        pixel_data += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", pixel_data) + chunk(b"IEND", b""))
    return path


def test_wrong_size_is_refused_from_the_header(tmp_path, predictor):
    expected = "image is 7000x7000 (WxH), the model expects 8x8 like its dataset's images"
    big = _gray_png(tmp_path / "big.png", 7000, 7000)
    start = time.perf_counter()
    [result] = predictor.predict_files([str(big)])
    assert time.perf_counter() - start < 1.0
    assert result.error.startswith(f"{big}: {expected}")
    # Pixel data that is not zlib: decoding would fail before any size check.
    header_only = _gray_png(tmp_path / "header.png", 7000, 7000, b"not zlib")
    [result] = predictor.predict_files([str(header_only)])
    assert result.error.startswith(f"{header_only}: {expected}")
    with pytest.raises(ImageError, match="unreadable image"):  # Decoding it does fail.
        read_image(header_only, 1)
def test_control_characters_in_names_are_escaped_in_the_table(tmp_path, predictor):
    names = [tmp_path / "two\nlines.png", tmp_path / "\x1b[31mred.png", tmp_path / "tab\t.png"]
    for path in names:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, format="PNG")
    missing = str(tmp_path / "gone\r.png")
    results = predictor.predict_files([str(p) for p in names] + [missing], top_k=2)
    table = format_table(results).splitlines()
    assert len(table) == 1 + len(results)
    assert [row.split("  ")[0] for row in table[1:]] == [
        f"{tmp_path}/two\\nlines.png", f"{tmp_path}/\\x1b[31mred.png", f"{tmp_path}/tab\\t.png",
        f"{tmp_path}/gone\\r.png"]
    assert table[-1].endswith("  error: no such file")
    assert all(c.isprintable() for row in table for c in row)
    assert [r["file"] for r in json.loads(json.dumps([r.to_json() for r in results]))] == [
        str(p) for p in names] + [missing]
    assert printable("caf\xe9 \udcff") == "caf\xe9 \\udcff"  # Undecodable byte of a name.
