"""docs/tutorial.py runs as a script: its asserts hold, it exits 0 and writes every figure."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "figures" / "tutorial"
FIGURES = {"connectivity", "conv_feature_maps", "pooling", "receptive_field", "lcn", "stage",
           "alexnet_params", "training", "predictions"}


@pytest.mark.slow
def test_tutorial_runs_and_writes_its_figures(tmp_path):
    env = dict(os.environ, JAXCONV_TUTORIAL_FIGURES=str(tmp_path))
    # One CPU device, as a reader has (conftest's 4 fake devices would split its batches).
    env["XLA_FLAGS"] = " ".join(
        f for f in env.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count"))
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "tutorial.py")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "test accuracy on digits 0-4" in result.stdout
    assert "Predictor on the 149 test images of 5-9" in result.stdout
    written = {p.stem for p in tmp_path.glob("*.png")}
    assert written == FIGURES
    for name in FIGURES:
        head = (tmp_path / f"{name}.png").read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n", name
    # The committed copies are the figures the script writes (none missing, none stale).
    assert {p.stem for p in COMMITTED.glob("*.png")} == FIGURES
