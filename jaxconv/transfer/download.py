"""Downloading torchvision's published weights into a local cache, checked by SHA-256.

As `torch.hub.load_state_dict_from_url` does: a file is fetched once into the cache directory
(default `~/.cache/jaxconv`), its SHA-256 compared with the full hash when one is given, else
with the prefix torchvision embeds in its file names (`alexnet-owt-7be5be79.pth` -> a hash
starting `7be5be79`). The download goes to a temporary file in the cache directory and is
renamed into place only after the check, so the cache never holds a partial or corrupt file,
and a cached file (already checked) is used without a new request.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.parse
import urllib.request
from os import PathLike
from pathlib import Path

from tqdm import tqdm

from jaxconv.models.base import Classifier
from jaxconv.transfer.torch_import import architecture, from_torch

logger = logging.getLogger(__name__)

# torchvision's ImageNet weights (IMAGENET1K_V1) for the names `from_torch` knows.
TORCHVISION_URLS: dict[str, str] = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg11": "https://download.pytorch.org/models/vgg11-8a719046.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,64})\.")  # torch.hub's convention (>= 8 hex digits).
CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(OSError):
    """A download that failed, or whose SHA-256 does not match the expected one."""


def default_cache_dir() -> Path:
    """`~/.cache/jaxconv`."""
    return Path.home() / ".cache" / "jaxconv"


def expected_hash(url: str, sha256: str | None = None) -> str | None:
    """The hash (or hash prefix) a download from `url` must have, or None if none is known.

    Args:
      url: the file's URL; its file name may embed a prefix (`name-<hex>.ext`).
      sha256: the full hash (or a prefix of >= 8 hex digits); wins over the file name's.

    Raises:
      ValueError: `sha256` is not 8 to 64 hex digits.
    """
    if sha256 is not None:
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
            raise ValueError(f"sha256 must be 8 to 64 hex digits, got {sha256!r}")
        return sha256.lower()
    match = HASH_IN_NAME.search(Path(urllib.parse.urlparse(url).path).name)
    return match.group(1) if match else None


def _fetch(url: str, file, desc: str, progress: bool) -> str:
    """Streams `url` into the open binary `file`; returns the SHA-256 hex digest."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        total = response.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  unit_divisor=1024, desc=desc, disable=not progress) as bar:
            while chunk := response.read(CHUNK):
                file.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def download(url: str, cache_dir: str | PathLike | None = None, sha256: str | None = None,
             progress: bool = True) -> Path:
    """Downloads `url` into `cache_dir` once, checking its SHA-256; returns the local path.

    Args:
      url: where to fetch the file (http, https or file URLs, through `urllib`).
      cache_dir: directory to keep it in; default `~/.cache/jaxconv`.
      sha256: the expected hash, full or a prefix; default the prefix in the file name (no
        check, with a logged warning, when there is none).
      progress: show a tqdm progress bar (on stderr).

    Returns:
      `cache_dir / <file name from the URL>`. If it exists it is returned without a request.

    Raises:
      DownloadError: the request failed (URL and reason), or the file's SHA-256 does not
        match (URL, cache path, expected and actual hash); nothing is left in the cache.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise ValueError(f"cannot name a cache file after URL {url!r} (no file name)")
    target = cache / name
    want = expected_hash(url, sha256)
    if target.is_file():
        logger.info("using cached %s", target)
        return target
    if want is None:
        logger.warning("no SHA-256 known for %s; its download is not checked", url)
    cache.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=cache, prefix=f"{name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            try:
                actual = _fetch(url, file, name, progress)
            except (OSError, http.client.HTTPException, ValueError) as e:
                raise DownloadError(f"could not download {url}: {e}") from e
        if want is not None and not actual.startswith(want):
            raise DownloadError(
                f"SHA-256 mismatch for {url} (cache path {target}): expected "
                f"{want}{'...' if len(want) < 64 else ''}, got {actual}; the download was "
                "discarded")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    logger.info("downloaded %s to %s", url, target)
    return target


def load(name: str, cache_dir: str | PathLike | None = None, url: str | None = None,
         sha256: str | None = None, progress: bool = True, num_classes: int = 1000, *,
         seed: int = 0, dtype=None, **model_kwargs) -> Classifier:
    """torchvision's pretrained AlexNet / VGG as a jaxconv model: download (once), then import.

    Args:
      name: "alexnet", "vgg11" or "vgg16".
      cache_dir: where downloads are kept; default `~/.cache/jaxconv`.
      url: another source for the state dict (a mirror, a fine-tuned file); default
        `TORCHVISION_URLS[name]`.
      sha256: expected hash (full or prefix); default the prefix in the URL's file name.
      progress: show a download progress bar.
      num_classes, seed, dtype, **model_kwargs: as in `from_torch` (a different
        `num_classes` gives a freshly initialised head; `dtype="bfloat16"` computes in
        bfloat16 with float32 parameters).

    Returns:
      The model in eval mode.

    Raises:
      ValueError: unknown `name` (valid names listed).
      DownloadError: the download failed or its checksum did not match.
      WeightImportError: as in `from_torch`.

    Examples:
      >>> from jaxconv.pretrained import load
      >>> model = load("alexnet")  # 233 MB, then cached  # doctest: +SKIP
    """
    architecture(name)
    if url is None:
        if name not in TORCHVISION_URLS:
            raise ValueError(f"no known URL for {name!r}; pass url= (known: "
                             f"{sorted(TORCHVISION_URLS)})")
        url = TORCHVISION_URLS[name]
    path = download(url, cache_dir, sha256=sha256, progress=progress)
    return from_torch(name, path, num_classes, seed=seed, dtype=dtype, **model_kwargs)
