"""docs/tutorial.py runs as a script: its asserts hold, it exits 0 and writes every figure."""

import importlib.util
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
    assert "Predictor on the 500 test images of 5-9" in result.stdout
    assert "LeNet-5 by hand: last batch loss" in result.stdout
    written = {p.stem for p in tmp_path.glob("*.png")}
    assert written == FIGURES
    for name in FIGURES:
        head = (tmp_path / f"{name}.png").read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n", name
    # The committed copies are the figures the script writes (none missing, none stale).
    assert {p.stem for p in COMMITTED.glob("*.png")} == FIGURES


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    return hooks


def test_the_page_goes_from_its_introduction_to_section_1():
    """No wall of imports first: the setup cell is one collapsed block, the rest of the
    imports are in the sections that use them, and sys.path is touched where configs/ is."""
    page = _hooks().render((ROOT / "docs" / "tutorial.py").read_text())
    head = page[:page.index("\n## 1. ")]
    assert head.startswith("# Convolutional networks")
    setup = head.index('??? note "Setup code')
    assert "```python" not in head[:setup]  # nothing shown before the collapsed block
    body = head[setup:].split("\n")[1:]
    assert all(not line or line.startswith("    ") for line in body)  # all of it folded
    assert "sys.path" not in head and "from jaxconv" not in head
    assert len([line for line in body if "import " in line]) <= 10


def test_a_hide_input_cell_renders_as_a_collapsed_code_block():
    hooks = _hooks()
    script = ('# %% [markdown]\n# # Title\n\n# %% tags=["hide-input"]\nimport os\n\n\n'
              'def f():\n    return 1\n\n# %%\nx = 1\n')
    assert hooks.render(script) == (
        f'# Title\n\n??? note "{hooks.SETUP_TITLE}"\n\n    ```python\n    import os\n\n\n'
        "    def f():\n        return 1\n    ```\n\n```python\nx = 1\n```\n")
