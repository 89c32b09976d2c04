"""Datasets prepared in a bucket (``data_dir=gs://...``), read from a verified local copy.

Why a copy (measured with array_record 0.8.6, tensorflow-datasets 4.9.10): array_record's
bundled C++ Cloud Storage client can read ``gs://`` files directly, but it ignores
``STORAGE_EMULATOR_HOST`` (it needs ``CLOUD_STORAGE_EMULATOR_ENDPOINT``), fetches one record
per HTTP request (1,500 digits records: 1.7 s over loopback, against 0.02 s to copy the whole
0.46 MB dataset once and 3 ms to verify the copy at a later start), and without network it
retries silently for minutes. So the dataset's files are copied once to a local cache and read
from there at local-disk speed; the user gives only the bucket path.

- Where: ``$JAXCONV_DATA_CACHE/<bucket>/<path>`` (default ``$XDG_CACHE_HOME/jaxconv/datasets``,
  i.e. ``~/.cache/jaxconv/datasets``) holds ``<tfds_name>/...`` as in the bucket; that local
  folder is then the TFDS ``data_dir``. Only ``<data_dir>/<tfds_name>/`` is copied.
- Verified on every use: the bucket's objects under ``<tfds_name>/`` are listed (one request)
  and their names and sizes must equal those the copy's manifest (`MANIFEST`, written with
  it) records and those of the local files; any difference (a file truncated or missing, the
  dataset prepared again in the bucket) copies it again, with a warning.
- Atomic: a copy is downloaded into a temporary folder beside it (each object checked by
  google-cloud-storage against its MD5/CRC32C), then renamed into place in one step, so a
  copy killed midway is never read (its temporary folder is removed by a later copy after
  `STALE_COPY_S`). Processes of one machine that copy at once each download; the first
  rename wins and the others drop theirs.
- Never written: training reads the bucket and writes nothing there. A dataset that is not
  in the bucket is one ``FileNotFoundError`` line giving the command that prepares it there
  (`upload`, used by ``python -m jaxconv.data.prepare --data_dir gs://...``).
- Offline with a complete copy: used, with a warning. Not enough local disk: one line naming
  the sizes (set ``JAXCONV_DATA_CACHE`` to a larger disk).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from absl import logging

from jaxconv import run_files

MANIFEST = ".jaxconv-copy.json"  # {relative path: size} of the objects the copy was made of.
INFO_FILE = "dataset_info.json"  # TFDS writes it last: a dataset without it is unfinished.
TIMEOUT_S = 15.0  # Deadline of each listing request, retries included (offline: fail fast).
STALE_COPY_S = 3600.0  # A temporary copy folder untouched this long was left by a killed copy.
PREPARE_COMMAND = "python -m jaxconv.data.prepare --dataset {name} --data_dir {data_dir}"


class DataBucketError(OSError):
    """The bucket of a ``gs://`` data_dir cannot be read, or the copy cannot be made locally."""


def cache_root(env: dict[str, str] | None = None) -> str:
    """The cache folder (module docstring)."""
    env = os.environ if env is None else env
    if env.get("JAXCONV_DATA_CACHE"):
        return os.path.abspath(os.path.expanduser(env["JAXCONV_DATA_CACHE"]))
    root = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "jaxconv", "datasets")


def _split(data_dir: str) -> tuple[str, str]:
    bucket = run_files.bucket_of(data_dir)
    return bucket, data_dir.split("://", 1)[1][len(bucket):].strip("/")


def local_data_dir(data_dir: str) -> str:
    """The local folder that stands for ``gs://`` `data_dir` (``<cache>/<bucket>/<path>``)."""
    bucket, path = _split(data_dir)
    return os.path.join(cache_root(), bucket, *filter(None, path.split("/")))


def _bucket(bucket: str):
    from google.cloud import storage  # Optional: only gs:// data_dirs need it.

    return storage.Client().bucket(bucket)


def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(TIMEOUT_S)


def _listing(data_dir: str, tfds_name: str) -> dict[str, int]:
    """{path relative to ``<data_dir>/<tfds_name>``: size} of the bucket's objects."""
    bucket, path = _split(data_dir)
    prefix = f"{path}/{tfds_name}/" if path else f"{tfds_name}/"
    blobs = _bucket(bucket).client.list_blobs(bucket, prefix=prefix, retry=_retry(),
                                              timeout=TIMEOUT_S)
    return {b.name[len(prefix):]: b.size for b in blobs if not b.name.endswith("/")}


