"""The figures as matplotlib objects: legend, styles, markers, titles, text sizes, colour bars,
and the colormap convention (module docstring of jaxconv.plots.figures)."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import to_rgba
from shipped_configs import load_config

from configs import default
from jaxconv import plots
from jaxconv.data import digits
from jaxconv.plots import figures
from jaxconv.training.config import total_steps

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
    assert handles["test accuracy"].get_marker() == "s"
    assert "train_grad_norm" not in texts and "grad_norm" not in " ".join(texts)


def test_curves_draw_the_evaluations_as_visible_points_on_top(curves):
    lines = _lines(curves)
    test_loss, train_loss = lines["test loss"], lines["train loss"]
    np.testing.assert_array_equal(test_loss.get_xdata(), [100, 200, 300, 400, 500, 600])
    np.testing.assert_allclose(test_loss.get_ydata(), [1.2 / s for s in range(100, 601, 100)])
    np.testing.assert_array_equal(train_loss.get_xdata(), list(range(50, 601, 50)))
    for name, marker in (("test loss", "o"), ("test accuracy", "s")):
        assert lines[name].get_marker() == marker
        assert lines[name].get_linestyle() == lines[name.replace("test", "train")].get_linestyle()
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


def _only_last_evaluation():
    history = [dict(r) for r in HISTORY]
    for r in history[:-1]:
        r.pop("test_loss", None), r.pop("test_accuracy", None)
    return history


def test_a_single_evaluation_is_a_marker_and_no_line():
    """A run evaluated once (at the end): a visible point, and no line in the plot or legend."""
    fig = plots.curves_figure(_only_last_evaluation())
    try:
        lines = _lines(fig)
        for name, marker in (("test loss", "o"), ("test accuracy", "s")):
            point = lines[name]
            assert list(point.get_xdata()) == [600]
            assert point.get_marker() == marker and point.get_markersize() >= 6
            assert point.get_linestyle() == "None", name
        (legend,) = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        handles = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
        assert handles["test accuracy"].get_linestyle() == "None"
        assert handles["test accuracy"].get_marker() == "s"
        assert handles["train accuracy"].get_linestyle() == "--"  # 12 points: a line
    finally:
        plt.close(fig)


@pytest.mark.parametrize("points", [2, figures.MARKED_POINTS - 1, figures.MARKED_POINTS])
def test_a_marker_on_each_point_of_a_short_series_a_line_through_two_or_more(points):
    history = [{"step": s, "train_loss": 1.0 / s, "test_loss": 2.0 / s}
               for s in range(1, points + 1)]
    fig = plots.curves_figure(history)
    try:
        lines = _lines(fig)
        marked = points < figures.MARKED_POINTS
        assert lines["test loss"].get_marker() == ("o" if marked else "None")
        assert lines["train loss"].get_marker() == ("." if marked else "None")
        assert lines["test loss"].get_linestyle() == lines["train loss"].get_linestyle() == "-"
    finally:
        plt.close(fig)


def test_the_default_config_evaluates_during_the_run():
    """Enough evaluations for a test curve (5-10), each on a logged step."""
    c = load_config("default")
    total = total_steps(c, digits.NUM_EXAMPLES - digits.NUM_TEST)
    assert 5 <= total // c.eval_every_steps <= 10, (total, c.eval_every_steps)
    assert c.eval_every_steps % c.log_every_steps == 0


# Training images of the datasets the presets pick other than digits.
TRAIN_SIZES = {"mnist5k": 4_000, "cifar10": 50_000, "imagenet2012": 1_281_167}


@pytest.mark.parametrize("model", sorted(default.PRESET_EVAL_EVERY_STEPS))
def test_presets_on_bigger_datasets_evaluate_every_5_epochs(model):
    """Not every 100 steps: that would evaluate cifar10's or ImageNet's test split every
    10,000 training images."""
    c = default.get_config(model)
    epochs = c.eval_every_steps * c.batch_size / TRAIN_SIZES[c.dataset]
    assert 4.9 < epochs <= 5.0, (c.dataset, epochs)
    assert 5 <= total_steps(c, TRAIN_SIZES[c.dataset]) // c.eval_every_steps <= 10


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
        assert [t.get_text() for t in ax.texts] == ["input (constant 0)",
                                                    "stage1.conv (constant 1)"]
        (image,) = ax.get_images()
        assert image.get_array().shape[:2] == (2 * (14 + 64 + 6), 4 * (64 + 6) - 6)
    finally:
        plt.close(fig)
    fig = plots.feature_maps_figure(maps, title="digit 3 through StageNet")
    try:
        assert fig.get_suptitle() == "digit 3 through StageNet"
    finally:
        plt.close(fig)


def _drawn(plot, *args):
    """The figure a ``plot_*`` function draws, kept open (its close after saving is stubbed)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "close", lambda fig: None)
        plot(*args)
    return plt.gcf()


