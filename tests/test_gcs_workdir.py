"""Runs in a bucket, against a Cloud Storage API on 127.0.0.1 (`gcs` fixture, tests/conftest.py).

The path layer's writes on a bucket, the bucket lock (exactly one creator wins, a refreshed lock
holds, a stale one is taken over with a warning, a missing bucket is one line), and a training
run with a ``gs://`` workdir: the same accuracy and parameters as a local one, read back by
`Predictor.from_checkpoint` and the plots, falling back past a corrupt newest checkpoint; a
finished rerun writes nothing.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from jaxconv import run_files, run_history, runs
from jaxconv.training import bucket_lock
from jaxconv.training.workdir import WorkdirBusyError, WorkdirError, WorkdirLock


def _objects(prefix):
    """{``gs://`` path: generation} of the objects under a ``gs://`` prefix, from the server."""
    from google.cloud import storage

    bucket, _, name = prefix.split("://", 1)[1].partition("/")
    return {f"gs://{bucket}/{b.name}": b.generation
            for b in storage.Client().list_blobs(bucket, prefix=name)}


def test_files_on_a_bucket_are_written_whole(gcs_dir):
    path = f"{gcs_dir}/run.json"
    assert not run_files.exists(path)
    with pytest.raises(FileNotFoundError):
        run_files.read_text(path)
    run_files.write_atomic(path, '{"a": 1}')
    run_files.write_atomic(path, '{"a": 2}')
    assert json.loads(run_files.read_text(path)) == {"a": 2}
    stream = f"{gcs_dir}/history.jsonl"
    for i in range(3):  # No append on object storage: each is a whole-object upload.
        run_files.append_line(stream, json.dumps({"kind": "metrics", "step": i}))
    assert run_files.read_text(stream).splitlines() == [
        json.dumps({"kind": "metrics", "step": i}) for i in range(3)]
    assert run_files.listdir(gcs_dir) == ["history.jsonl", "run.json"]
    assert run_files.is_dir(gcs_dir) and run_files.is_file(path)
    run_files.remove(gcs_dir)
    assert not run_files.exists(path)


def test_history_stream_on_a_bucket(gcs_dir):
    writer = run_history.HistoryWriter(gcs_dir)
    writer.start(0)
    writer.metrics(5, {"train_loss": 1.5})
    writer.metrics(10, {"train_loss": float("nan")})
    run_history.mark_done(gcs_dir, run_history.PLOTS_PHASE, 10)
    history = run_history.read(gcs_dir)
    assert [r["step"] for r in history.metrics] == [5, 10]
    assert history.metrics[1]["train_loss"] is None
    assert run_history.is_done(gcs_dir, run_history.PLOTS_PHASE, 10)


def test_second_lock_is_refused_with_the_holders_line(gcs_dir):
    with WorkdirLock(gcs_dir) as held:
        assert f"{gcs_dir}/train.lock" in _objects(gcs_dir)
        with pytest.raises(WorkdirBusyError) as err:
            WorkdirLock(gcs_dir).acquire()
        message = str(err.value)
        assert f"pid {os.getpid()} on host" in message and held.path in message
        assert "\n" not in message
    assert not _objects(gcs_dir)  # Released: the lock object is deleted.
    WorkdirLock(gcs_dir).acquire().release()


def test_exactly_one_of_many_simultaneous_creators_wins(gcs_dir):
    path, results = f"{gcs_dir}/train.lock", []
    locks = [bucket_lock.BucketLock(path) for _ in range(8)]
    barrier = threading.Barrier(len(locks))

    def take(lock):
        barrier.wait()
        try:
            results.append(lock.acquire())
        except bucket_lock.LockBusy:
            results.append(None)

    threads = [threading.Thread(target=take, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 8 and len(winners) == 1
    winners[0].release()


def test_refreshed_lock_holds_and_a_stale_one_is_taken_over(gcs_dir, caplog):
    path = f"{gcs_dir}/train.lock"
    alive = bucket_lock.BucketLock(path, refresh_s=0.2).acquire()
    time.sleep(1.5)
    with pytest.raises(bucket_lock.LockBusy):  # Refreshed within the last 1 s: not stale.
        bucket_lock.BucketLock(path, stale_s=1.0).acquire()
    alive.release()

    stopped = bucket_lock.BucketLock(path, refresh_s=3600).acquire()  # A VM preempted.
    time.sleep(1.5)
    with caplog.at_level("WARNING"):
        taker = bucket_lock.BucketLock(path, stale_s=1.0).acquire()
    assert f"took over the stale lock {path} of pid {os.getpid()}" in caplog.text
    assert "not refreshed for" in caplog.text
    stopped.release()  # Its delete is conditioned on its generation: the new lock stays.
    assert json.loads(run_files.read_text(path))["started"] == taker.record["started"]
    assert taker.generation == _objects(gcs_dir)[path]
    taker.release()


def test_lock_of_a_dead_process_on_this_host_is_taken_over_at_once(gcs_dir, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    path = f"{gcs_dir}/train.lock"
    record = {"pid": int(dead.stdout), "host": socket.gethostname(),
              "started": "2026-01-01T00:00:00+00:00"}
    run_files.write_atomic(path, json.dumps(record))  # As left by a kill -9.
    with caplog.at_level("WARNING"):
        lock = WorkdirLock(gcs_dir).acquire()
    assert "its process is no longer running on this host" in caplog.text
    lock.release()


def test_missing_bucket_is_one_line_within_seconds(gcs):
    start = time.monotonic()
    with pytest.raises(WorkdirError) as err:
        WorkdirLock("gs://no-such-bucket/run").acquire()
    assert time.monotonic() - start < 10
    assert "bucket gs://no-such-bucket does not exist" in str(err.value)
    assert "\n" not in str(err.value)


def _leaves(params):
    return jax.tree_util.tree_leaves_with_path(params)


def test_train_in_a_bucket_like_a_local_workdir(gcs_dir, trained_run, digits_dir, caplog):
    from configs import default
    from jaxconv import plots, training
    from jaxconv.predict import Predictor

    config = default.get_config()
    config.data_dir = digits_dir
    config.num_train_steps = 30  # As `trained_run` (local), with a checkpoint every 10.
    config.checkpoint_every_steps = 10
    config.progress_bar = False
    training.train_and_evaluate(config, gcs_dir)
    local, remote = runs.read_metrics(trained_run), runs.read_metrics(gcs_dir)
    assert remote["test_accuracy"] == local["test_accuracy"]
    expected, got = _leaves(runs.restore_params(trained_run)), _leaves(runs.restore_params(gcs_dir))
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (path, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
    names = _objects(gcs_dir)
    assert {f"{gcs_dir}/{n}" for n in ("run.json", "metrics.json", "history.jsonl")} <= set(names)
    assert any(n.startswith(f"{gcs_dir}/events.out.tfevents") for n in names)  # TensorBoard.
    assert f"{gcs_dir}/train.lock" not in names  # Released.

    # A finished run started again writes nothing (no object is added or rewritten).
    with pytest.raises(training.RunComplete):
        training.train_and_evaluate(config, gcs_dir)
    assert _objects(gcs_dir) == names

    # Readers: the predictor and the plots read the run in the bucket.
    predictor = Predictor.from_checkpoint(gcs_dir)
    assert predictor.class_names == Predictor.from_checkpoint(trained_run).class_names
    paths = plots.write_all(gcs_dir)
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "filters.png", "curves.png", "confusion.png", "distortions.png", "feature_maps.png"]
    assert all(run_files.is_file(p) for p in paths)

    # A corrupt newest checkpoint: readers fall back to the older one with a warning.
    steps = runs.complete_steps(f"{gcs_dir}/checkpoints")
    assert steps == [20, 30]
    newest = f"{gcs_dir}/checkpoints/30/state/"
    for name in [n for n in names if n.startswith(newest) and "/d/" in n]:
        run_files.write_atomic(name, "garbage")
    with caplog.at_level("WARNING"):
        params = runs.restore_params(gcs_dir)
    assert "using the older checkpoint" in caplog.text and "checkpoints/20" in caplog.text
    assert jax.tree.structure(params) == jax.tree.structure(runs.restore_params(trained_run))


def test_a_trainer_whose_lock_is_taken_over_stops_before_its_next_checkpoint(gcs_dir,
                                                                              digits_dir):
    from configs import default
    from jaxconv import training

    lock, taker = f"{gcs_dir}/train.lock", {"pid": 4242, "host": "other-vm",
                                             "started": "2026-12-05T10:00:00+00:00"}

    class TakeOver(training.Hooks):
        """Another trainer takes the lock over after step 13 (as after a VM suspended for
        longer than STALE_S: one write, no precondition, that this trainer did not make)."""

        def on_step(self, step):
            if step == 13:
                done = f"{gcs_dir}/checkpoints/10/commit_success.txt"
                while done not in _objects(gcs_dir):  # Checkpoint 10 finishes (Orbax's thread).
                    time.sleep(0.05)
                run_files.write_atomic(lock, json.dumps(taker))
                self.before = _objects(gcs_dir)

    config = default.get_config()
    config.data_dir = digits_dir
    config.num_train_steps = 30
    config.checkpoint_every_steps = 5
    config.log_every_steps = 3  # Logs at 12 and 15; checkpoints at 10 and 15.
    config.progress_bar = False
    hook = TakeOver()
    with pytest.raises(training.WorkdirLockLost) as err:
        training.train_and_evaluate(config, gcs_dir, hooks=hook)
    assert str(err.value) == (
        f"lost the lock of --workdir {gcs_dir} to another trainer (pid 4242 on host other-vm, "
        f"started 2026-12-05T10:00:00+00:00; lock {lock}): stopped at step 15, writing nothing "
        f"more; let the other trainer finish, or stop it and run this command again to resume")
    after = _objects(gcs_dir)
    assert runs.complete_steps(f"{gcs_dir}/checkpoints") == [5, 10]
    assert not [p for p in after if p.startswith(f"{gcs_dir}/checkpoints/15")]
    assert json.loads(run_files.read_text(lock)) == taker  # Left to its new holder.
    changed = sorted(p for p in set(after) | set(hook.before)
                     if after.get(p) != hook.before.get(p))
    # TensorBoard's writer flushes the events of step 12 it buffered into its own file.
    assert [p.rsplit("/", 1)[1].split(".")[:3] for p in changed] in (
        [], [["events", "out", "tfevents"]]), changed
