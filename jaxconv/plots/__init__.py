"""PNG figures of a model and its training (matplotlib, headless).

- `jaxconv.plots.figures`: one function per figure, on plain arrays.
- `jaxconv.plots.workdir`: `write_all(workdir)`, every figure of a training run, under
  ``workdir/plots/`` (what the trainer and the CLI call).

    python -m jaxconv.plots --workdir runs/default
"""

from jaxconv import extras

extras.require("train", feature=__name__)

from jaxconv.plots.figures import (
    confusion_matrix,
    curves_figure,
    feature_maps_figure,
    plot_confusion,
    plot_curves,
    plot_distortions,
    plot_feature_maps,
    plot_filters,
)
from jaxconv.plots.workdir import PLOTS_DIR, feature_maps, first_conv_kernel, write_all

__all__ = [
    "PLOTS_DIR",
    "confusion_matrix",
    "curves_figure",
    "feature_maps_figure",
    "feature_maps",
    "first_conv_kernel",
    "plot_confusion",
    "plot_curves",
    "plot_distortions",
    "plot_feature_maps",
    "plot_filters",
    "write_all",
]
