"""python -m jaxconv.predict: the table and JSON outputs, per-file errors, exit statuses."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxconv import data
from jaxconv.predict import Predictor
from jaxconv.predict.cli import format_table, main
from jaxconv.predict.predictor import FilePrediction

pytestmark = pytest.mark.slow  # trains or starts processes: the full suite only


def _digit_pngs(digits_dir, directory, n):
    """The first `n` test digits as 8x8 gray PNGs, stored exactly as the dataset has them."""
    (batch,) = data.eval_batches("digits", digits_dir, batch_size=297)
    paths = []
    for i, image in enumerate(batch["image"][:n]):
        paths.append(str(directory / f"digit{i}.png"))
        Image.fromarray(image[..., 0], mode="L").save(paths[-1])
    return batch["image"][:n], paths


@pytest.mark.slow
def test_json_output_equals_eval_and_bad_files_fail_alone(trained_run, digits_dir, tmp_path,
                                                          capsys):
    images, paths = _digit_pngs(digits_dir, tmp_path, 3)
    wrong_size = tmp_path / "big.png"
    Image.fromarray(np.zeros((12, 10), np.uint8), mode="L").save(wrong_size)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    files = [paths[0], str(wrong_size), paths[1], str(text), paths[2]]
    assert main(["--workdir", trained_run, *files, "--top-k", "3", "--json",
                 "--resize", "none"]) == 1
    records = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in records] == files
    want = Predictor.from_checkpoint(trained_run).probabilities(images)
    for record, probs in zip([records[0], records[2], records[4]], want):
        assert "error" not in record
        best = np.argsort(-probs)[:3]
        assert [t["label"] for t in record["top_k"]] == [str(j) for j in best]
        np.testing.assert_allclose([t["probability"] for t in record["top_k"]], probs[best],
                                   rtol=1e-5, atol=1e-7)
    assert "is 10x12 (WxH), the model expects 8x8" in records[1]["error"]
    assert "not an image file" in records[3]["error"] and records[3]["top_k"] == []


@pytest.mark.slow
def test_table_output(trained_run, digits_dir, tmp_path, capsys):
    _, paths = _digit_pngs(digits_dir, tmp_path, 1)
    assert main(["--workdir", trained_run, paths[0]]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "input", "top-1", "top-2", "top-3", "top-4", "top-5"]
    assert row.startswith(paths[0]) and row.count("%)") == 5 and " 8x8 gray " in row


def test_format_table_aligns_and_shows_errors():
    table = format_table([
        FilePrediction("a.png", (("7", 0.9999968), ("1", 1.8867e-6)), input="8x8 gray"),
        FilePrediction("long_name.png", error="long_name.png: no such file"),
    ])
    assert table.splitlines() == [
        "file           input     top-1     top-2",
        "a.png          8x8 gray  7 (100%)  1 (0.0001887%)",
        "long_name.png  error: no such file",
    ]


def test_workdir_and_argument_errors(trained_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", str(tmp_path), "x.png"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path}/run.json not found: {str(tmp_path)!r} is not a jaxconv training "
        "workdir (train.py writes run.json there)")
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", trained_run, "x.png", "--top-k", "11"])
    assert exit_info.value.code == 2
    assert "--top-k=11: must be in [1, 10]" in capsys.readouterr().err


@pytest.mark.parametrize("batch_size", ["0", "-1"])
def test_bad_batch_size_is_one_error_line(trained_run, capsys, batch_size):
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", trained_run, "x.png", "--batch-size", batch_size])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: --batch-size={batch_size}: must be a positive integer\n")


def test_argument_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", "w", "x.png", "--resize", "stretch"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --resize: invalid choice") and err.count("\n") == 1


def test_any_image_predicts_with_the_resize_it_names(trained_run, tmp_path, capsys):
    digit = tmp_path / "digit28.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8), mode="L").save(digit)
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)).save(
        photo)
    assert main(["--workdir", trained_run, str(digit), str(photo), "--json",
                 "--resize", "pad"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["input"] for r in records] == ["28x28 gray -> 8x8 gray (pad)",
                                             "320x240 RGB -> 8x8 gray (pad)"]
    assert all(len(r["top_k"]) == 5 and "error" not in r for r in records)


@pytest.mark.parametrize("tool", ["predict", "plots"])
def test_cache_warning_is_a_warning_line(tmp_path, tool):
    """`python -m jaxconv.predict|plots`: the compilation cache's warning is one `warning:`
    line (the logging set up before the cache is), then the workdir's `error:` line."""
    env = {**os.environ, "JAXCONV_COMPILATION_CACHE": str(tmp_path / "file" / "cache")}
    (tmp_path / "file").write_text("in the way")
    args = [sys.executable, "-m", f"jaxconv.{tool}", "--workdir", str(tmp_path / "none")]
    run = subprocess.run(args + (["x.png"] if tool == "predict" else []), env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 2, run.stderr
    assert lines[0].startswith("warning: compilation cache off: cannot write to")
    assert lines[1].startswith("error: ") and "run.json not found" in lines[1]


def test_readme_tour_makes_its_digit_and_predicts_it(trained_run, tmp_path):
    """README's tour, as written: the one line that makes digit.png, then predict on it."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text().splitlines()
    make = next(line for line in readme if line.startswith('python -c "') and "digit.png" in line)
    predict = next(line for line in readme if line.startswith("python -m jaxconv.predict"))
    argv = shlex.split(predict.split("#")[0])[3:]  # after `python -m jaxconv.predict`
    subprocess.run([sys.executable, *shlex.split(make)[1:]], cwd=tmp_path, check=True,
                   timeout=120)
    argv[argv.index("--workdir") + 1] = trained_run
    run = subprocess.run([sys.executable, "-m", "jaxconv.predict", *argv], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    header, row = run.stdout.splitlines()
    assert header.split()[:3] == ["file", "input", "top-1"]
    assert row.startswith("digit.png  28x28 gray -> 8x8 gray (fit)") and row.count("%)") == 3
