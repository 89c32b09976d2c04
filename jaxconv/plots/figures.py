"""Figures as PNG files: filters, curves, confusion matrix, distortions, feature maps.

Every ``plot_*`` function takes plain NumPy-convertible arrays and a path, draws with
matplotlib's headless Agg backend and returns the path; `curves_figure` and
`feature_maps_figure` return the matplotlib ``Figure`` itself (to show in a notebook, or to
inspect). Nothing here knows about training or checkpoints.

Colours, the same in every figure:
  - `IMAGE_CMAP` (gray, black = low, white = high) for what lives in pixel space: input
    images, their distortions, the first layer's filters, the input row of the feature maps.
    Each is scaled to its own range (only the pattern matters), so these carry no colour bar.
  - `VALUE_CMAP` (viridis, dark purple = low, yellow = high) for every other quantity drawn
    as colour: activations (feature maps) and counts (confusion matrix), each with a colour
    bar in the quantity's own units.
  - Curves: one colour per split (`SPLIT_COLORS`), one line style per metric
    (`METRIC_STYLES`), one marker per metric for the evaluations (`METRIC_MARKERS`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

IMAGE_CMAP = "gray"  # Pixel space: images, distortions, filters (module docstring).
VALUE_CMAP = "viridis"  # Every other quantity drawn as colour, with a colour bar.
# plot_curves: colour per split (train, test = the evaluations), line style per metric, and
# for the evaluations a marker per metric (a single evaluation is a marker and no line).
SPLIT_COLORS = {"train": "C0", "test": "C1"}
METRIC_STYLES = {"loss": "-", "accuracy": "--"}
METRIC_MARKERS = {"loss": "o", "accuracy": "s"}
MARKED_POINTS = 30  # A series with fewer points than this has a marker on each point.
CONFUSION_CELL_IN = 0.45  # Side of a confusion-matrix cell, inches (the figure is 100 dpi).


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


CELL_PX = 64  # Image grids: each image is scaled (nearest) into a box this wide, at least.
_GAP_PX, _LABEL_PX, _TITLE_PX = 6, 14, 26
_BAR_PX, _BAR_BAND_PX = 10, 70  # A row's colour bar, and the band its ticks take.


def _colored(cmap: str, unit: np.ndarray) -> np.ndarray:
    """``(H, W)`` values in [0, 1] as ``(H, W, 3)`` colours of `cmap`."""
    return matplotlib.colormaps[cmap](unit)[..., :3].astype(np.float32)


def _rgb(img: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` in [0, 1] as ``(H, W, 3)`` float32 (one
    channel through `IMAGE_CMAP`)."""
    img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
    if img.ndim == 3 and img.shape[-1] == 3:
        return img
    return _colored(IMAGE_CMAP, img.reshape(img.shape[:2]))


def _resize_nearest(img: np.ndarray, box: int) -> np.ndarray:
    """`img` scaled to fit `box` pixels: by a whole factor when it is smaller (crisp pixels),
    by nearest-neighbour sampling when it is larger."""
    side = max(img.shape[:2])
    scale = box // side if side <= box else box / side
    rows, cols = (np.minimum((np.arange(max(1, round(n * scale))) / scale).astype(int), n - 1)
                  for n in img.shape[:2])
    return img[rows[:, None], cols[None, :]]