def _bar_cmap(bar_ax):
    """The colormap a colour bar's Axes shows."""
    (mesh,) = [c for c in bar_ax.collections if isinstance(c, QuadMesh)]  # the colour strip
    return mesh.get_cmap().name


def test_confusion_counts_are_readable_at_the_figure_size(tmp_path):
    """Counts in points at least as large as the tick labels, each inside its cell."""
    m = np.diag([297, 30, 29, 30, 28, 30, 29, 30, 27, 27]) + np.eye(10, k=1, dtype=int)
    fig = _drawn(plots.plot_confusion, m, tmp_path / "confusion.png")
    try:
        ax, bar = fig.axes
        texts = {t.get_position(): t for t in ax.texts}  # (column, row): text
        assert len(texts) == 100 and texts[(0, 0)].get_text() == "297"
        tick_size = ax.get_xticklabels()[0].get_fontsize()
        assert min(t.get_fontsize() for t in texts.values()) >= max(tick_size, 9)  # was 6
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        cell = ax.transData.transform((1, 0))[0] - ax.transData.transform((0, 0))[0]
        widest = max(t.get_window_extent(renderer).width for t in texts.values())
        assert widest < 0.9 * cell, (widest, cell)  # "297" fits in its cell
        # Light text on the dark (low) cells, dark text on the bright (high) ones.
        assert to_rgba(texts[(0, 1)].get_color()) == to_rgba("white")  # a 0
        assert to_rgba(texts[(0, 0)].get_color()) == to_rgba("black")  # the maximum
        assert ax.get_images()[0].get_cmap().name == figures.VALUE_CMAP
        assert bar.get_ylabel() == "examples"  # the colour bar of counts
        assert bar.get_ylim() == (0, 297)
    finally:
        plt.close(fig)


def test_count_fontsize_shrinks_with_the_digits():
    assert figures.count_fontsize(30) == 11
    assert figures.count_fontsize(10_000) < figures.count_fontsize(300) <= 11
    assert figures.count_fontsize(10**12) == 5


def test_feature_maps_have_a_colour_bar_per_row_in_the_layers_units():
    rng = np.random.default_rng(0)
    maps = {"input": rng.random((8, 8, 1)), "stage1.conv": rng.normal(size=(8, 8, 16)) * 3,
            # Channel c is c everywhere: one scale for the row makes each a different colour.
            "stage1.pool": np.broadcast_to(np.arange(16.0), (4, 4, 16))}
    fig = plots.feature_maps_figure(maps)
    try:
        mosaic, *bars = fig.axes
        assert len(bars) == 3
        for bar, (name, fmap) in zip(bars, maps.items()):
            drawn = fmap[..., :8]
            np.testing.assert_allclose(bar.get_ylim(), (drawn.min(), drawn.max()), rtol=1e-6)
            want = figures.IMAGE_CMAP if name == "input" else figures.VALUE_CMAP
            assert _bar_cmap(bar) == want, name
        # The bars sit right of the mosaic, each beside its own row, top to bottom.
        tops = [bar.get_position().y1 for bar in bars]
        assert tops == sorted(tops, reverse=True)
        assert min(bar.get_position().x0 for bar in bars) >= mosaic.get_position().x1
        pixels = mosaic.get_images()[0].get_array()
        y = 2 * (14 + 64 + 6) + 14 + 32  # the middle of the pool row's boxes
        viridis = matplotlib.colormaps["viridis"]
        for c in (0, 3, 7):
            np.testing.assert_allclose(pixels[y, c * (64 + 6) + 32], viridis(c / 7)[:3],
                                       atol=1e-6)
    finally:
        plt.close(fig)


def test_a_constant_feature_map_row_says_so_and_has_no_colour_bar():
    fig = plots.feature_maps_figure({"input": np.ones((4, 4, 1)),
                                     "x": np.arange(16.0).reshape(4, 4, 1)})
    try:
        mosaic, *bars = fig.axes
        assert [t.get_text() for t in mosaic.texts] == ["input (constant 1)", "x"]
        assert len(bars) == 1
    finally:
        plt.close(fig)


def test_one_colormap_convention_across_figures(tmp_path):
    """Pixel-space images in gray (filters, distortions, the input row); values in viridis."""
    gray = matplotlib.colormaps[figures.IMAGE_CMAP]
    kernel = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1)
    images = np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1)
    for fig in (_drawn(plots.plot_filters, kernel, tmp_path / "f.png"),
                _drawn(plots.plot_distortions, images, images[None], tmp_path / "d.png")):
        try:
            pixels = fig.axes[0].get_images()[0].get_array()
            np.testing.assert_allclose(pixels[14, 0], gray(0.0)[:3], rtol=1e-6)
            np.testing.assert_allclose(pixels[14 + 63, 63], gray(1.0)[:3], rtol=1e-6)
        finally:
            plt.close(fig)
    assert (figures.IMAGE_CMAP, figures.VALUE_CMAP) == ("gray", "viridis")
    assert "IMAGE_CMAP" in figures.__doc__ and "VALUE_CMAP" in figures.__doc__
