"""Datasets in a bucket (``data_dir=gs://...``), against a Cloud Storage API on 127.0.0.1.

`jaxconv.data.bucket_cache`: the dataset is copied once to a local cache, byte for byte, then
verified on every use (a truncated file, a missing manifest, a copy killed midway, a dataset
changed in the bucket: copied again); a dataset missing from the bucket and a missing bucket
are one line; training with the bucket path gives the run a local data_dir gives; ``prepare
--data_dir gs://...`` uploads.
"""

import filecmp
import json
import os
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from jaxconv import data, run_files, runs
from jaxconv.data import bucket_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder (``JAXCONV_DATA_CACHE``) for this test."""
    root = tmp_path / "cache"
    monkeypatch.setenv("JAXCONV_DATA_CACHE", str(root))
    return root


@pytest.fixture
def bucket_digits(gcs_dir, digits_dir):
    """A ``gs://`` data_dir holding the digits dataset prepared in `digits_dir`."""
    data.ensure_prepared("digits", digits_dir)
    bucket_cache.upload(digits_dir, "digits", gcs_dir)
    return gcs_dir


def _files(folder):
    return sorted(os.path.relpath(os.path.join(r, n), folder)
                  for r, _, names in os.walk(folder) for n in names)


def _same_tree(copy, original):
    names = [n for n in _files(copy) if n != bucket_cache.MANIFEST]
    assert names == _files(original)
    assert all(filecmp.cmp(os.path.join(copy, n), os.path.join(original, n), shallow=False)
               for n in names)


def _stamps(folder):
    return {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in _files(folder)}


def test_copied_once_byte_for_byte_then_reused(bucket_digits, digits_dir, cache):
    local = bucket_cache.local_copy("digits", bucket_digits)
    bucket_path = bucket_digits.split("://", 1)[1]
    assert local == os.path.join(cache, *bucket_path.split("/"))
    _same_tree(os.path.join(local, "digits"), os.path.join(digits_dir, "digits"))
    manifest = json.loads((cache.joinpath(*bucket_path.split("/"), "digits",
                                          bucket_cache.MANIFEST)).read_text())
    train = "1.0.0/digits-train.array_record-00000-of-00001"
    assert manifest[train] == os.path.getsize(os.path.join(digits_dir, "digits", train))
    before = _stamps(local)
    assert bucket_cache.local_copy("digits", bucket_digits) == local
    assert _stamps(local) == before  # Verified, not copied again.
    info = data.ensure_prepared("digits", bucket_digits)
    assert (info.num_train, info.num_test) == (1500, 297)


def test_a_damaged_or_outdated_copy_is_copied_again(bucket_digits, digits_dir, cache, caplog):
    local = os.path.join(bucket_cache.local_copy("digits", bucket_digits), "digits")
    train = os.path.join(local, "1.0.0", "digits-train.array_record-00000-of-00001")
    with open(train, "r+b") as f:  # Truncated.
        f.truncate(100)
    with caplog.at_level("WARNING"):
        bucket_cache.local_copy("digits", bucket_digits)
    assert "has another size than in the bucket" in caplog.text
    _same_tree(local, os.path.join(digits_dir, "digits"))

    os.remove(os.path.join(local, bucket_cache.MANIFEST))  # A copy of unknown completeness.
    bucket_cache.local_copy("digits", bucket_digits)
    assert os.path.exists(os.path.join(local, bucket_cache.MANIFEST))

    run_files.write_atomic(f"{bucket_digits}/digits/1.0.0/extra.txt", "new")  # Changed there.
    caplog.clear()
    with caplog.at_level("WARNING"):
        bucket_cache.local_copy("digits", bucket_digits)
    assert "the bucket's files changed since it was copied" in caplog.text
    with open(os.path.join(local, "1.0.0", "extra.txt")) as f:
        assert f.read() == "new"


KILLED_COPY = textwrap.dedent("""
    import os, sys
    from google.cloud.storage import Blob
    from jaxconv.data import bucket_cache
    download, calls = Blob.download_to_filename, []
    def download_then_die(self, *args, **kwargs):  # kill -9 after the second file.
        download(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            os._exit(9)
    Blob.download_to_filename = download_then_die
    bucket_cache.local_copy("digits", sys.argv[1])
""")


