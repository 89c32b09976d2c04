"""The report's figures: each variant's metric as a dot with its 95 % interval over seeds.

`write_figures` draws ``W/figures/test_accuracy.png`` (every row) and, when the experiment
has evaluation variants, ``W/figures/drop.png`` (what each transform costs). Rows with one
seed show the dot alone.
"""

from __future__ import annotations

import io
import math

from etils import epath
from matplotlib.figure import Figure  # Not pyplot: no backend to choose, nothing global.

from jaxconv.experiments import stats

FIGURES_DIR = "figures"


def _dot_plot(names: list[str], summaries: list[stats.Summary], xlabel: str, title: str):
    fig = Figure(figsize=(7, 0.8 + 0.28 * len(names)))
    ax = fig.subplots()
    y = list(range(len(names)))[::-1]
    means = [100 * s.mean for s in summaries]
    errors = [0.0 if math.isnan(s.half_width) else 100 * s.half_width for s in summaries]
    ax.errorbar(means, y, xerr=errors, fmt="o", capsize=3, color="tab:blue")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _save(fig, path: epath.Path) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    path.write_bytes(buffer.getvalue())
    return str(path)


def write_figures(summaries: dict[str, dict], eval_rows: list[str], workdir: str) -> list[str]:
    """Draws the figures from `jaxconv.experiments.report.summaries`.

    Args:
      summaries: per variant, its metric summaries (in report order).
      eval_rows: the names of the evaluation variants (for the drop figure).
      workdir: the experiment's workdir (``figures/`` is made there).

    Returns:
      The paths written.
    """
    out = epath.Path(workdir) / FIGURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n, s in summaries.items() if s["test_accuracy"].n]
    paths = []
    if names:
        fig = _dot_plot(names, [summaries[n]["test_accuracy"] for n in names],
                        "test accuracy (%), mean and 95 % interval over seeds",
                        "Test accuracy per variant")
        paths.append(_save(fig, out / "test_accuracy.png"))
    drops = [n for n in eval_rows if summaries[n]["drop"].n]
    if drops:
        fig = _dot_plot(drops, [summaries[n]["drop"] for n in drops],
                        "accuracy lost to the test transform (points)",
                        "Drop from the clean test accuracy")
        paths.append(_save(fig, out / "drop.png"))
    return paths
