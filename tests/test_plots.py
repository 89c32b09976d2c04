"""jaxconv.plots: each figure is a valid PNG of sensible size; the confusion counts are exact."""

import numpy as np
import pytest
from PIL import Image

from jaxconv import plots

RNG = np.random.default_rng(0)


def _check_png(path, min_side=100):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert min(img.size) >= min_side and max(img.size) < 4000, img.size


def test_confusion_matrix_counts():
    m = plots.confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], 3)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    with pytest.raises(ValueError, match="differ"):
        plots.confusion_matrix([0, 1], [0], 2)


def test_every_figure_is_a_png(tmp_path):
    paths = [
        plots.plot_filters(RNG.standard_normal((5, 5, 1, 16)), tmp_path / "filters.png"),
        plots.plot_filters(RNG.standard_normal((11, 11, 3, 8)), tmp_path / "rgb_filters.png"),
        plots.plot_curves([{"step": s, "train_loss": 1 / (s + 1), "test_accuracy": s / 10}
                           for s in range(10)], tmp_path / "curves.png"),
        plots.plot_confusion(plots.confusion_matrix(RNG.integers(0, 10, 50),
                                                    RNG.integers(0, 10, 50), 10),
                             tmp_path / "confusion.png", [str(i) for i in range(10)]),
        plots.plot_distortions(RNG.random((3, 8, 8, 1)), RNG.random((4, 3, 8, 8, 1)),
                               tmp_path / "distortions.png"),
        plots.plot_feature_maps({"stage1.conv": RNG.random((8, 8, 16)),
                                 "stage1.pool": RNG.random((4, 4, 16))},
                                tmp_path / "sub" / "maps.png"),
    ]
    for path in paths:
        _check_png(path)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"kernel must be \(kh, kw, in, out\)"):
        plots.plot_filters(np.zeros((3, 3, 4)), "unused.png")
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_curves([], "unused.png")
    with pytest.raises(ValueError, match=r"must be \(H, W, C\)"):
        plots.plot_feature_maps({"x": np.zeros((4, 4))}, "unused.png")
