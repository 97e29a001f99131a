"""pictures: the array side of the pictures (rescaling, templates, filters, activation maps,
receptive-field boxes), and every picture of a grey and a colour model written as a valid,
non-blank PNG of the expected size."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cnnlab
from cnnlab import nn
from cnnlab.analysis import plots
from cnnlab.analysis.model_pictures import save_model_pictures
from cnnlab.analysis.pictures import (
    activation_maps,
    display_image,
    filter_images,
    first_conv_weight,
    linear_template_weight,
    model_input,
    receptive_field_overlay,
    template_images,
    unit_scale,
)


def rescaled(array, axes):
    """Each item (over `axes`) mapped linearly onto [0, 1] by its own min and max."""
    low, high = array.min(axis=axes, keepdims=True), array.max(axis=axes, keepdims=True)
    return (array - low) / (high - low)


def conv_outputs(model, x):
    """{"conv1": ..., "conv2": ...}: the output (C_out, H_out, W_out) of each Conv2d of
    `model` (an nn.Sequential) for one image x (C, H, W), from the layers up to it."""
    indices = [index for index, layer in enumerate(model) if isinstance(layer, nn.Conv2d)]
    return {f"conv{number + 1}": model[: index + 1](cnnlab.Tensor(x[None])).data[0]
            for number, index in enumerate(indices)}


def expected_filters(weight):
    """The pictures of (C_out, C_in, KH, KW) filters: each rescaled on its own, as colour
    (C_out, KH, KW, 3) for 3 input channels, grey (C_out, KH, KW) for one."""
    scaled = rescaled(np.asarray(weight, dtype=np.float64), (1, 2, 3))
    return np.moveaxis(scaled, 1, -1) if weight.shape[1] == 3 else scaled[:, 0]


def cnn(channels):
    return nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10),
    )  # fmt: skip


def test_unit_scale_rescales_each_item_to_the_full_range():
    weight = np.array([[[1.0, 3.0]], [[-4.0, -2.0]], [[5.0, 5.0]]])
    scaled = unit_scale(weight, axes=(1, 2))
    assert scaled.tolist() == [[[0.0, 1.0]], [[0.0, 1.0]], [[0.5, 0.5]]]


def test_templates_are_one_image_per_class_in_colour_for_colour_input():
    rng = np.random.default_rng(0)
    grey_weight, colour_weight = rng.normal(size=(10, 1 * 8 * 6)), rng.normal(size=(4, 3 * 8 * 6))
    grey = template_images(grey_weight, (1, 8, 6))
    colour = template_images(colour_weight, (3, 8, 6))
    assert grey.shape == (10, 8, 6) and colour.shape == (4, 8, 6, 3)
    assert np.allclose(grey, rescaled(grey_weight.reshape(10, 8, 6), (1, 2)), atol=1e-15)
    expected = np.moveaxis(rescaled(colour_weight.reshape(4, 3, 8, 6), (1, 2, 3)), 1, -1)
    assert np.allclose(colour, expected, atol=1e-15)
    # channel c of class k's template is row k's block c, as Flatten lays it out
    weight = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 12)
    assert np.argmax(template_images(weight, (3, 2, 2))[0, ..., 2]) == 3
    with pytest.raises(ValueError, match=r"\(K, 48\)"):
        template_images(rng.normal(size=(10, 47)), (1, 8, 6))


def test_filters_are_rescaled_per_filter():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(8, 3, 5, 5)) * np.arange(1, 9)[:, None, None, None]
    images = filter_images(weight)
    assert images.shape == (8, 5, 5, 3)
    assert np.allclose(images, expected_filters(weight), atol=1e-15)
    assert np.allclose(filter_images(weight[:, :1]), expected_filters(weight[:, :1]), atol=1e-15)
    two = rng.normal(size=(4, 2, 3, 3))  # input channels side by side, scaled per filter
    images = filter_images(two)
    assert images.shape == (8, 3, 3)
    assert np.allclose(images, rescaled(two, (1, 2, 3)).reshape(8, 3, 3), atol=1e-15)
    assert np.allclose(images[2 * 3 + 1], rescaled(two, (1, 2, 3))[3, 1], atol=1e-15)


def test_weights_are_found_in_grey_and_colour_models():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    assert linear_template_weight(linear, (3, 16, 16)).shape == (10, 768)
    assert linear_template_weight(cnn(1), (1, 16, 16)) is None
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(256, 8), nn.ReLU(), nn.Linear(8, 10))
    assert linear_template_weight(mlp, (1, 16, 16)) is None
    assert first_conv_weight(cnn(3)).shape == (6, 3, 3, 3) and first_conv_weight(mlp) is None


@pytest.mark.parametrize("channels", [1, 3])
def test_activation_maps_of_every_conv_layer(channels):
    image = np.random.default_rng(2).normal(size=(channels, 16, 16)).astype(np.float32)
    model = cnn(channels)
    maps = activation_maps(model, image)
    assert [name for name, _ in maps] == ["conv1", "conv2"]
    assert maps[0][1].shape == (6, 16, 16) and maps[1][1].shape == (4, 8, 8)
    outputs = conv_outputs(model, image)
    for name, array in maps:
        assert np.allclose(array, rescaled(outputs[name].astype(np.float64), (1, 2)),
                           atol=1e-6), name


def test_receptive_field_overlay_defaults_to_the_centre_of_the_last_spatial_layer():
    record, box = receptive_field_overlay(cnn(1), (1, 16, 16))
    assert record.name == "maxpool2" and record.receptive_field == (10, 10)
    # first centres: conv1 0, maxpool1 0.5, conv2 0.5, maxpool2 0.5 + 0.5 * 2 = 1.5; output
    # (2, 2) of 4 x 4 at jump 4 -> centre 9.5, rows 9.5 -/+ (10 - 1) / 2 = 5..14
    assert box == (5, 5, 14, 14)
    record, box = receptive_field_overlay(cnn(1), (1, 16, 16), layer="conv1", position=(0, 0))
    assert box == (0, 0, 1, 1)
    with pytest.raises(ValueError, match=r"conv1, relu1, maxpool1, conv2, relu2, maxpool2\), "
                                         "got 'linear1'"):
        receptive_field_overlay(cnn(1), (1, 16, 16), layer="linear1")


def test_display_image_and_grid_shape():
    assert display_image(np.full((3, 4, 5), 255, np.uint8)).shape == (4, 5, 3)
    assert display_image(np.full((1, 4, 5), 255, np.uint8)).max() == 1.0
    normalised = display_image(np.linspace(-2, 3, 20).reshape(1, 4, 5))
    assert normalised.min() == 0 and normalised.max() == 1
    assert plots.grid_shape(10) == (3, 4) and plots.grid_shape(10, columns=5) == (2, 5)
    assert plots.grid_shape(3, columns=10) == (1, 3)
    pixels = np.full((3, 2, 2), 255, np.uint8)
    assert np.allclose(model_input(pixels, [0.5, 0.5, 0.0], [0.5, 0.25, 1.0])[:, 0, 0], [1, 2, 1])


def grid_pixels(count, columns=None):
    """The pixel size (width, height) plots.save_image_grid gives `count` pictures."""
    rows, columns = plots.grid_shape(count, columns)
    return (round(100 * plots.CELL_INCHES * columns),
            round(100 * (plots.CELL_INCHES * rows + plots.TITLE_INCHES)))  # fmt: skip


def assert_png(path, size):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == size, (path, image.size)
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 0, f"{path} is blank"
    return pixels


def metadata(channels):
    return {
        "classes": [f"class {k}" for k in range(10)],
        "preprocessing": {"channels": channels, "input_size": [16, 16],
                          "mean": [0.5] * channels, "std": [0.25] * channels},
    }  # fmt: skip


@pytest.fixture
def drawn(monkeypatch):
    return record_grids(monkeypatch)


def record_grids(monkeypatch):
    """{file name: the images array} of every plots.save_image_grid call, which still draws."""
    grids, save = {}, plots.save_image_grid

    def recording(images, path, **options):
        grids[Path(path).name] = np.asarray(images)
        return save(images, path, **options)

    monkeypatch.setattr(plots, "save_image_grid", recording)
    return grids


def assert_pictures_of(model, image, prep, grids):
    """The filters drawn are the first conv's weight rescaled per filter, the activation maps
    each conv's output for the normalised `image`, rescaled per channel."""
    weight = model[0].weight.data
    assert np.allclose(grids["filters.png"], expected_filters(weight), atol=1e-6)
    mean, std = (np.asarray(prep[key], dtype=np.float64)[:, None, None] for key in ("mean",
                                                                                     "std"))
    x = ((image / 255 - mean) / std).astype(np.float32)
    for name, output in conv_outputs(model, x).items():
        expected = rescaled(output.astype(np.float64), (1, 2))
        assert np.allclose(grids[f"activations_{name}.png"], expected, atol=1e-5), name


