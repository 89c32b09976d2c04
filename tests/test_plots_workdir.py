"""jaxconv.plots.write_all and python -m jaxconv.plots: a training run's figures as PNGs."""

import logging
import shutil

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from jaxconv import plots
from jaxconv.models import LeNet5, StageNet
from jaxconv.plots.cli import main

pytestmark = pytest.mark.slow  # trains or starts processes: the full suite only

FIGURES = ["filters.png", "curves.png", "confusion.png", "distortions.png", "feature_maps.png"]


def _check_png(path, min_side=200):
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.verify()
    with Image.open(path) as img:
        assert min(img.size) >= min_side and max(img.size) < 4000, (path, img.size)


@pytest.mark.slow
def test_training_writes_every_figure(trained_run):
    """After training (as train.py does with `config.write_plots`): all five figures."""
    for name in FIGURES:
        _check_png(f"{trained_run}/plots/{name}")


@pytest.mark.slow
def test_cli_skips_what_it_cannot_draw(trained_run, tmp_path, capsys, caplog):
    """Without metrics.json (a run still training) the curves are skipped with a warning."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run, workdir, ignore=shutil.ignore_patterns("metrics.json", "plots"))
    with caplog.at_level(logging.WARNING, logger="jaxconv.plots"):
        assert main(["--workdir", str(workdir)]) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(workdir / "plots" / n) for n in FIGURES if n != "curves.png"]
    for path in written:
        _check_png(path)
    assert "no curves.png: no history in" in caplog.text


def test_cli_needs_a_training_workdir(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "run.json not found" in err and err.count("\n") == 1


def test_cli_where_the_figures_cannot_be_written(trained_run, tmp_path, capsys):
    """`plots` a file, or a figure's path a directory (what a read-only workdir or a full
    disk also give: an OSError): one error line, exit 2, nothing else written."""
    workdir = tmp_path / "run"
    shutil.copytree(trained_run, workdir, ignore=shutil.ignore_patterns("plots"))
    (workdir / "plots").write_text("a file")
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", str(workdir)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: cannot write the figures under {workdir}: a file is in the way of the plots "
        f"directory ({workdir}/plots)\n")
    (workdir / "plots").unlink()
    (workdir / "plots" / "curves.png").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["--workdir", str(workdir)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write the figures under {workdir}: ")
    assert err.count("\n") == 1 and "curves.png" in err


def test_feature_maps_of_models_without_stages():
    """LeNet-5 (no LCN, no stages): its conv and pooling outputs, activations left out."""
    model = LeNet5(10, in_channels=1, input_size=32, rngs=nnx.Rngs(0))
    image = np.arange(32 * 32, dtype=np.uint8).reshape(32, 32, 1)
    maps = plots.feature_maps(model, image, (0.5,), (0.25,))
    assert {k: v.shape for k, v in maps.items()} == {
        "input": (32, 32, 1), "c1": (28, 28, 6), "s2": (14, 14, 6), "c3": (10, 10, 16),
        "s4": (5, 5, 16)}
    np.testing.assert_allclose(maps["input"], (image / 255 - 0.5) / 0.25, atol=1e-6)
    name, kernel = plots.first_conv_kernel(model)
    assert name == "c1" and kernel.shape == (5, 5, 1, 6)


def test_feature_maps_of_a_stage_net():
    model = StageNet(10, input_shape=(8, 8, 1), features=(4, 6), rngs=nnx.Rngs(0))
    maps = plots.feature_maps(model, np.zeros((8, 8, 1), np.uint8), (0.3,), (0.4,))
    assert list(maps) == ["input", "stage1.conv", "stage1.lcn", "stage1.pool",
                          "stage2.conv", "stage2.lcn", "stage2.pool"]
    assert maps["stage2.pool"].shape == (2, 2, 6)
