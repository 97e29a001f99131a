"""Colour histograms on synthetic images with known answers; hue against matplotlib and colorsys."""

import colorsys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import rgb_to_hsv

from cnnlab.features import color_histogram, rgb_to_hue


def flat(rgb, height=6, width=5):
    """One (1, 3, H, W) image of a single colour."""
    return np.broadcast_to(
        np.array(rgb, dtype=np.float64)[None, :, None, None], (1, 3, height, width)
    )


@pytest.mark.parametrize(
    "rgb, hue_bin",
    [
        ((1.0, 0.0, 0.0), 0),  # red, hue 0
        ((1.0, 1.0, 0.0), 1),  # yellow, 1/6
        ((0.0, 1.0, 0.0), 3),  # green, 1/3
        ((0.0, 1.0, 1.0), 5),  # cyan, 1/2
        ((0.0, 0.0, 1.0), 6),  # blue, 2/3
        ((1.0, 0.0, 1.0), 8),  # magenta, 5/6
        ((0.5, 0.25, 0.25), 0),  # a dull red is still red
        ((0.5, 0.5, 0.5), 0),  # grey has no hue: counted as 0
    ],
)
def test_a_flat_colour_fills_one_bin(rgb, hue_bin):
    histogram = color_histogram(flat(rgb), bins=10)
    expected = np.zeros((1, 10))
    expected[0, hue_bin] = 1.0
    np.testing.assert_array_equal(histogram, expected)


def test_half_red_half_blue_splits_between_their_bins():
    image = np.zeros((1, 3, 8, 8))
    image[0, 0, :, :4] = 1.0  # left half red
    image[0, 2, :, 4:] = 1.0  # right half blue
    histogram = color_histogram(image, bins=6)
    np.testing.assert_array_equal(histogram, [[0.5, 0, 0, 0, 0.5, 0]])  # hues 0 and 2/3


def test_batch_rows_are_independent_and_sum_to_one():
    images = np.concatenate([flat((1, 0, 0)), flat((0, 1, 0)), flat((0, 0, 1))])
    histogram = color_histogram(images, bins=3)
    np.testing.assert_array_equal(histogram, np.eye(3))
    random = np.random.default_rng(0).random((7, 3, 9, 11))
    np.testing.assert_allclose(color_histogram(random, bins=13).sum(axis=1), 1.0, rtol=1e-15)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), levels=st.sampled_from([2, 3, 7, 256]))
def test_hue_equals_matplotlib_bit_for_bit(seed, levels):
    """Few levels give many ties between channels, the cases where the formulas disagree."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, levels, (3, 3, 5, 6)) / (levels - 1)
    reference = rgb_to_hsv(images.transpose(0, 2, 3, 1))[..., 0]
    np.testing.assert_array_equal(rgb_to_hue(images), reference)


def test_hue_agrees_with_colorsys():
    images = np.random.default_rng(1).random((2, 3, 4, 5))
    pixels = images.transpose(0, 2, 3, 1).reshape(-1, 3)
    reference = np.array([colorsys.rgb_to_hsv(*pixel)[0] for pixel in pixels])
    np.testing.assert_allclose(rgb_to_hue(images).ravel(), reference, rtol=0, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bins=st.integers(1, 40))
def test_histograms_equal_numpy_histogram_of_hue_and_of_intensity(seed, bins):
    rng = np.random.default_rng(seed)
    colour = rng.random((4, 3, 7, 9))
    grey = rng.random((4, 7, 9))
    for images, values in ((colour, rgb_to_hue(colour)), (grey, grey)):
        expected = np.stack([np.histogram(v, bins=bins, range=(0, 1))[0] / v.size for v in values])
        np.testing.assert_allclose(color_histogram(images, bins=bins), expected, atol=1e-15)


def test_grey_images_give_an_intensity_histogram():
    image = np.zeros((1, 4, 5))
    image[0, 0] = 1.0  # 5 white pixels: the last bin holds 1
    image[0, 1] = 0.45  # 5 pixels in bin 4 of 10
    histogram = color_histogram(image, bins=10)
    np.testing.assert_array_equal(histogram, [[0.5, 0, 0, 0, 0.25, 0, 0, 0, 0, 0.25]])
    np.testing.assert_array_equal(color_histogram(image[:, None], bins=10), histogram)


def test_uint8_images_are_divided_by_255():
    images = np.random.default_rng(2).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(color_histogram(images), color_histogram(images / 255.0))
    grey = np.array([[[0, 51, 255]]], dtype=np.uint8)  # 51 / 255 = 0.2 exactly: bin 2 of 10
    np.testing.assert_allclose(color_histogram(grey, bins=10)[0, [0, 2, 9]], [1 / 3] * 3)


@pytest.mark.parametrize(
    "images, bins, message",
    [
        (np.zeros((1, 2, 4, 4)), 10, "1 \\(grey\\) or 3 \\(RGB\\) channels"),
        (np.zeros((1, 3, 4, 4)), 0, "bins"),
        (np.zeros((1, 3, 4, 4)), True, "bins must be a positive int, got True"),
        (np.zeros((1, 3, 4, 4)), 2.0, "bins must be a positive int, got 2.0"),
        (np.full((1, 3, 4, 4), 2.0), 10, r"\[0, 1\]"),
        (np.zeros((1, 3, 4, 4), dtype=np.int64), 10, "uint8"),
        (np.zeros((4, 4)), 10, "shape"),
    ],
)
def test_bad_inputs_raise_value_errors(images, bins, message):
    with pytest.raises(ValueError, match=message):
        color_histogram(images, bins=bins)


def test_ten_bins_by_default():
    histogram = color_histogram(np.full((2, 1, 3, 3), 0.55))
    assert histogram.shape == (2, 10) and histogram[0, 5] == histogram[1, 5] == 1.0


def test_grey_pixels_get_hue_zero_without_dividing_by_zero():
    images = np.concatenate([np.full((1, 3, 2, 2), 0.5), np.zeros((1, 3, 2, 2))])
    images[1, 0] = 1.0  # pure red: hue 0 too, from the formula
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by a zero delta would warn
        np.testing.assert_array_equal(rgb_to_hue(images), np.zeros((2, 2, 2)))
