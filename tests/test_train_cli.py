"""train.py's command line: --help, the usage without arguments, "did you mean" for a typo'd key."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_help_usage_and_did_you_mean(tmp_path):
    """Four train.py processes at once (each stops before any computation)."""
    base = ["--config", "configs/default.py", "--workdir", str(tmp_path / "run")]
    procs = {
        "help": _start("--help"),
        "no arguments": _start(),
        "top-level typo": _start(*base, "--config.lerning_rate=0.1"),
        "nested typo": _start(*base, "--config.optimizer.lerning_rate=0.1"),
    }
    out = {name: (*proc.communicate(timeout=300), proc.returncode)
           for name, proc in procs.items()}

    stdout, _, code = out["help"]
    assert code == 0
    examples = [line for line in stdout.splitlines() if line.startswith("    python train.py")]
    assert len(examples) == 3, stdout
    for line in examples:  # No runs of spaces where a line continuation was joined.
        assert not re.search(r"\S {2,}\S", line), line
    assert "    python train.py --config configs/default.py --workdir runs/lr01 \\\n" in stdout
    assert "--workdir: Checkpoints" in stdout  # absl's list of the flags follows.

    _, stderr, code = out["no arguments"]
    assert code == 2
    lines = stderr.strip().splitlines()
    assert lines[0].startswith("usage: python train.py --config CONFIG_FILE --workdir DIR")
    assert "example: python train.py --config configs/default.py --workdir runs/default" in lines
    assert lines[-1] == "error: missing required flags --config, --workdir"

    for name, hint in (("top-level typo", "did you mean 'optimizer.learning_rate'?"),
                       ("nested typo", "did you mean 'learning_rate'?")):
        _, stderr, code = out[name]
        (line,) = stderr.strip().splitlines()
        assert code == 2, (name, stderr)
        assert line.startswith("error: --config.") and "lerning_rate=0.1: 'lerning_rate' is "\
            "not a key of config" in line, line
        assert hint in line, line
        assert "valid keys: [" in line, line