def _problem(target: str, listing: dict[str, int] | None) -> str | None:
    """Why the copy at `target` cannot be used as a copy of `listing` (None: it can;
    `listing` None: check the copy against its own manifest only)."""
    try:
        with open(os.path.join(target, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return "no complete copy" if not os.path.exists(target) else "no manifest"
    if listing is not None and manifest != listing:
        return "the bucket's files changed since it was copied"
    for rel, size in manifest.items():
        local = os.path.join(target, rel)
        if not os.path.isfile(local) or os.path.getsize(local) != size:
            return f"{rel} is missing or has another size than in the bucket"
    return None


def _check_space(parent: str, listing: dict[str, int], data_dir: str) -> None:
    need, free = sum(listing.values()), shutil.disk_usage(parent).free
    if need > free:
        raise DataBucketError(
            f"not enough space in {parent} to copy {data_dir}: {need / 1e9:.2f} GB needed, "
            f"{free / 1e9:.2f} GB free; set JAXCONV_DATA_CACHE to a folder on a larger disk")


def _remove_stale_copies(parent: str, tfds_name: str) -> None:
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.startswith(f".{tfds_name}.copy-") and (
                time.time() - os.path.getmtime(path) > STALE_COPY_S):
            shutil.rmtree(path, ignore_errors=True)


def _download(data_dir: str, tfds_name: str, listing: dict[str, int], target: str) -> None:
    """Copies the objects of `listing` into a temporary folder, then renames it to `target`."""
    bucket, path = _split(data_dir)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_copies(parent, tfds_name)
    _check_space(parent, listing, data_dir)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{tfds_name}.copy-")
    try:
        handle = _bucket(bucket)
        for rel in sorted(listing):
            local = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            name = "/".join(filter(None, [path, tfds_name, rel]))
            handle.blob(name).download_to_filename(local, retry=_retry(), timeout=TIMEOUT_S)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(listing, f, sort_keys=True)
        if os.path.exists(target):  # An outdated or damaged copy: out of the way first.
            old = tempfile.mkdtemp(dir=parent, prefix=f".{tfds_name}.copy-old-")
            os.rename(target, os.path.join(old, "copy"))
            shutil.rmtree(old, ignore_errors=True)
        os.rename(tmp, target)
    except OSError:
        if _problem(target, listing) is not None:
            raise
        logging.info("another process copied %s first", target)  # Its copy is complete.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def local_copy(tfds_name: str, data_dir: str) -> str:
    """A local TFDS data_dir holding a verified copy of ``<data_dir>/<tfds_name>/`` (module
    docstring); copies it first if needed.

    Args:
      tfds_name: the dataset's TFDS name (its folder in `data_dir`).
      data_dir: a ``gs://`` TFDS data_dir.

    Returns:
      The local data_dir (`local_data_dir`).

    Raises:
      FileNotFoundError: the dataset is not (completely) prepared in the bucket; the one-line
        message gives the command that prepares it there.
      DataBucketError: the bucket cannot be read (names it and why) and there is no complete
        local copy, or the local disk is too small.
    """
    local = local_data_dir(data_dir)
    target = os.path.join(local, tfds_name)
    bucket = run_files.bucket_of(data_dir)
    try:
        listing = _listing(data_dir, tfds_name)
    except Exception as err:  # noqa: BLE001 - google.api_core and google.auth errors.
        problem = run_files.bucket_problem(bucket, err, action="read objects in",
                                           permissions="storage.objects.list and get")
        if _problem(target, None) is None:
            logging.warning("%s; using the local copy %s", problem, target)
            return local
        raise DataBucketError(problem) from None
    if not any(rel.rsplit("/", 1)[-1] == INFO_FILE for rel in listing):
        found = "no files" if not listing else f"no {INFO_FILE} (an unfinished upload?)"
        raise FileNotFoundError(
            f"dataset {tfds_name!r} is not prepared in {data_dir} ({found} under "
            f"{data_dir.rstrip('/')}/{tfds_name}/); prepare it there once with: "
            f"{PREPARE_COMMAND.format(name=tfds_name, data_dir=data_dir)}")
    why = _problem(target, listing)
    if why is not None:
        if os.path.exists(target):
            logging.warning("copying %s/%s again to %s: %s", data_dir.rstrip("/"), tfds_name,
                            target, why)
        _download(data_dir, tfds_name, listing, target)
    return local


def upload(local_dir: str, tfds_name: str, data_dir: str) -> list[str]:
    """Copies ``<local_dir>/<tfds_name>/`` (a prepared TFDS dataset) to ``gs://`` `data_dir`,
    every file one atomic object write, the ``dataset_info.json`` files last (`local_copy`
    takes a dataset without them for unfinished); returns the written paths."""
    return run_files.upload_dir(os.path.join(local_dir, tfds_name),
                                f"{data_dir.rstrip('/')}/{tfds_name}", last=INFO_FILE)
