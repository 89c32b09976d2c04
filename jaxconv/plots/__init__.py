"""PNG figures of a model and its training (matplotlib, headless)."""

from jaxconv.plots.figures import (
    confusion_matrix,
    plot_confusion,
    plot_curves,
    plot_distortions,
    plot_feature_maps,
    plot_filters,
)

__all__ = [
    "confusion_matrix",
    "plot_confusion",
    "plot_curves",
    "plot_distortions",
    "plot_feature_maps",
    "plot_filters",
]