@pytest.mark.parametrize("channels", [1, 3])
def test_every_picture_of_a_cnn_is_a_valid_non_blank_png(tmp_path, channels, drawn):
    image = np.random.default_rng(4).integers(0, 256, size=(channels, 16, 16), dtype=np.uint8)
    model = cnn(channels)
    paths = save_model_pictures(model, metadata(channels), tmp_path, image=image)
    assert_pictures_of(model, image, metadata(channels)["preprocessing"], drawn)
    names = [path.name for path in paths]
    assert names == ["filters.png", "activations_conv1.png", "activations_conv2.png",
                     "receptive_field.png"]  # fmt: skip
    assert_png(paths[0], grid_pixels(6))
    assert_png(paths[1], grid_pixels(6))
    assert_png(paths[2], grid_pixels(4))
    overlay = assert_png(paths[3], (500, 500))
    red = (overlay[..., 0] > 200) & (overlay[..., 1] < 60) & (overlay[..., 2] < 60)
    assert red.sum() > 100  # the box is drawn
    if channels == 3:  # colour stays colour: the input image's channels differ
        with Image.open(paths[3]) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=float)
        assert np.abs(rgb[..., 0] - rgb[..., 1])[~red].max() > 50


@pytest.mark.parametrize("channels", [1, 3])
def test_a_linear_classifier_gets_its_templates(tmp_path, channels, drawn):
    model = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16 * 16, 10))
    image = np.zeros((channels, 16, 16), np.uint8)
    paths = save_model_pictures(model, metadata(channels), tmp_path, image=image)
    assert [path.name for path in paths] == ["templates.png"]
    weight = model[1].weight.data.astype(np.float64).reshape(10, channels, 16, 16)
    expected = np.moveaxis(rescaled(weight, (1, 2, 3)), 1, -1)
    assert np.allclose(drawn["templates.png"], expected[..., 0] if channels == 1 else expected,
                       atol=1e-6)
    pixels = assert_png(paths[0], grid_pixels(10, columns=5))
    colourful = np.abs(pixels[..., 0] - pixels[..., 2]).max() > 50
    assert colourful == (channels == 3)
