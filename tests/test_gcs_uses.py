"""What else reads and writes runs in a bucket, against a Cloud Storage API on 127.0.0.1: an
experiment with a ``gs://`` workdir (its fine-tuning variant starts from a run in the bucket:
``init.checkpoint=gs://...``), a bucket without permission (one ``error:`` line naming the
bucket and the permission, for a workdir and for a data_dir), and the exit status of a
trainer that lost its bucket lock."""

import json
import os
import subprocess
import sys

import gcs_emulator
import jax
import ml_collections
import numpy as np
import pytest
from test_experiments import _digits_experiment

from jaxconv import data, run_files, runs
from jaxconv.training import cli, workdir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_experiment_in_a_bucket_fine_tunes_from_a_bucket_run(gcs_dir, digits_dir):
    from jaxconv import experiments, training

    exp = _digits_experiment(digits_dir)
    results = experiments.run_experiment(exp, gcs_dir, quick=True, log=lambda line: None)
    assert [(r["variant"], r["steps"]) for r in results] == [
        ("max", 4), ("avg", 4), ("max-bright", 4), ("finetune", 4)]
    source = f"{gcs_dir}/max/seed0"
    ft = json.loads(run_files.read_text(f"{gcs_dir}/finetune/seed0/run.json"))
    assert ft["config"]["init"]["checkpoint"] == source
    experiments.write(exp, results, gcs_dir, quick=True)
    assert run_files.read_text(f"{gcs_dir}/report.md").count("| max-bright |") == 1
    assert len(json.loads(run_files.read_text(f"{gcs_dir}/results.json"))["runs"]) == 4
    assert run_files.path(f"{gcs_dir}/figures/test_accuracy.png").read_bytes()[:4] == b"\x89PNG"

    # init.checkpoint=gs://...: the job starts from the bucket run's parameters.
    config = ml_collections.ConfigDict(runs.read_run_info(source).config)
    config.init.checkpoint = source
    job = training.build_job(config)
    assert job.init_report is not None
    expected = jax.tree_util.tree_leaves(runs.restore_params(source))
    got = jax.tree_util.tree_leaves(job.state.params)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def _command(args, env):
    """Runs `args` from the repository root; returns (exit status, its ``error:`` lines,
    stderr)."""
    proc = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    return proc.returncode, errors, proc.stderr


def _train(gcs, *flags):
    rc, errors, _ = _command([sys.executable, "train.py", "--config", "configs/default.py",
                              *flags], dict(os.environ, JAX_PLATFORMS="cpu", **gcs.env))
    return rc, errors


