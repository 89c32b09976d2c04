"""The house rules of ARCHITECTURE.md, checked on the source: which part may import which,
no private cross-imports, no function-level import of jaxconv (a cycle dodged), small files."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jaxconv"
MAX_LINES = 400

# Part of the house -> the other parts it may import (ARCHITECTURE.md, "Layers").
ALLOWED = {
    "functional": set(),
    "layers": {"functional"},
    "models": {"layers", "functional"},
    "summary": {"models", "layers", "functional"},
    "runtime": set(),
    "extras": set(),
    "cli_errors": set(),
    "data": {"run_files", "extras"},
    "run_files": set(),
    "runs": {"run_files", "data", "models", "extras"},
    "run_history": {"run_files"},
    "transfer": {"runs", "models", "layers", "functional", "data", "extras"},
    "pretrained": {"transfer", "extras"},
    "training": {"data", "models", "layers", "functional", "transfer", "pretrained", "runs",
                 "run_history", "run_files", "summary", "cli_errors", "extras", "runtime"},
    "predict": {"runs", "run_files", "data", "transfer", "pretrained", "models", "layers",
                "functional", "cli_errors", "extras", "runtime"},
    "experiments": {"training", "predict", "runs", "run_files", "data", "cli_errors", "extras",
                    "runtime"},
    "plots": {"predict", "runs", "run_files", "data", "transfer", "models", "layers",
              "functional", "cli_errors", "extras", "runtime"},
}


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def _part(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _jaxconv_imports(tree):
    """(node, imported module, imported names, inside a function?) for each jaxconv import."""
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module \
                    and child.module.split(".")[0] == "jaxconv":
                out.append((child, child.module, [a.name for a in child.names], in_function))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "jaxconv":
                        out.append((child, alias.name, [], in_function))
            visit(child, nested)

    visit(tree, False)
    return out


def _target_part(module: str, names: list[str]) -> list[str]:
    parts = module.split(".")
    if len(parts) > 1:
        return [parts[1]]
    return names  # `from jaxconv import data, models`


def test_every_part_is_in_the_table():
    parts = {_part(p) for p in _sources()} - {"__init__"}
    assert parts <= set(ALLOWED), f"add to ARCHITECTURE.md and ALLOWED: {parts - set(ALLOWED)}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    part = _part(path)
    if part == "__init__":
        return
    tree = ast.parse(path.read_text(), str(path))
    for node, module, names, in_function in _jaxconv_imports(tree):
        where = f"{path.relative_to(ROOT)}:{node.lineno}"
        assert not in_function, f"{where}: function-level import of {module}"
        for target in _target_part(module, names):
            if target in (part, "__version__"):
                continue
            assert target in ALLOWED[part], f"{where}: {part} may not import {target}"
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{where}: imports private names {private} of {module}"
        assert not any(p.startswith("_") for p in module.split(".")[1:]), \
            f"{where}: imports the private module {module}"


@pytest.mark.parametrize("path", sorted([*PACKAGE.rglob("*.py"), *ROOT.glob("*.py"),
                                         *(ROOT / "benchmarks").glob("*.py"),
                                         *(ROOT / "tests").rglob("*.py"),
                                         *(ROOT / "configs").glob("*.py"),
                                         *(ROOT / "docs").glob("*.py")]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_files_are_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (max {MAX_LINES})"


def test_the_architecture_page_names_every_part():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for part in ALLOWED:
        assert f"`{part}" in text, part
