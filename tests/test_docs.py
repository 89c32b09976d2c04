"""The docs stay true to the code: the generated config reference, the API pages, README's commands.

`mkdocs build --strict` (in `.ci/run`) checks links and cross-references; these tests check
what a build cannot see: a config key added without regenerating docs/configuration.md, a
name in a module's `__all__` that the API reference cannot resolve, README drifting from CI,
docstring examples that do not run or that the site shows as nested quotes instead of code.
"""

import doctest
import html.parser
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_MODULES = ("functional", "layers", "models", "transfer", "pretrained", "predict", "plots",
               "training")
README_LINE_LIMIT = 150


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    return _load(ROOT / "docs" / "gen_config_reference.py", "gen_config_reference")


def test_configuration_reference_is_generated_from_default_config(gen):
    want = gen.render(gen.read_keys())
    got = (ROOT / "docs" / "configuration.md").read_text()
    assert got == want, (
        "docs/configuration.md differs from configs/default.py: "
        "run `python docs/gen_config_reference.py` and commit the result")


def test_configuration_reference_lists_every_key_with_its_type(gen):
    ml_collections = pytest.importorskip("ml_collections")
    config = _load(ROOT / "configs" / "default.py", "default_config").get_config()
    assert isinstance(config, ml_collections.ConfigDict)

    def flatten(cfg, prefix=""):
        for name, value in cfg.items():
            if isinstance(value, ml_collections.ConfigDict):
                yield from flatten(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}", value

    values = dict(flatten(config))
    documented = {key.name: key for key in gen.read_keys() if key.type != "group"}
    assert set(documented) == set(values), set(documented) ^ set(values)
    for name, value in values.items():
        assert documented[name].type.split("[")[0] == type(value).__name__, name
        assert documented[name].meaning, name


def test_read_keys_requires_a_comment_on_every_key(gen, tmp_path):
    config = tmp_path / "config.py"
    config.write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        "    c = ml_collections.ConfigDict()\n"
        "    # --- Data ---\n"
        "    # Where the data is,\n"
        "    c.data_dir = '~/d'  # expanded.\n"
        "    c.seed = 0\n"
        "    return c\n")
    with pytest.raises(ValueError, match=r"config\.py:9: config key 'seed' has no comment"):
        gen.read_keys(config)
    config.write_text(config.read_text().replace("c.seed = 0", "c.seed = 0  # Seed."))
    keys = gen.read_keys(config)
    assert [(k.name, k.type, k.default, k.meaning, k.section) for k in keys] == [
        ("data_dir", "str", "'~/d'", "Where the data is, expanded.", "Data"),
        ("seed", "int", "0", "Seed.", "Data"),
    ]


@pytest.mark.parametrize("name", API_MODULES)
def test_api_reference_resolves_every_exported_name(name):
    griffe = pytest.importorskip("griffe")
    page = (ROOT / "docs" / "api" / f"{name}.md").read_text()
    assert f"::: jaxconv.{name}\n" in page
    module = griffe.load(f"jaxconv.{name}", search_paths=[str(ROOT)])
    # `__all__`, or else the public names defined in the module itself (imports left out).
    names = [str(n) for n in module.exports or ()] or [
        n for n, member in module.members.items()
        if not n.startswith("_") and not member.is_alias and not member.is_module]
    assert names, f"jaxconv.{name} shows nothing"
    unresolved = []
    for export in names:
        try:
            module[export].kind  # noqa: B018 (resolves an alias)
        except (KeyError, griffe.AliasResolutionError):
            unresolved.append(export)
    assert not unresolved, f"jaxconv.{name} exports what its API page cannot show"


def _block(lines: list[str], start: int) -> list[str]:
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return lines[start + 1:end]


def test_readme_is_short_and_runs_the_tests_as_ci_does():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= README_LINE_LIMIT, len(readme)
    heading = readme.index("## Run the tests")
    fence = next(i for i in range(heading, len(readme)) if readme[i].startswith("```"))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    begin = next(i for i, line in enumerate(ci) if "README: Run the tests" in line)
    end = ci.index("# --- end ---")
    plumbing = re.compile(r"^(set [+-]e|status=\$\?)$")
    commands = [line for line in ci[begin + 1:end] if not plumbing.match(line)]
    assert _block(readme, fence) == commands


