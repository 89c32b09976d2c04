"""mkdocs hook: renders docs/tutorial.py (jupytext percent format) into the tutorial page.

The tutorial is a script whose `# %% [markdown]` cells are text and whose `# %%` cells are
code, so it runs with `python docs/tutorial.py` and opens as a notebook with jupytext. On the
site, `tutorial.md`'s `<!-- tutorial.py -->` marker is replaced by the cells: markdown cells
as they are (their `# ` prefix removed), code cells as Python blocks, each followed, as a
notebook shows a cell's output, by the figures it saves (`save(fig, "name")` writes
docs/figures/tutorial/name.png), then a link to the script. A code cell tagged
``# %% tags=["hide-input"]`` (the setup: imports and helpers) is folded into a collapsed
"Setup code" block, so the page goes from its introduction to section 1. What comes before
the first cell (a jupytext header, a ruff directive) is left out. A saved figure missing from
docs/figures/tutorial/ fails `mkdocs build --strict` as a broken image.
"""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "<!-- tutorial.py -->"
SCRIPT = Path(__file__).resolve().parent / "tutorial.py"
FIGURE_DIR = "figures/tutorial"  # where the script's `save(fig, name)` writes, from docs/
SAVE_CALL = re.compile(r"""^\s*save\(\s*\w+\s*,\s*["']([\w.-]+)["']\s*\)""")
HIDE_INPUT = re.compile(r"""tags\s*=\s*\[[^\]]*["']hide-input["']""")
SETUP_TITLE = "Setup code: imports and helpers (click to open)"


def _cells(source: str) -> list[tuple[str, list[str]]]:
    """`[(kind, lines)]` with kind "markdown", "code" or "hidden" (hide-input code), in order."""
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            kind = "code" if HIDE_INPUT.search(line) is None else "hidden"
            cells.append(("markdown" if "[markdown]" in line else kind, []))
        elif cells:
            cells[-1][1].append(line)
    return cells


def _uncomment(line: str) -> str:
    return line[2:] if line.startswith("# ") else line.removeprefix("#")


def render(source: str) -> str:
    """Markdown for the cells of a percent-format script."""
    out = []
    for kind, lines in _cells(source):
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            continue
        if kind == "markdown":
            out.append("\n".join(_uncomment(line) for line in lines))
        elif kind == "hidden":  # pymdownx.details: a collapsed block, its body indented
            block = "\n".join(f"    {line}".rstrip() for line in ["```python", *lines, "```"])
            out.append(f'??? note "{SETUP_TITLE}"\n\n{block}')
        else:
            out.append("```python\n" + "\n".join(lines) + "\n```")
            for name in (m.group(1) for m in map(SAVE_CALL.match, lines) if m):
                out.append(f"![{name}]({FIGURE_DIR}/{name}.png)")
    return "\n\n".join(out) + "\n"


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    """Replaces the marker on the tutorial page by the rendered script."""
    if MARKER not in markdown:
        return markdown
    if not SCRIPT.exists():
        return markdown.replace(MARKER, "# Tutorial\n\n*docs/tutorial.py is not in this checkout.*")
    run = (f"\n---\n\nThis page is [`docs/{SCRIPT.name}`]({SCRIPT.name}): run it with "
           f"`python docs/{SCRIPT.name}`, or open it as a notebook with jupytext.\n")
    return markdown.replace(MARKER, render(SCRIPT.read_text()) + run)
