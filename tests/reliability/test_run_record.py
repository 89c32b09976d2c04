"""The run's record: the history stream, the end-of-run marks, the divergence guard, what a
failed run leaves, and the one-line errors of issue 17 (docs/reliability.md)."""

import json
import math
import os
import subprocess
import sys

import pytest

from jaxconv import run_history
from jaxconv.training import cli
from jaxconv.training import workdir as workdir_lib
from jaxconv.training.job import corrupt_dataset_error
from jaxconv.training.loop import DivergedError, check_divergence
from tests.shipped_configs import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_stream_merges_records_and_drops_a_torn_line(tmp_path):
    writer = run_history.HistoryWriter(tmp_path)
    assert writer.start(0).metrics == []
    writer.metrics(5, {"train_loss": 2.0})
    writer.metrics(10, {"train_loss": 1.0})
    writer.metrics(10, {"test_loss": 1.5})
    writer.pending(12, {"loss": 0.9})
    writer.update_segment(end_step=12, wall_seconds=3.0)
    writer.update_segment(end_step=12, wall_seconds=4.0)
    with open(run_history.path(tmp_path), "a") as f:
        f.write('{"kind": "metrics", "step": 15, "train_lo')  # A crash mid-write.
    history = run_history.read(tmp_path)
    assert history.metrics == [{"step": 5, "train_loss": 2.0},
                               {"step": 10, "train_loss": 1.0, "test_loss": 1.5}]
    assert history.pending == [{"step": 12, "loss": 0.9}]
    assert [s["wall_seconds"] for s in history.segments] == [4.0]  # The last line wins.


def test_a_new_segment_keeps_the_steps_up_to_its_start_and_rewrites_the_file(tmp_path):
    writer = run_history.HistoryWriter(tmp_path)
    writer.start(0)
    for step in (5, 10, 15):
        writer.metrics(step, {"train_loss": float(step)})
    writer.update_segment(end_step=15, wall_seconds=2.0)
    with open(run_history.path(tmp_path), "a") as f:
        f.write("not json")
    resumed = run_history.HistoryWriter(tmp_path)
    kept = resumed.start(10)
    assert [r["step"] for r in kept.metrics] == [5, 10]
    assert resumed.segment["index"] == 1 and len(kept.segments) == 1
    text = open(run_history.path(tmp_path)).read()
    assert "not json" not in text and '"step": 15' not in text
    resumed.metrics(15, {"train_loss": 15.0, "nan": math.nan})
    assert run_history.read(tmp_path).metrics[-1] == {"step": 15, "train_loss": 15.0,
                                                      "nan": None}


def test_done_marks_belong_to_the_step_the_run_ended_at(tmp_path):
    run_history.mark_done(tmp_path, run_history.PLOTS_PHASE, 40)
    assert run_history.is_done(tmp_path, run_history.PLOTS_PHASE, 40)
    assert not run_history.is_done(tmp_path, run_history.PLOTS_PHASE, 80)  # Run extended.
    assert not run_history.is_done(tmp_path / "missing", run_history.PLOTS_PHASE, 40)


def test_the_divergence_guard():
    config = load_config("default")
    ok = {"loss": 20.0, "accuracy": 0.1, "count": 10}
    assert check_divergence(config, 10, 5, ok) is ok  # 20 < 10 x ln(10) = 23.0
    with pytest.raises(DivergedError, match=r"test loss 1e\+09 at step 5 is above 23.03"):
        check_divergence(config, 10, 5, {**ok, "loss": 1e9})
    with pytest.raises(DivergedError, match="nan"):
        check_divergence(config, 10, 5, {**ok, "loss": math.nan})
    config.divergence_factor = 0.0
    assert check_divergence(config, 10, 5, {**ok, "loss": 1e9})["loss"] == 1e9
    with pytest.raises(DivergedError):  # Off, but a non-finite loss still stops it.
        check_divergence(config, 10, 5, {**ok, "loss": math.inf})


def test_a_failed_run_removes_only_what_it_created(tmp_path):
    workdir = tmp_path / "run"
    before = workdir_lib.entries(str(workdir))
    assert before is None
    with workdir_lib.exclusive(str(workdir)) as lock:
        (workdir / "checkpoints").mkdir()
        (workdir / "run.json").write_text("{}")
        workdir_lib.remove_new_entries(str(workdir), before, lock)
    assert not workdir.exists()
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    before = workdir_lib.entries(str(workdir))
    with workdir_lib.exclusive(str(workdir)) as lock:
        (workdir / "history.jsonl").write_text("")
        workdir_lib.remove_new_entries(str(workdir), before, lock)
    assert sorted(os.listdir(workdir)) == ["notes.txt"]


def test_a_failed_run_after_a_checkpoint_removes_nothing(tmp_path):
    workdir = tmp_path / "run"
    step = workdir / "checkpoints" / "5"
    before = workdir_lib.entries(str(workdir))
    with workdir_lib.exclusive(str(workdir)) as lock:
        step.mkdir(parents=True)
        (step / "_CHECKPOINT_METADATA").write_text("{}")
        (step / "state").mkdir()
        workdir_lib.remove_new_entries(str(workdir), before, lock)
    assert step.exists() or not (workdir / "checkpoints").exists()


def test_a_corrupt_array_record_error_names_the_files_and_the_fix(tmp_path):
    config = load_config("default", data_dir=str(tmp_path))
    (tmp_path / "digits" / "1.0.0").mkdir(parents=True)
    (tmp_path / "digits" / "1.0.0" / "digits-train.array_record-00000-of-00001").write_text("")
    err = RuntimeError("Corrupted Riegeli/records file: block header hash mismatch")
    wrapped = ValueError("while reading")
    wrapped.__cause__ = err
    found = corrupt_dataset_error(config, wrapped)
    assert found is not None
    assert "digits-train.array_record" in str(found) and "run again" in str(found)
    assert corrupt_dataset_error(config, ValueError("other")) is None
    config.dataset = "mnist"
    assert "python -m jaxconv.data.prepare --dataset mnist" in str(
        corrupt_dataset_error(config, err))


@pytest.mark.parametrize("value", ["", " ", None])
def test_an_empty_workdir_flag_is_refused(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.check_workdir_flag(value)
    assert exit_.value.code == 2
    assert "--workdir=. for the current one" in capsys.readouterr().err
    assert cli.check_workdir_flag(".") == "."


@pytest.mark.slow
def test_a_diverging_run_fails_and_writes_no_complete_record(digits_dir, tmp_path):
    from jaxconv import training

    config = load_config("default", data_dir=digits_dir, num_train_steps=20,
                         eval_every_steps=10, checkpoint_every_steps=10, write_plots=False,
                         optimizer__learning_rate=1e4)
    with pytest.raises((training.DivergedError, training.NonFiniteLossError)):
        training.train_and_evaluate(config, tmp_path)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_stopped_while_drawing_a_rerun_draws_the_plots(digits_dir, tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "train.py", "--config", "configs/default.py", "--workdir",
               str(workdir), f"--config.data_dir={digits_dir}",
               "--config.num_train_steps=10", "--config.progress_bar=False"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # As if stopped while drawing: the mark is gone, one plot is missing.
    lines = (workdir / "history.jsonl").read_text().splitlines()
    (workdir / "history.jsonl").write_text(
        "\n".join(x for x in lines if json.loads(x)["kind"] != "done") + "\n")
    (workdir / "plots" / "curves.png").unlink()
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "drawing the plots it lacks" in again.stdout
    assert (workdir / "plots" / "curves.png").exists()
    third = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert third.returncode == 0 and "complete" in third.stdout and "Nothing to do" in third.stdout
