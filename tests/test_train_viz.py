"""viz: the curves and confusion-matrix pictures are real, non-blank PNGs, written atomically."""

import numpy as np
import pytest
from PIL import Image

from cnnlab.analysis import plots


def assert_png_with_content(path):
    """A valid PNG that is not one flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 5, "the picture is (nearly) blank"


def test_curves_png(tmp_path):
    path = plots.plot_curves([1, 2, 3], [1.0, 0.6, 0.4], [1.1, 0.7, 0.5], [0.5, 0.7, 0.8],
                           [0.45, 0.65, 0.75], tmp_path / "curves.png", title="mlp")
    assert path == tmp_path / "curves.png"
    assert_png_with_content(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no temporary left


def test_confusion_matrix_png(tmp_path):
    matrix = np.array([[8, 1, 1], [0, 9, 1], [2, 0, 8]])
    path = plots.plot_confusion_matrix(matrix, ["cat", "dog", "T-shirt/top"], tmp_path / "c.png")
    assert_png_with_content(path)


def test_confusion_matrix_checks_its_shape(tmp_path):
    with pytest.raises(ValueError, match="expected a \\(2, 2\\) matrix"):
        plots.plot_confusion_matrix(np.zeros((3, 3)), ["a", "b"], tmp_path / "c.png")