def _mosaic_figure(rows: Sequence[Sequence[np.ndarray | None]], title: str, *,
                   cell_labels: Mapping[tuple[int, int], str] | None = None,
                   row_labels: Sequence[str] | None = None,
                   row_scales: Sequence[tuple[str, float, float] | None] | None = None
                   ) -> Figure:
    """A grid of images drawn as one mosaic in one Axes (dozens of Axes, one per image, took
    seconds to build and draw).

    Args:
      rows: rows of ``(H, W, 3)`` images in [0, 1] (`_rgb`); None leaves a cell empty.
      title: the figure's title.
      cell_labels: ``{(row, column): text}`` written above those cells.
      row_labels: one text per row, written above its first cell (left-aligned).
      row_scales: per row, ``(cmap, low, high)`` for a colour bar right of the row (its
        images were coloured with `cmap` from `low` to `high`), or None for no bar.
    """
    cell_labels, row_labels = cell_labels or {}, row_labels or [""] * len(rows)
    row_scales = row_scales or [None] * len(rows)
    native = max(max(img.shape[:2]) for row in rows for img in row if img is not None)
    box = min(max(native, CELL_PX), 2 * CELL_PX)
    cols = max(len(row) for row in rows)
    bands = [_LABEL_PX if row_labels[r] or any(k[0] == r for k in cell_labels) else 0
             for r in range(len(rows))]
    height = sum(bands) + len(rows) * (box + _GAP_PX)
    canvas = np.ones((height, cols * (box + _GAP_PX) - _GAP_PX, 3), np.float32)
    texts, bars, y = [], [], 0
    for r, row in enumerate(rows):
        y += bands[r]
        if row_scales[r] is not None:
            bars.append((y, row_scales[r]))
        if row_labels[r]:
            texts.append((0, y - 2, row_labels[r], "left"))
        for c, img in enumerate(row):
            x = c * (box + _GAP_PX)
            if (r, c) in cell_labels:
                texts.append((x + box / 2, y - 2, cell_labels[r, c], "center"))
            if img is not None:
                img = _resize_nearest(img, box)
                dy, dx = (box - img.shape[0]) // 2, (box - img.shape[1]) // 2
                canvas[y + dy:y + dy + img.shape[0], x + dx:x + dx + img.shape[1]] = img
        y += box + _GAP_PX
    total, width = height + _TITLE_PX, canvas.shape[1]
    fig_width = max(width + (_BAR_BAND_PX if bars else 0), 200)
    fig = plt.figure(figsize=(fig_width / 100, total / 100))
    # Axes exactly the canvas's size in pixels (at the saved 100 dpi): one pixel per pixel.
    ax = fig.add_axes((0.0, 0.0, width / fig_width, height / total))
    ax.imshow(canvas, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    for top, (cmap, low, high) in bars:
        cax = fig.add_axes(((width + _GAP_PX) / fig_width, (height - top - box) / total,
                            _BAR_PX / fig_width, box / total))
        bar = fig.colorbar(ScalarMappable(Normalize(low, high), cmap), cax=cax)
        # The range, and 0 where it is not next to an end (the labels would overlap).
        ticks = [low, 0.0, high] if 0.2 < -low / (high - low) < 0.8 else [low, high]
        bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
        cax.tick_params(labelsize=6, length=2)
    for x, y_text, text, align in texts:
        ax.text(x, y_text, text, fontsize=7, ha=align, va="bottom")
    fig.suptitle(title, fontsize=9)
    return fig


def _image_grid(images: Sequence[np.ndarray], titles: Sequence[str], title: str) -> Figure:
    """`images` in a near-square grid, each with its title above it."""
    _, cols = _grid(len(images))
    rows = [[_rgb(img) for img in images[i:i + cols]] for i in range(0, len(images), cols)]
    labels = {(i // cols, i % cols): t for i, t in enumerate(titles)}
    return _mosaic_figure(rows, title, cell_labels=labels)


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
    return _save(_image_grid([_unit_range(f) for f in filters],
                             [str(i) for i in range(len(filters))], title), path)


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
    colour per split (`SPLIT_COLORS`). Each series is drawn as it was measured: a marker on
    every point when it has fewer than `MARKED_POINTS` (the evaluations: large, one shape per
    metric, `METRIC_MARKERS`, on top of the train curves), joined by a line only when there
    are two or more (a single evaluation is a marker alone, in the legend too). The legend
    shows each series' colour, line style and marker; the title adds the last test accuracy.

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
        marker = METRIC_MARKERS[metric] if evaluation else "."
        (line,) = (acc_ax if metric == "accuracy" else loss_ax).plot(
            steps, values, color=SPLIT_COLORS.get(split, "C2"),
            linestyle=METRIC_STYLES[metric] if len(steps) > 1 else "none",
            linewidth=1.2 if evaluation else 1.5,
            marker=marker if len(steps) < MARKED_POINTS else None,
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


def count_fontsize(max_count: int, cell_inches: float = CONFUSION_CELL_IN) -> float:
    """Font size (points) at which `max_count`'s digits fill at most 80 % of a cell's width
    (a digit is about 0.6 em wide), between 5 and 11 points."""
    digits = len(str(max(int(max_count), 0)))
    return float(np.clip(0.8 * cell_inches * 72 / (0.6 * digits), 5, 11))


def plot_confusion(matrix, path, class_names: Sequence[str] | None = None) -> str:
    """Confusion matrix heat map (`VALUE_CMAP`, a colour bar of counts) with the counts.

    Up to 30 classes the counts are written in the cells, as large as the largest count's
    digits fit in a cell (`count_fontsize`); up to 60 the class names label the axes; the
    figure stops growing at 60 classes (ImageNet's 1000 stay a readable heat map).

    Args:
      matrix: `(classes, classes)` counts, `m[true, predicted]` (`confusion_matrix`).
      path: PNG file to write.
      class_names: tick labels; None: the class indices.
    """
    m = np.asarray(matrix)
    n = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    side = CONFUSION_CELL_IN * min(n, 60)
    fig, ax = plt.subplots(figsize=(side + 2.8, side + 1.5))
    image = ax.imshow(m, cmap=VALUE_CMAP, interpolation="nearest", vmin=0,
                      vmax=max(int(m.max()), 1))
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label="examples")
    bar.ax.tick_params(labelsize=8)
    if n <= 60:
        ax.set_xticks(range(n), names, rotation=90 if n > 12 else 0, fontsize=9)
        ax.set_yticks(range(n), names, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        size, dark = count_fontsize(m.max()), image.norm(m) < 0.5  # viridis is dark below
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=size,
                        color="white" if dark[i, j] else "black")
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
    k = distorted.shape[0]
    rows = [[_rgb(_unit_range(np.asarray(img, np.float32)))
             for img in [original] + [distorted[t, i] for t in range(k)]]
            for i, original in enumerate(originals)]
    labels = {(0, j): "original" if j == 0 else f"#{j}" for j in range(k + 1)}
    return _save(_mosaic_figure(rows, "input distortions", cell_labels=labels), path)


def feature_maps_figure(maps: Mapping[str, np.ndarray], *, max_channels: int = 8,
                        title: str | None = None) -> Figure:
    """One row per named activation: its first `max_channels` channels, as a ``Figure``.

    The channels of a row share one scale, from the lowest to the highest value drawn in the
    row, shown by the row's colour bar (a channel that stays dark is weak next to the others,
    a dead ReLU channel is uniform): `VALUE_CMAP` for activations, `IMAGE_CMAP` for the row
    named ``input`` (pixels). A row whose drawn values are all equal has no colour bar; its
    label says ``(constant v)``. Each row is labelled with the layer's name.

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
    rows, labels, scales = [], [], []
    for name, fmap in arrays.items():
        drawn = fmap[..., :cols]
        cmap = IMAGE_CMAP if name == "input" else VALUE_CMAP
        unit = _unit_range(drawn)  # One scale for the row.
        rows.append([_colored(cmap, unit[..., c]) for c in range(drawn.shape[-1])])
        low, high = float(drawn.min()), float(drawn.max())
        labels.append(name if high > low else f"{name} (constant {low:.3g})")
        scales.append((cmap, low, high) if high > low else None)
    return _mosaic_figure(
        rows, title or f"feature maps of one image, first {cols} channels of each layer",
        row_labels=labels, row_scales=scales)


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
