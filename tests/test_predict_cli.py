"""python -m jaxconv.predict: the table and JSON outputs, per-file errors, exit statuses."""

import json

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
    assert main(["--workdir", trained_run, *files, "--top-k", "3", "--json"]) == 1
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
    assert header.split() == ["file", "top-1", "top-2", "top-3", "top-4", "top-5"]
    assert row.startswith(paths[0]) and row.count("%)") == 5


def test_format_table_aligns_and_shows_errors():
    table = format_table([
        FilePrediction("a.png", (("7", 0.9999968), ("1", 1.8867e-6))),
        FilePrediction("long_name.png", error="long_name.png: no such file"),
    ])
    assert table.splitlines() == [
        "file           top-1     top-2",
        "a.png          7 (100%)  1 (0.0001887%)",
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
