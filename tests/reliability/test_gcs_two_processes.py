"""Two ``train.py`` processes (``--distributed=on``, 127.0.0.1, gloo) on ONE bucket workdir,
against a Cloud Storage API on 127.0.0.1: process 0 writes the record, each process its
lock object and its data iterator's position in every checkpoint, and the run resumes."""

import json
import socket
import subprocess
import sys

import pytest

from jaxconv import data, run_files
from tests.reliability import subprocess_runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _objects(prefix):
    from google.cloud import storage

    bucket, _, name = prefix.split("://", 1)[1].partition("/")
    return sorted(b.name[len(name) + 1:]
                  for b in storage.Client().list_blobs(bucket, prefix=name + "/"))


def _run_two(workdir, data_dir, steps, env):
    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, "train.py", "--config", "configs/default.py", "--workdir", workdir,
         f"--config.data_dir={data_dir}", f"--config.num_train_steps={steps}",
         "--config.checkpoint_every_steps=5", "--config.log_every_steps=5",
         "--config.progress_bar=False", "--config.write_plots=False", "--distributed=on",
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
        env=env, cwd=subprocess_runs.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for i in range(2)]
    outputs = [p.communicate(timeout=subprocess_runs.TIMEOUT)[0] for p in procs]
    for i, p in enumerate(procs):
        assert p.returncode == 0, f"process {i}:\n{outputs[i][-3000:]}"
    for i, out in enumerate(outputs):
        assert (f"process {i} of 2: 1 local device(s), 2 in all (cpu); "
                f"--coordinator_address=127.0.0.1:{port}") in out, out[-3000:]
    return outputs


@pytest.mark.slow
def test_two_processes_share_a_bucket_workdir_and_resume(gcs, gcs_dir, tmp_path):
    data_dir = str(tmp_path / "tfds")
    data.ensure_prepared("digits", data_dir)
    env = subprocess_runs.env(tmp_path / "jax_cache", **gcs.env)  # One CPU device each.
    outputs = _run_two(gcs_dir, data_dir, 10, env)
    assert "steps 0..10, 2 device(s), 2 process(es)" in outputs[0]
    assert "steps 0..10" not in outputs[1]  # Process 0 alone writes the record and logs.
    names = _objects(gcs_dir)
    for step in (5, 10):
        assert f"checkpoints/{step}/commit_success.txt" in names
        data_files = [n for n in names if n.startswith(f"checkpoints/{step}/data/")]
        assert [n.rsplit("/", 1)[1] for n in data_files] == [
            "commit_success.txt", "process_0-of-2.json", "process_1-of-2.json"], data_files
    assert {"run.json", "metrics.json", "history.jsonl"} <= set(names)
    assert not [n for n in names if n.startswith("train.lock")]  # Both locks released.

    outputs = _run_two(gcs_dir, data_dir, 20, env)  # Longer: resumes from step 10.
    assert "steps 10..20, 2 device(s), 2 process(es)" in outputs[0], outputs[0][-3000:]
    names = _objects(gcs_dir)
    assert "checkpoints/20/commit_success.txt" in names
    record = json.loads(run_files.read_text(f"{gcs_dir}/run.json"))
    assert [r["step"] for r in record["resumes"]] == [10]
    assert json.loads(run_files.read_text(f"{gcs_dir}/metrics.json"))["processes"] == 2