def _no_credentials(tmp_path):
    """An environment without the emulator and with a credentials file that does not exist
    (google.auth fails before any request: nothing reaches the network), and the line that
    reports it for bucket ``bkt``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL")}
    env.update(JAX_PLATFORMS="cpu", GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "no.json"))
    line = (f"no Google Cloud credentials to reach bucket gs://bkt (File {tmp_path / 'no.json'} "
            f"was not found.): run `gcloud auth application-default login` or set "
            f"GOOGLE_APPLICATION_CREDENTIALS")
    return env, line


def test_no_permission_names_the_bucket_and_the_permission(gcs, tmp_path, digits_dir):
    denied = gcs_emulator.DENIED
    rc, errors = _train(gcs, "--workdir", f"gs://{denied}/run")
    assert rc == 2 and len(errors) == 1, errors
    assert errors[0].startswith(
        f"error: cannot use --workdir gs://{denied}/run: no permission to write objects in "
        f"bucket gs://{denied} (storage.objects.create and storage.objects.delete are "
        f"needed): 403 POST ")
    assert "Permission 'storage.objects.create' denied" in errors[0]

    data.ensure_prepared("digits", digits_dir)
    rc, errors = _train(gcs, "--workdir", str(tmp_path / "run"),
                        f"--config.data_dir=gs://{denied}/tfds")
    assert rc == 1 and len(errors) == 1, errors
    assert errors[0].startswith(
        f"error: no permission to read objects in bucket gs://{denied} (storage.objects.list "
        f"and get are needed): 403 GET ")
    assert "Permission 'storage.objects.list' denied" in errors[0]
    assert not (tmp_path / "run").exists()  # Stopped before it took the workdir.


def test_no_credentials_is_one_line_naming_the_bucket_and_the_fix(tmp_path, digits_dir):
    """No emulator here: the real client (`_no_credentials`)."""
    env, line = _no_credentials(tmp_path)
    data.ensure_prepared("digits", digits_dir)
    for flags, code, start in (
            (["--workdir", "gs://bkt/run"], 2, "error: cannot use --workdir gs://bkt/run: "),
            (["--workdir", str(tmp_path / "run"), "--config.data_dir=gs://bkt/tfds"], 1,
             "error: ")):
        rc, errors, stderr = _command([sys.executable, "train.py", "--config",
                                       "configs/default.py", *flags], env)
        assert rc == code and len(errors) == 1, stderr[-2000:]
        assert errors[0] == start + line
        assert "Traceback" not in stderr
    assert not (tmp_path / "run").exists()  # Stopped before it took the workdir.


@pytest.mark.parametrize("command", ["predict", "plots"])
def test_no_credentials_for_predict_and_plots(command, monkeypatch, tmp_path, capsys):
    from jaxconv.plots import cli as plots_cli
    from jaxconv.predict import cli as predict_cli

    env, line = _no_credentials(tmp_path)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", env["GOOGLE_APPLICATION_CREDENTIALS"])
    main = {"predict": lambda: predict_cli.main(["--workdir", "gs://bkt/run", "x.png"]),
            "plots": lambda: plots_cli.main(["--workdir", "gs://bkt/run"])}[command]
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"error: {line}\n"


def test_experiments_cli_reports_the_trainers_errors_in_one_line(tmp_path):
    """A workdir under a file (the trainer's WorkdirError) and a gs:// workdir without
    credentials: one ``error:`` line each, exit 2, no traceback (both were tracebacks)."""
    (tmp_path / "afile").write_text("")
    env, line = _no_credentials(tmp_path)
    for where, message in [
            (tmp_path / "afile" / "sub", f"cannot use --workdir {tmp_path}/afile/sub/max/seed0: "
                                         f"{tmp_path}/afile is a file, not a directory"),
            ("gs://bkt/exp", line)]:
        rc, errors, stderr = _command(
            [sys.executable, "-m", "jaxconv.experiments", "--config",
             "configs/experiments/lecture.py", "--workdir", str(where), "--quick"], env)
        assert rc == 2 and errors == [f"error: {message}"], stderr[-2000:]
        assert "Traceback" not in stderr


def test_gs_paths_go_through_gcsfs_even_with_tensorflow_installed(tmp_path):
    """etils.epath takes tf.io.gfile for gs:// wherever TensorFlow is installed; jaxconv sets
    ``EPATH_USE_TF=false`` unless the user set it (checked in a fresh process)."""
    code = ("import os; from jaxconv import run_files; from etils.epath import backend; "
            "print(os.environ['EPATH_USE_TF'], "
            "run_files.path('gs://b/x')._backend is backend.fsspec_backend)")
    env = {k: v for k, v in os.environ.items() if k != "EPATH_USE_TF"}
    env.update(STORAGE_EMULATOR_HOST="http://127.0.0.1:9")  # No credentials check.
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                         capture_output=True, timeout=120, check=True).stdout.split()
    assert out == ["false", "True"]
    env["EPATH_USE_TF"] = "1"  # The user's choice is kept.
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, text=True,
                         capture_output=True, timeout=120, check=True).stdout.split()
    assert out[0] == "1"


def test_lost_lock_exits_with_its_own_status(capsys):
    with pytest.raises(SystemExit) as stop, cli.clean_errors():
        raise workdir.WorkdirLockLost("lost the lock of --workdir gs://b/r to another trainer")
    assert stop.value.code == workdir.LOCK_LOST_EXIT_CODE == 3
    assert capsys.readouterr().err == (
        "error: lost the lock of --workdir gs://b/r to another trainer\n")
