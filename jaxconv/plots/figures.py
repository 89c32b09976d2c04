"""Figures as PNG files: filters, curves, confusion matrix, distortions, feature maps.

Every ``plot_*`` function takes plain NumPy-convertible arrays and a path, draws with
matplotlib's headless Agg backend and returns the path; `curves_figure` and
`feature_maps_figure` return the matplotlib ``Figure`` itself (to show in a notebook, or to
inspect). Nothing here knows about training or checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

# plot_curves: colour per split (train, test = the evaluations), line style per metric.
SPLIT_COLORS = {"train": "C0", "test": "C1"}
METRIC_STYLES = {"loss": "-", "accuracy": "--"}


def _save(fig, path) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _unit_range(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _image_axes(images: Sequence[np.ndarray], titles: Sequence[str], path, suptitle: str):
    rows, cols = _grid(len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        img = np.asarray(img, np.float32)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def plot_filters(kernel, path, *, title: str = "first-layer filters") -> str:
    """Grid of a conv kernel's filters, each scaled to [0, 1] on its own.

    Args:
      kernel: `(kh, kw, in_channels, out_channels)`; 3 input channels are drawn in colour,
        otherwise the mean over input channels in gray.
      path: PNG file to write.
    """
    k = np.asarray(kernel, np.float32)
    if k.ndim != 4:
        raise ValueError(f"kernel must be (kh, kw, in, out), got shape {k.shape}")
    filters = [k[..., o] if k.shape[2] == 3 else k[..., o].mean(-1) for o in range(k.shape[3])]
    return _image_axes([_unit_range(f) for f in filters], [str(i) for i in range(len(filters))],
                       path, title)


def _series(history: Sequence[Mapping[str, float]]) -> list[tuple[str, str, list, list]]:
    """``(split, metric, steps, values)`` for each ``<split>_<metric>`` key of `history`
    whose metric is loss or accuracy, train before test, loss before accuracy."""
    out = []
    for metric in METRIC_STYLES:
        for split in sorted({k.split("_", 1)[0] for r in history for k in r if k != "step"},
                            key=lambda s: (s != "train", s != "test", s)):
            key = f"{split}_{metric}"
            pts = [(r["step"], r[key]) for r in history
                   if r.get(key) is not None and "step" in r]
            if pts:
                out.append((split, metric, *map(list, zip(*pts))))
    return out


def curves_figure(history: Sequence[Mapping[str, float]], *,
                  title: str = "training curves") -> Figure:
    """Train and test loss and accuracy over the steps, as a matplotlib ``Figure``.

    Loss on the left axis (solid lines), accuracy on the right axis in percent (dashed); one
    colour per split (`SPLIT_COLORS`). The test (evaluation) points are drawn as large
    markers on top of the train curves, even when there is a single one; the legend shows each
    series' colour, line style and marker. The title adds the last test accuracy.

    Args:
      history: records ``{"step": 50, "train_loss": .., "train_accuracy": .., "test_loss": ..,
        "test_accuracy": ..}`` (``metrics.json``'s ``history``); keys of another metric are
        skipped.
      title: the figure's title.

    Raises:
      ValueError: `history` is empty, or no record has a loss or accuracy.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    series = _series(history)
    if not series:
        raise ValueError("history has no loss or accuracy: nothing to plot")
    fig, loss_ax = plt.subplots(figsize=(6.5, 3.8))
    acc_ax = loss_ax.twinx()
    handles = []
    for split, metric, steps, values in series:
        evaluation = split != "train"
        (line,) = (acc_ax if metric == "accuracy" else loss_ax).plot(
            steps, values, color=SPLIT_COLORS.get(split, "C2"),
            linestyle=METRIC_STYLES[metric], linewidth=1.2 if evaluation else 1.5,
            marker="o" if evaluation else ("." if len(steps) < 30 else None),
            markersize=7 if evaluation else 4, markeredgecolor="white" if evaluation else None,
            zorder=3 if evaluation else 2, label=f"{split} {metric}")
        handles.append(line)
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss (solid)")
    acc_ax.set_ylabel("accuracy (dashed)")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    last = [v[-1] for s, m, _, v in series if s == "test" and m == "accuracy"]
    fig.suptitle(f"{title} (last test accuracy {last[0]:.2%})" if last else title, fontsize=10)
    loss_ax.legend(handles, [h.get_label() for h in handles], loc="upper center",
                   bbox_to_anchor=(0.5, -0.16), ncol=len(handles), fontsize=8, handlelength=4,
                   frameon=False)
    return fig


def plot_curves(history: Sequence[Mapping[str, float]], path) -> str:
    """Writes `curves_figure` (train and test loss and accuracy over the steps) to `path`.

    Args:
      history: as for `curves_figure`.
      path: PNG file to write.

    Returns:
      `path`.
    """
    return _save(curves_figure(history), path)


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """`m[true, predicted]` counts, `(num_classes, num_classes)` int64."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (labels, predictions), 1)
    return m


def plot_confusion(matrix, path, class_names: Sequence[str] | None = None) -> str:
    """Confusion matrix heat map with counts written in each cell.

    Up to 30 classes the counts are written in the cells, up to 60 the class names label the
    axes; the figure stops growing at 60 classes (ImageNet's 1000 stay a readable heat map).

    Args:
      matrix: `(classes, classes)` counts, `m[true, predicted]` (`confusion_matrix`).
      path: PNG file to write.
      class_names: tick labels; None: the class indices.
    """
    m = np.asarray(matrix)
    n = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    side = 0.45 * min(n, 60)
    fig, ax = plt.subplots(figsize=(side + 2, side + 1.5))
    ax.imshow(m, cmap="Blues", interpolation="nearest")
    if n <= 60:
        ax.set_xticks(range(n), names, rotation=90 if n > 12 else 0, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    acc = np.trace(m) / max(m.sum(), 1)
    ax.set_title(f"confusion matrix (accuracy {acc:.2%})", fontsize=9)
    return _save(fig, path)


def plot_distortions(originals, distorted, path) -> str:
    """Rows of `[original, distortion 1, distortion 2, ...]`.

    Args:
      originals: `(N, H, W, C)` images.
      distorted: `(K, N, H, W, C)`: K distorted versions of each image.
    """
    originals, distorted = np.asarray(originals), np.asarray(distorted)
    n, k = originals.shape[0], distorted.shape[0]
    fig, axes = plt.subplots(n, k + 1, figsize=(1.1 * (k + 1), 1.1 * n + 0.4), squeeze=False)
    for i in range(n):
        for j, img in enumerate([originals[i]] + [distorted[t, i] for t in range(k)]):
            ax = axes[i, j]
            img = _unit_range(np.asarray(img, np.float32))
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray",
                      interpolation="nearest")
            ax.axis("off")
            if i == 0:
                ax.set_title("original" if j == 0 else f"#{j}", fontsize=7)
    fig.suptitle("input distortions", fontsize=9)
    return _save(fig, path)


def feature_maps_figure(maps: Mapping[str, np.ndarray], *, max_channels: int = 8,
                        title: str | None = None) -> Figure:
    """One row per named activation: its first `max_channels` channels, as a ``Figure``.

    Each channel is scaled to [0, 1] on its own (viridis); the row is labelled with the
    layer's name.

    Args:
      maps: ``{name: (H, W, C)}`` in network order (`jaxconv.plots.feature_maps`).
      max_channels: channels drawn per row.
      title: the figure's title; None: "feature maps of one image, first N channels of each
        layer".

    Raises:
      ValueError: no maps, or a map that is not ``(H, W, C)``.
    """
    if not maps:
        raise ValueError("no feature maps to plot")
    arrays = {name: np.asarray(fmap, np.float32) for name, fmap in maps.items()}
    for name, fmap in arrays.items():
        if fmap.ndim != 3:
            raise ValueError(f"feature map {name!r} must be (H, W, C), got shape {fmap.shape}")
    cols = max(min(fmap.shape[-1], max_channels) for fmap in arrays.values())
    fig, axes = plt.subplots(len(arrays), cols,
                             figsize=(1.1 * cols + 1, 1.1 * len(arrays) + 0.5), squeeze=False)
    for r, (name, fmap) in enumerate(arrays.items()):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < fmap.shape[-1]:
                ax.imshow(_unit_range(fmap[..., c]), cmap="viridis", interpolation="nearest")
        axes[r, 0].set_title(name, fontsize=7, loc="left")
    fig.suptitle(title or f"feature maps of one image, first {cols} channels of each layer",
                 fontsize=9)
    fig.subplots_adjust(hspace=0.35)
    return fig


def plot_feature_maps(maps: Mapping[str, np.ndarray], path, *, max_channels: int = 8,
                      title: str | None = None) -> str:
    """Writes `feature_maps_figure` (one row per named activation ``(H, W, C)``) to `path`.

    Args:
      maps, max_channels, title: as for `feature_maps_figure`.
      path: PNG file to write.

    Returns:
      `path`.
    """
    return _save(feature_maps_figure(maps, max_channels=max_channels, title=title), path)
