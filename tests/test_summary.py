"""jaxconv.summary: receptive fields, FLOPs and the lecture's FC / LC / conv comparison."""

import subprocess
import sys

import pytest
from flax import nnx

from jaxconv.models import AlexNet, LeNet5
from jaxconv.summary import compare_connectivity, main, summarize


def test_compare_reproduces_the_slide():
    counts = compare_connectivity((200, 200, 1), 40_000, 10, 100)
    assert counts == {"fully_connected": 1_600_000_000, "locally_connected": 4_000_000,
                      "convolutional": 10_000}
    with_bias = compare_connectivity((200, 200, 1), 40_000, 10, 100, bias=True)
    assert with_bias["convolutional"] == 10_100
    with pytest.raises(ValueError, match="kernel_size 300 is larger than the image"):
        compare_connectivity((200, 200, 1), 10, 300, 1)


def test_lenet5_rows():
    rows = {r.name: r for r in summarize(LeNet5(input_size=28, rngs=nnx.Rngs(0)), (28, 28, 1))}
    assert rows["c1"].output_shape == (28, 28, 6) and rows["c1"].params == 156
    assert rows["c1"].flops == 2 * 28 * 28 * 6 * 25  # multiply-adds x 2
    # Receptive field by hand: 5 -> pool 2 -> 6 (jump 2) -> conv 5 -> 14 -> pool -> 16 (jump 4).
    assert [rows[n].receptive_field for n in ("c1", "s2", "c3", "s4")] == \
        [(5, 5), (6, 6), (14, 14), (16, 16)]
    assert rows["s4"].jump == (4, 4)
    assert rows["f5"].receptive_field is None and rows["f5"].flops == 2 * 400 * 120
    assert sum(r.params for r in rows.values()) == 61_706


def test_alexnet_receptive_field_and_flops():
    rows = summarize(nnx.eval_shape(lambda: AlexNet(rngs=nnx.Rngs(0))), (227, 227, 3))
    by = {r.name: r for r in rows}
    assert by["pool5"].output_shape == (6, 6, 256)
    assert by["pool5"].receptive_field == (195, 195) and by["pool5"].jump == (32, 32)
    assert by["conv2"].flops == 2 * 27 * 27 * 256 * 5 * 5 * 48  # grouped
    assert sum(r.params for r in rows) == 60_965_224


def test_cli(capsys):
    assert main(["--model", "lenet5", "--input-shape", "28,28,1"]) == 0
    out = capsys.readouterr().out
    assert "61,706" in out and "c3" in out
    assert main(["--compare"]) == 0
    assert "1,600,000,000" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "jaxconv.summary", "--input-shape", "2,2"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "expected H,W,C" in proc.stderr


def test_help_shows_the_commands_as_written(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if "--compare" in line and "--kernel 10" in line)
    assert lines[at].endswith("--kernel 10 \\") and lines[at + 1].strip() == "--filters 100"