def test_tutorial_page_renders_the_percent_script_with_its_figures():
    hooks = _load(ROOT / "docs" / "hooks.py", "docs_hooks")
    script = ('# ---\n# jupyter: {}\n# ---\n\n# %% [markdown]\n# # Title\n#\n# Text.\n\n'
              '# %%\nx = 1\nsave(fig, "pooling")\n\n# %% [markdown]\n# More.\n')
    assert hooks.render(script) == (
        "# Title\n\nText.\n\n```python\nx = 1\nsave(fig, \"pooling\")\n```\n\n"
        "![pooling](figures/tutorial/pooling.png)\n\nMore.\n")
    page = hooks.on_page_markdown(f"intro\n{hooks.MARKER}\n", page=None)
    assert hooks.MARKER not in page
    assert ("(tutorial.py)" in page) == hooks.SCRIPT.exists()


def _api_modules():
    """Every module of the packages the API reference shows (their docstrings are its text)."""
    for name in API_MODULES:
        package = importlib.import_module(f"jaxconv.{name}")
        yield package
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), f"jaxconv.{name}."):
            if info.name.split(".")[-1] != "__main__":
                yield importlib.import_module(info.name)


def test_docstring_examples_run_as_doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    ran = 0
    for module in _api_modules():
        for test in finder.find(module, module.__name__):
            if test.examples and test.name.startswith(module.__name__):
                runner.run(test, out=lambda text: None)
                ran += 1
    results = runner.summarize(verbose=False)
    assert ran >= 7 and results.attempted > 20, (ran, results)
    assert results.failed == 0, "a docstring example failed: python -m doctest -v <module file>"


def test_docstrings_use_the_examples_section_that_renders_as_code():
    # mkdocstrings' Google parser turns `Examples:` into code blocks; a singular `Example:`
    # becomes an admonition whose `>>>` lines render as nested blockquotes.
    singular = re.compile(r"^\s*Example:\s*$", re.M)
    found = [str(path.relative_to(ROOT)) for path in (ROOT / "jaxconv").rglob("*.py")
             if singular.search(path.read_text())]
    assert not found, f"'Example:' sections (write 'Examples:'): {found}"


class _SiteChecker(html.parser.HTMLParser):
    """Counts console prompts in code and in blockquotes, and doctest flags left visible."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.quote_depth = self.code_depth = 0
        self.prompts_in_code = 0
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "blockquote":
            self.quote_depth += 1
            if self.quote_depth > 1:
                self.problems.append("nested blockquote (a `>>>` line outside a code block)")
        elif tag == "code":
            self.code_depth += 1

    def handle_endtag(self, tag):
        if tag == "blockquote":
            self.quote_depth -= 1
        elif tag == "code":
            self.code_depth -= 1

    def handle_data(self, data):
        if ">>>" in data:
            if self.quote_depth:
                self.problems.append(f"`>>>` in a blockquote: {data.strip()[:60]!r}")
            elif self.code_depth:
                self.prompts_in_code += 1
        if "doctest:" in data and self.code_depth:
            self.problems.append(f"a doctest directive shown: {data.strip()[:60]!r}")


@pytest.mark.slow
def test_built_site_shows_docstring_examples_as_code(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                            "-d", str(site)], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    prompts = {}
    for page in sorted(site.rglob("*.html")):
        checker = _SiteChecker()
        checker.feed(page.read_text())
        assert not checker.problems, (str(page.relative_to(site)), checker.problems[:3])
        prompts[str(page.parent.relative_to(site))] = checker.prompts_in_code
    pages = ("functional", "transfer", "training", "pretrained")  # the examples' pages
    assert all(prompts[f"api/{name}"] for name in pages), prompts


def test_references_to_named_sections_exist():
    """`(README, "Transfer learning")` and the like name a heading of that file; a bare
    `(README)` points at nothing in particular."""
    named = re.compile(r"\((README|docs/[\w-]+\.md), \"([^\"]+)\"\)")
    files = [*(ROOT / "docs").glob("*.py"), *(ROOT / "docs").glob("*.md"),
             *(ROOT / "configs").glob("*.py"), *(ROOT / "jaxconv").rglob("*.py")]
    for path in files:
        text = path.read_text()
        assert "(README)" not in text, path
        for target, section in named.findall(text):
            page = ROOT / ("README.md" if target == "README" else target)
            headings = [line.lstrip("#").strip() for line in page.read_text().splitlines()
                        if line.startswith("#")]
            assert any(section in h for h in headings), (str(path), target, section)


@pytest.mark.slow
def test_pytest_runs_without_xdist():
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-q",
                          "--collect-only", "tests/test_functional_args.py"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-1000:] + run.stderr[-1000:]