def test_a_copy_killed_midway_is_never_read(bucket_digits, digits_dir, cache):
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", KILLED_COPY, bucket_digits], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    parent = bucket_cache.local_data_dir(bucket_digits)
    left = os.listdir(parent)
    assert len(left) == 1 and left[0].startswith(".digits.copy-")  # Only its temporary folder.
    assert len(_files(os.path.join(parent, left[0]))) == 2
    local = bucket_cache.local_copy("digits", bucket_digits)
    _same_tree(os.path.join(local, "digits"), os.path.join(digits_dir, "digits"))
    assert left[0] in os.listdir(parent)  # Recent: it could be another process's copy.
    old = time.time() - bucket_cache.STALE_COPY_S - 10
    os.utime(os.path.join(parent, left[0]), (old, old))
    run_files.write_atomic(f"{bucket_digits}/digits/1.0.0/extra.txt", "new")  # Copy again.
    bucket_cache.local_copy("digits", bucket_digits)
    assert sorted(os.listdir(parent)) == ["digits"]  # The killed copy's folder removed.


def test_missing_dataset_and_missing_bucket_are_one_line(gcs_dir, cache):
    with pytest.raises(FileNotFoundError) as err:
        data.ensure_prepared("mnist", gcs_dir)
    assert str(err.value) == (
        f"dataset 'mnist' is not prepared in {gcs_dir} (no files under {gcs_dir}/mnist/); "
        f"prepare it there once with: python -m jaxconv.data.prepare --dataset mnist "
        f"--data_dir {gcs_dir}")
    run_files.write_atomic(f"{gcs_dir}/digits/1.0.0/features.json", "{}")  # Upload cut short.
    with pytest.raises(FileNotFoundError, match="no dataset_info.json .an unfinished upload"):
        data.ensure_prepared("digits", gcs_dir)
    start = time.monotonic()
    with pytest.raises(bucket_cache.DataBucketError) as err:
        data.ensure_prepared("digits", "gs://no-such-bucket/tfds")
    assert time.monotonic() - start < 10
    assert str(err.value) == ("bucket gs://no-such-bucket does not exist (or is not visible "
                              "to these credentials)")
    assert not os.path.exists(cache)  # Nothing copied.


def test_training_from_a_bucket_data_dir_equals_a_local_one(bucket_digits, trained_run,
                                                             tmp_path, cache):
    from configs import default
    from jaxconv import training

    config = default.get_config()
    config.data_dir = bucket_digits
    config.num_train_steps = 30  # As `trained_run` (local data_dir).
    config.progress_bar = False
    training.train_and_evaluate(config, tmp_path / "run")
    local, remote = runs.read_metrics(trained_run), runs.read_metrics(tmp_path / "run")
    assert remote["test_accuracy"] == local["test_accuracy"]
    expected = jax.tree_util.tree_leaves(runs.restore_params(trained_run))
    for a, b in zip(jax.tree_util.tree_leaves(runs.restore_params(tmp_path / "run")), expected,
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_prepare_uploads_to_the_bucket_and_a_missing_dataset_stops_train_py(gcs, gcs_dir,
                                                                             cache):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, "-m", "jaxconv.data.prepare", "--dataset", "digits",
               "--data_dir", gcs_dir]
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Prepared digits: 1500 train / 297 test." in proc.stdout
    from google.cloud import storage

    prefix = gcs_dir.split("/", 3)[3] + "/digits/1.0.0/"
    blobs = {b.name[len(prefix):]: b.generation
             for b in storage.Client().list_blobs(gcs.bucket, prefix=prefix)}
    assert sorted(blobs) == ["dataset_info.json", "digits-test.array_record-00000-of-00001",
                             "digits-train.array_record-00000-of-00001", "features.json",
                             "label.labels.txt"]
    assert blobs["dataset_info.json"] == max(blobs.values())  # Uploaded last.

    proc = subprocess.run([sys.executable, "train.py", "--config", "configs/default.py",
                           "--workdir", str(cache.parent / "run"),
                           f"--config.data_dir={gcs_dir}", "--config.dataset=mnist5k"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert errors == [f"error: dataset 'mnist5k' is not prepared in {gcs_dir} (no files under "
                      f"{gcs_dir}/mnist5k/); prepare it there once with: python -m "
                      f"jaxconv.data.prepare --dataset mnist5k --data_dir {gcs_dir}"]
