"""``python -m jaxconv.data.prepare`` without internet: one line, in seconds (no retries)."""

import socket
import time

import pytest

from jaxconv.data import prepare


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # Nothing listens there once the socket is closed.


def test_unreachable_download_host_fails_in_one_line_within_seconds():
    port = _closed_port()
    urls = [f"https://127.0.0.1:{port}/mnist/train.gz", f"https://127.0.0.1:{port}/mnist/t.gz"]
    start = time.monotonic()
    with pytest.raises(ConnectionError) as err:
        prepare.check_reachable("mnist", urls)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert f"cannot download 'mnist': 127.0.0.1:{port} is unreachable" in message
    assert "--dataset mnist5k" in message and "\n" not in message


def test_reachable_host_passes():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        prepare.check_reachable("mnist", [f"http://127.0.0.1:{server.getsockname()[1]}/x"])
