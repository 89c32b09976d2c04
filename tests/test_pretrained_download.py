"""jaxconv.transfer.download: a local HTTP server stands in for download.pytorch.org."""

import functools
import hashlib
import http.server
import threading

import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxconv.models import VGG
from jaxconv.pretrained import TORCHVISION_URLS, DownloadError, download, load
from jaxconv.transfer.download import expected_hash

PAYLOAD = b"jaxconv test weights " * 1000


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list  # set per server

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    """Serves `tmp_path / "www"` on 127.0.0.1; yields (base URL, folder, requested paths)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler.requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _serve(root, payload, stem="weights", ext="pth", prefix=None):
    """Writes `payload` as `<stem>-<sha256 prefix>.<ext>`; returns the file name."""
    digest = hashlib.sha256(payload).hexdigest()
    name = f"{stem}-{prefix or digest[:8]}.{ext}"
    (root / name).write_bytes(payload)
    return name


def test_download_checks_hash_prefix_and_caches(server, tmp_path, capsys):
    base, root, requests = server
    name = _serve(root, PAYLOAD)
    cache = tmp_path / "cache"
    path = download(f"{base}/{name}", cache, progress=True)
    assert path == cache / name and path.read_bytes() == PAYLOAD
    assert "100%" in (bar := capsys.readouterr().err) and "20.5k/20.5k" in bar  # 21,000 B
    assert download(f"{base}/{name}", cache, progress=False) == path  # cache hit
    assert requests == [f"/{name}"]
    assert sorted(p.name for p in cache.iterdir()) == [name]  # no temporary files left


def test_download_full_sha256(server, tmp_path):
    base, root, _ = server
    name = _serve(root, PAYLOAD, prefix="0000abcd")  # the name's prefix is overridden
    full = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(f"{base}/{name}", tmp_path, sha256=full.upper(), progress=False).is_file()


@pytest.mark.parametrize("sha256", [None, "f" * 64])
def test_corrupt_download_is_rejected_and_not_cached(server, tmp_path, sha256):
    base, root, _ = server
    name = _serve(root, PAYLOAD, prefix="deadbeef")
    actual = hashlib.sha256(PAYLOAD).hexdigest()
    want = "deadbeef..." if sha256 is None else sha256
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=rf"cache path {cache / name}\): expected {want}, "
                                            rf"got {actual}"):
        download(f"{base}/{name}", cache, sha256=sha256, progress=False)
    assert list(cache.iterdir()) == []


def test_download_errors(server, tmp_path):
    base, _, _ = server
    with pytest.raises(DownloadError, match=r"could not download .*/missing-12345678.pth: "
                                            r"HTTP Error 404"):
        download(f"{base}/missing-12345678.pth", tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(ValueError, match="sha256 must be 8 to 64 hex digits"):
        download(f"{base}/x.pth", tmp_path, sha256="xyz")


def test_expected_hash_follows_torch_hub_names():
    assert expected_hash(TORCHVISION_URLS["alexnet"]) == "7be5be79"
    assert expected_hash(TORCHVISION_URLS["vgg11"]) == "8a719046"
    assert expected_hash(TORCHVISION_URLS["vgg16"]) == "397923af"
    assert expected_hash("https://host/plain.pth") is None
    assert expected_hash("https://host/plain.pth", "ABCDEF12") == "abcdef12"


def test_load_downloads_then_imports(server, tmp_path):
    # A tiny VGG-11 state dict, torchvision's keys and (out, in, kh, kw) shapes, no torch.
    rng = np.random.default_rng(0)
    channels, hidden, shapes, cin = (2, 2, 3, 3, 3), 4, {}, 3
    convs = zip([0, 3, 6, 8, 11, 13, 16, 18], [2, 2, 3, 3, 3, 3, 3, 3])
    for index, cout in convs:
        shapes[f"features.{index}"] = (cout, cin, 3, 3)
        cin = cout
    shapes.update({"classifier.0": (hidden, cin * 49), "classifier.3": (hidden, hidden),
                   "classifier.6": (6, hidden)})
    state = {}
    for prefix, shape in shapes.items():
        state[f"{prefix}.weight"] = rng.standard_normal(shape).astype(np.float32)
        state[f"{prefix}.bias"] = rng.standard_normal(shape[0]).astype(np.float32)
    save_file(state, tmp_path / "tiny.safetensors")
    base, root, requests = server
    name = _serve(root, (tmp_path / "tiny.safetensors").read_bytes(), "vgg11", "safetensors")
    model = load("vgg11", tmp_path / "cache", url=f"{base}/{name}", progress=False,
                 num_classes=6, channels=channels, hidden=hidden)
    assert isinstance(model, VGG) and requests == [f"/{name}"]
    np.testing.assert_array_equal(model.conv4_1.kernel[...],
                                  state["features.11.weight"].transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match=r"unknown pretrained architecture 'vgg19'"):
        load("vgg19", tmp_path, progress=False)
