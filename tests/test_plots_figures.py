"""The curves and feature-map figures as matplotlib objects: legend, styles, markers, titles."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from jaxconv import plots

# Train metrics every 50 steps, an evaluation every 100 (and at the end), as metrics.json has.
HISTORY = [{"step": s, "train_loss": 1.0 / s, "train_accuracy": 1 - 1.0 / s,
            "train_grad_norm": 0.5, **({"test_loss": 1.2 / s, "test_accuracy": 0.9 - 1.0 / s}
                                      if s % 100 == 0 else {})}
           for s in range(50, 601, 50)]


@pytest.fixture
def curves():
    fig = plots.curves_figure(HISTORY)
    yield fig
    plt.close(fig)


def _lines(fig):
    """{label: Line2D} of every plotted series, on both axes."""
    return {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}


def test_curves_legend_names_each_series_in_words_with_its_style(curves):
    (legend,) = [ax.get_legend() for ax in curves.axes if ax.get_legend() is not None]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["train loss", "test loss", "train accuracy", "test accuracy"]
    handles = dict(zip(texts, legend.legend_handles))
    for name, handle in handles.items():
        # Solid = loss, dashed = accuracy, in the legend's own handles.
        assert handle.get_linestyle() == ("-" if name.endswith("loss") else "--"), name
        assert to_rgba(handle.get_color()) == to_rgba("C0" if name.startswith("train") else "C1")
    assert handles["test loss"].get_marker() == "o"
    assert handles["test accuracy"].get_marker() == "o"
    assert "train_grad_norm" not in texts and "grad_norm" not in " ".join(texts)


def test_curves_draw_the_evaluations_as_visible_points_on_top(curves):
    lines = _lines(curves)
    test_loss, train_loss = lines["test loss"], lines["train loss"]
    np.testing.assert_array_equal(test_loss.get_xdata(), [100, 200, 300, 400, 500, 600])
    np.testing.assert_allclose(test_loss.get_ydata(), [1.2 / s for s in range(100, 601, 100)])
    np.testing.assert_array_equal(train_loss.get_xdata(), list(range(50, 601, 50)))
    for name in ("test loss", "test accuracy"):
        assert lines[name].get_marker() == "o"
        assert lines[name].get_markersize() > lines[name.replace("test", "train")].get_markersize()
        assert lines[name].get_zorder() > lines[name.replace("test", "train")].get_zorder()
    assert lines["train accuracy"].get_linestyle() == "--"
    assert lines["train loss"].get_linestyle() == "-"


def test_curves_axis_labels_and_title(curves):
    loss_ax, acc_ax = curves.axes
    assert loss_ax.get_xlabel() == "step"
    assert loss_ax.get_ylabel() == "loss (solid)"
    assert acc_ax.get_ylabel() == "accuracy (dashed)"
    title = curves.get_suptitle()
    assert title.startswith("training curves")
    assert f"{0.9 - 1 / 600:.2%}" in title  # The last evaluation's accuracy.


def test_a_single_evaluation_is_still_a_visible_point():
    """The default run evaluates once, at the end: one marker, not a hidden line end."""
    history = [dict(r) for r in HISTORY]
    for r in history[:-1]:
        r.pop("test_loss", None), r.pop("test_accuracy", None)
    fig = plots.curves_figure(history)
    try:
        point = _lines(fig)["test accuracy"]
        assert list(point.get_xdata()) == [600]
        assert point.get_marker() == "o" and point.get_markersize() >= 6
    finally:
        plt.close(fig)


def test_mosaic_places_each_channel_pixel_exactly():
    """A 3x3 map is scaled by 21 (nearest) into its 64-pixel box, under a 14-pixel label band."""
    fmap = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    fig = plots.feature_maps_figure({"x": fmap})
    try:
        mosaic = fig.axes[0].get_images()[0].get_array()
        viridis = matplotlib.colormaps["viridis"]
        np.testing.assert_allclose(mosaic[14, 0], viridis(0.0)[:3], rtol=1e-6)
        np.testing.assert_allclose(mosaic[14 + 20, 20], viridis(0.0)[:3], rtol=1e-6)
        np.testing.assert_allclose(mosaic[14 + 21, 0], viridis(3 / 8)[:3], rtol=1e-6)
        np.testing.assert_allclose(mosaic[14 + 62, 62], viridis(1.0)[:3], rtol=1e-6)
        np.testing.assert_allclose(mosaic[14 + 63, 63], 1.0)  # The box's white margin.
    finally:
        plt.close(fig)


def test_curves_without_loss_or_accuracy_fail():
    with pytest.raises(ValueError, match="no loss or accuracy"):
        plots.curves_figure([{"step": 1, "train_grad_norm": 1.0}])


def test_feature_maps_have_a_title():
    maps = {"input": np.zeros((8, 8, 1)), "stage1.conv": np.ones((8, 8, 16))}
    fig = plots.feature_maps_figure(maps, max_channels=4)
    try:
        assert fig.get_suptitle() == "feature maps of one image, first 4 channels of each layer"
        (ax,) = fig.axes  # One mosaic image, not one Axes per channel.
        assert [t.get_text() for t in ax.texts] == ["input", "stage1.conv"]
        (image,) = ax.get_images()
        assert image.get_array().shape[:2] == (2 * (14 + 64 + 6), 4 * (64 + 6) - 6)
    finally:
        plt.close(fig)
    fig = plots.feature_maps_figure(maps, title="digit 3 through StageNet")
    try:
        assert fig.get_suptitle() == "digit 3 through StageNet"
    finally:
        plt.close(fig)
