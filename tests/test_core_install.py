"""Tests for the light core install (`pip install jaxconv`, no extras) and `jaxconv.extras`.

A child Python puts an import hook first on `sys.meta_path` that refuses the packages only the
`train` extra (or the tests) install, and records every attempt. The core modules and
`python -m jaxconv.summary` must work there without even trying one of them; the trainer-side
packages must fail with one line naming `jaxconv[train]`.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jaxconv import extras

REPO = Path(__file__).resolve().parent.parent
CORE = {"jax", "flax", "optax", "chex", "numpy"}
# Top-level import names of the `train` extra's distributions (absl-py, also a dependency of
# optax and chex, is left out), and of the test-only references.
BLOCKED = ("grain", "importlib_resources", "matplotlib", "ml_collections", "orbax", "PIL",
           "sklearn", "tensorboardX", "tensorflow_datasets", "tqdm", "tensorflow", "torch",
           "safetensors")

_HOOK = textwrap.dedent("""
    import sys
    BLOCKED = set(sys.argv[1].split(","))
    TRIED = []

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                TRIED.append(name)
                raise ModuleNotFoundError(f"blocked by the test: {name}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
""")


def _child(body: str) -> subprocess.CompletedProcess:
    code = _HOOK + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, ",".join(BLOCKED)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _requirement_name(req: str) -> str:
    for sep in "<>=!~;[ ":
        req = req.split(sep)[0]
    return req.lower()


def test_core_imports_and_summary_touch_no_extra_package():
    proc = _child("""
        import runpy
        import jaxconv.functional, jaxconv.layers, jaxconv.models, jaxconv.summary
        sys.argv = ["python -m jaxconv.summary", "--model", "alexnet"]
        try:
            runpy.run_module("jaxconv.summary", run_name="__main__")
        except SystemExit as e:
            print("EXIT", e.code)
        print("TRIED", TRIED)
        print("LOADED", sorted(BLOCKED & {m.split(".")[0] for m in sys.modules}))
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "alexnet on a 227x227x3 input" in out
    assert "EXIT 0" in out
    assert "TRIED []" in out and "LOADED []" in out


@pytest.mark.parametrize(
    "package", ["training", "data", "predict", "plots", "pretrained", "transfer"])
def test_trainer_package_without_extra_fails_with_one_line(package):
    proc = _child(f"""
        try:
            import jaxconv.{package}
        except ImportError as e:
            print("ERROR", type(e).__name__, str(e))
        else:
            print("IMPORTED")
    """)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR ImportError "), proc.stdout
    message = lines[0].removeprefix("ERROR ImportError ")
    assert message.startswith(f"jaxconv.{package} needs the 'train' extra: ")
    assert "pip install 'jaxconv[train]'" in message
    assert "(missing: " in message and "\n" not in message


def test_require_names_only_what_is_missing():
    extras.require("train", feature="the tests")  # the test environment has the extra
    proc = _child("""
        from jaxconv import extras
        try:
            extras.require("train", "absl", "tqdm", "sklearn", feature="a demo")
        except ImportError as e:
            print(e)
    """)
    # Run from this clone: the message also gives the command that installs from it.
    assert proc.stdout.strip() == (
        "a demo needs the 'train' extra: pip install 'jaxconv[train]' "
        f"(missing: tqdm, scikit-learn) (from this source checkout: pip install -e "
        f"'{extras.source_checkout()}[train]')")
    assert os.path.exists(os.path.join(extras.source_checkout(), "jaxconv", "extras.py"))
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        extras.require("gpu", feature="x")
    with pytest.raises(ValueError, match="not modules of the 'train' extra"):
        extras.require("train", "torch", feature="x")


def test_pyproject_core_is_light_and_extras_match():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {_requirement_name(r) for r in project["dependencies"]} == CORE
    optional = project["optional-dependencies"]
    train = {_requirement_name(r) for r in optional["train"]}
    assert train == {d.lower() for d in extras.EXTRAS["train"].values()}
    assert "jaxconv[train]" in optional["test"]
    assert {_requirement_name(r) for r in optional["docs"]} == {
        "mkdocs-material", "mkdocstrings", "jupytext"}
