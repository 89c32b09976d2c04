"""Figures as PNG files: filters, curves, confusion matrix, distortions, feature maps.

Every function takes plain NumPy-convertible arrays and a path, draws with matplotlib's
headless Agg backend and returns the path. Nothing here knows about training or checkpoints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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


def plot_curves(history: Sequence[Mapping[str, float]], path) -> str:
    """Training/eval curves from records `{"step": .., "train_loss": .., "test_accuracy": ..}`.

    Losses are drawn solid on the left axis, accuracies dashed on the right; train keys in
    one colour, test keys in another; keys that are neither loss nor accuracy are skipped.
    """
    if not history:
        raise ValueError("history is empty: nothing to plot")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax2 = ax.twinx()
    for key in sorted({k for rec in history for k in rec if k != "step"}):
        pts = [(r["step"], r[key]) for r in history if key in r and "step" in r]
        if not pts or not ("loss" in key or "accuracy" in key):
            continue
        steps, values = zip(*pts)
        accuracy = "accuracy" in key
        (ax2 if accuracy else ax).plot(
            steps, values, label=key, color="C0" if key.startswith("train") else "C1",
            linestyle="--" if accuracy else "-", marker="o" if len(pts) < 30 else None,
            markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2.set_ylabel("accuracy")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="center right")
    return _save(fig, path)


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


def plot_feature_maps(maps: Mapping[str, np.ndarray], path, *, max_channels: int = 8) -> str:
    """One row per named activation `(H, W, C)`: its first `max_channels` channels."""
    if not maps:
        raise ValueError("no feature maps to plot")
    names = list(maps)
    cols = max(min(np.asarray(maps[n]).shape[-1], max_channels) for n in names)
    fig, axes = plt.subplots(len(names), cols, figsize=(1.1 * cols + 1, 1.1 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        fmap = np.asarray(maps[name], np.float32)
        if fmap.ndim != 3:
            raise ValueError(f"feature map {name!r} must be (H, W, C), got shape {fmap.shape}")
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < fmap.shape[-1]:
                ax.imshow(_unit_range(fmap[..., c]), cmap="viridis", interpolation="nearest")
        axes[r, 0].set_title(name, fontsize=7, loc="left")
    fig.subplots_adjust(hspace=0.35)
    return _save(fig, path)
