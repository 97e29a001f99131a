"""HOG against scikit-image, image by image: same numbers (to 1e-12). How much faster it is:
benchmarks/bench_hog.py (timings belong in benchmarks, not in tests)."""

import importlib

import numpy as np
import pytest
import skimage.data
import skimage.feature
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.features import hog, hog_output_size
from cnnlab.features.hog import (
    accumulate_cells,
    cell_histograms,
    near_float32_midpoint,
    orientation_bins,
)

HOG_MODULE = importlib.import_module("cnnlab.features.hog")  # the name `hog` is the function
TOLERANCE = 1e-12  # reached: at most 2.3e-16 in every comparison below


def skimage_hog(images, **options):
    """skimage.feature.hog image by image; (N, C, H, W) goes in as (H, W, C) with channel_axis."""
    images = np.asarray(images)
    for name in ("pixels_per_cell", "cells_per_block"):  # scikit-image takes pairs only
        if isinstance(options.get(name), int):
            options[name] = (options[name], options[name])
    if images.ndim == 4:
        images = images.transpose(0, 2, 3, 1)
        return np.stack([skimage.feature.hog(im, channel_axis=-1, **options) for im in images])
    return np.stack([skimage.feature.hog(im, **options) for im in images])


def assert_same_as_skimage(images, **options):
    ours = hog(images, **options)
    reference = skimage_hog(images, **options)
    assert ours.shape == reference.shape
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, reference, rtol=0, atol=TOLERANCE)


PARAMETER_SETS = [
    {},
    {"orientations": 7, "pixels_per_cell": (5, 7), "cells_per_block": (2, 3)},
    {"orientations": 6, "pixels_per_cell": 3, "cells_per_block": 1, "block_norm": "L1"},
    {"orientations": 12, "pixels_per_cell": (4, 6), "cells_per_block": 2, "block_norm": "L1-sqrt"},
    {"orientations": 4, "pixels_per_cell": (3, 3), "cells_per_block": (2, 2), "block_norm": "L2"},
    {"orientations": 9, "pixels_per_cell": (6, 6), "block_norm": "L2-Hys", "transform_sqrt": True},
    {"orientations": 1, "pixels_per_cell": (1, 2), "cells_per_block": (1, 1)},
]


@pytest.mark.parametrize("options", PARAMETER_SETS)
@pytest.mark.parametrize("shape", [(6, 28, 28), (3, 37, 41), (3, 1, 29, 30), (3, 3, 33, 31)])
def test_random_images_match_skimage(options, shape):
    images = np.random.default_rng(0).random(shape)
    assert_same_as_skimage(images, **options)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    channels=st.sampled_from([0, 1, 2, 3]),
    height=st.integers(6, 30),
    width=st.integers(6, 30),
    orientations=st.integers(1, 13),
    cell=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    block=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    block_norm=st.sampled_from(["L1", "L1-sqrt", "L2", "L2-Hys"]),
    levels=st.sampled_from([2, 5, 256, 0]),
)
def test_any_parameters_match_skimage(
    seed, channels, height, width, orientations, cell, block, block_norm, levels
):
    if height < cell[0] * block[0] or width < cell[1] * block[1]:
        height, width = cell[0] * block[0], cell[1] * block[1]
    rng = np.random.default_rng(seed)
    shape = (2, height, width) if channels == 0 else (2, channels, height, width)
    # Few grey levels give many exactly horizontal, vertical and diagonal gradients.
    images = rng.integers(0, levels, shape) / (levels - 1) if levels else rng.random(shape)
    assert_same_as_skimage(
        images,
        orientations=orientations,
        pixels_per_cell=cell,
        cells_per_block=block,
        block_norm=block_norm,
    )


def test_natural_grey_image_matches_skimage():
    camera = skimage.data.camera()[::4, ::4][:101, 3:120].astype(np.float64) / 255
    assert_same_as_skimage(camera[None])
    assert_same_as_skimage(camera[None], orientations=8, pixels_per_cell=(16, 16))


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee"])
def test_natural_colour_images_match_skimage(name):
    image = getattr(skimage.data, name)()[::3, ::3][:91, :97]
    batch = image.transpose(2, 0, 1)[None].astype(np.float64) / 255
    assert_same_as_skimage(batch)
    assert_same_as_skimage(batch, orientations=6, pixels_per_cell=(7, 5), block_norm="L1")


def test_uint8_images_are_used_as_given_like_skimage():
    images = np.random.default_rng(1).integers(0, 256, (4, 3, 32, 30), dtype=np.uint8)
    assert_same_as_skimage(images, pixels_per_cell=(4, 4))
    grey = images[:, 0]
    assert_same_as_skimage(grey, pixels_per_cell=(4, 4))


def test_axis_aligned_edges_fall_in_the_bins_skimage_picks():
    """A white square: gradients of exactly 0, 90 and 180 degrees sit on bin edges."""
    square = np.zeros((1, 40, 40))
    square[0, 10:30, 10:30] = 1.0
    for orientations in (1, 2, 4, 6, 7, 9):
        assert_same_as_skimage(square, orientations=orientations, pixels_per_cell=(4, 4))


def test_nested_lists_are_images_too(rng):
    images = rng.random((2, 16, 24))
    np.testing.assert_array_equal(hog(images.tolist(), pixels_per_cell=4),
                                  hog(images, pixels_per_cell=4))


def test_flat_image_has_zero_features_and_single_channel_equals_grey():
    assert not hog(np.full((2, 24, 24), 0.3)).any()
    images = np.random.default_rng(2).random((3, 24, 24))
    np.testing.assert_array_equal(hog(images[:, None]), hog(images))


def test_a_vertical_edge_votes_into_the_zero_degree_bin():
    """Brightness rising along the columns: gradient angle 0, so only bin 0 is non-zero."""
    image = np.zeros((1, 16, 16))
    image[0, :, 8:] = 1.0
    features = hog(image, orientations=4, pixels_per_cell=8, cells_per_block=1, block_norm="L1")
    cells = features.reshape(2, 2, 4)
    assert (cells[..., 1:] == 0).all() and (cells[..., 0] > 0).all()


def test_batches_larger_than_a_chunk_match_one_image_at_a_time(monkeypatch):
    monkeypatch.setattr(HOG_MODULE, "CHUNK_SIZE", 7)
    images = np.random.default_rng(3).random((23, 2, 17, 19))
    assert_same_as_skimage(images, pixels_per_cell=(4, 4), cells_per_block=(2, 2))


def test_output_size_formula_and_empty_batch():
    assert hog_output_size(28, 28) == 81
    # The defaults, 8 x 8 cells and 3 x 3 blocks: 40 // 8 - 3 + 1 = 3 blocks down, 44 // 8 - 2
    # = 3 across, as hog's own output and scikit-image's.
    assert hog_output_size(40, 44) == 3 * 3 * 3 * 3 * 9 == hog(np.zeros((1, 40, 44))).shape[1]
    assert hog_output_size(40, 44) == len(skimage.feature.hog(np.zeros((40, 44))))
    assert hog_output_size(37, 41, 7, (5, 7), (2, 3)) == 6 * 3 * 2 * 3 * 7
    assert hog(np.zeros((0, 28, 28))).shape == (0, 81)


@pytest.mark.parametrize(
    "images, options, message",
    [
        (np.zeros((2, 20, 20)), {}, "at least 24 rows and 24 columns"),
        (np.zeros((2, 23, 40)), {}, "image of 23 x 40 pixels is too small"),  # rows only
        (np.zeros((2, 40, 23)), {}, "image of 40 x 23 pixels is too small"),  # columns only
        (np.zeros((2, 28, 28)), {"orientations": True}, "orientations must be a positive int"),
        (np.zeros((2, 28, 28)), {"orientations": 4.0}, "orientations must be a positive int"),
        (np.zeros((2, 28, 28)), {"block_norm": "L3"}, "block_norm"),
        (np.zeros((2, 28, 28)), {"orientations": 0}, "orientations"),
        (np.zeros((2, 28, 28)), {"pixels_per_cell": (0, 8)}, "pixels_per_cell"),
        (np.zeros((28, 28)), {}, "(N, H, W) or (N, C, H, W)"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(images, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        hog(images, **options)


def reference_bins(g_row, g_col, orientations):
    """scikit-image's rule written plainly: edge_i <= rad2deg(arctan2) % 180 < edge_(i + 1)."""
    degrees = np.rad2deg(np.arctan2(g_row, g_col)) % 180
    edges = (180.0 / orientations) * np.arange(orientations + 1)
    return np.searchsorted(edges, degrees, side="right") - 1


@pytest.mark.parametrize("orientations", [1, 2, 3, 4, 6, 7, 9, 11, 18, 360])
def test_orientation_bins_follow_skimage_rule_on_edges_and_signed_zeros(orientations):
    rng = np.random.default_rng(orientations)
    angles = np.concatenate(
        [
            np.deg2rad((180.0 / orientations) * np.arange(-orientations, orientations + 1)),
            rng.uniform(-np.pi, np.pi, 5000),
            [np.pi, -np.pi, 1e-300, -1e-300, -1e-17, 1e-17],
        ]
    )
    g_row, g_col = np.sin(angles), np.cos(angles)
    specials = np.array(
        [[0.0, 0.0, -0.0, -0.0, 0.0, -0.0, 1.0, -1.0], [0.0, -0.0, 0.0, -0.0, -1, -1, 0, 0]]
    )
    g_row = np.concatenate([g_row, rng.standard_normal(5000), specials[0]])[None, None]
    g_col = np.concatenate([g_col, rng.standard_normal(5000), specials[1]])[None, None]
    np.testing.assert_array_equal(
        orientation_bins(g_row, g_col, orientations), reference_bins(g_row, g_col, orientations)
    )


def test_midpoint_detector_flags_exactly_the_values_near_a_float32_tie():
    one = np.float64(1.0)
    half_step = 2.0**-24  # half a float32 step above 1
    values = np.array([one + half_step, one + half_step + 2.0**-52, one + 3 * half_step, 1.25])
    np.testing.assert_array_equal(near_float32_midpoint(values), [True, True, True, False])
    # Within 16 float64 units of the tie (the default margin), not 17.
    steps = np.array([16, 17, -16, -17]) * 2.0**-52
    np.testing.assert_array_equal(near_float32_midpoint(one + half_step + steps),
                                  [True, False, True, False])
    assert not near_float32_midpoint(np.array([0.0, 1.0, 255.0])).any()
    assert near_float32_midpoint(np.array([1e-39])).all()
    # Below float32's normal range its grid is coarser: always reported, down to the smallest
    # float64 above 0.
    tiny = np.float64(np.finfo(np.float32).tiny)
    assert near_float32_midpoint(np.array([5e-324, tiny / 3, np.nextafter(tiny, 0)])).all()


def test_rounding_safeguard_gives_the_hypot_histograms():
    """The fast sqrt magnitude must give what np.hypot (scikit-image's magnitude) gives."""
    rng = np.random.default_rng(4)
    g_row, g_col = rng.standard_normal((2, 50, 16, 16))
    bins = orientation_bins(g_row, g_col, 9)
    exact, sums = accumulate_cells(np.hypot(g_col, g_row), bins, 9, (8, 8))
    np.testing.assert_array_equal(cell_histograms(g_row, g_col, 9, (8, 8)), exact)
    assert sums.shape == (64, 50 * 4)


def test_rounding_safeguard_catches_a_magnitude_that_sqrt_rounds_across_a_float32_tie():
    """One pixel built to need the safeguard: g_col half-way between the float32s 0.75 and the
    next, g_row tiny. np.hypot gives the tie itself, which rounds to 0.75 (to even); the fast
    sqrt(g_col**2 + g_row**2) is one float64 unit above it and rounds up."""
    above = np.nextafter(np.float32(0.75), np.float32(1))
    tie = (0.75 + np.float64(above)) / 2
    g_row, g_col = np.array([[[7.476742736207896e-09]]]), np.array([[[tie]]])
    hypot, fast = np.hypot(g_col, g_row), np.sqrt(g_col * g_col + g_row * g_row)
    assert hypot.astype(np.float32) == 0.75 and fast.astype(np.float32) == above  # as built
    histograms = cell_histograms(g_row, g_col, 9, (1, 1))
    assert histograms[0, 0, 0, 0] == 0.75
    bins = orientation_bins(g_row, g_col, 9)
    np.testing.assert_array_equal(histograms, accumulate_cells(hypot, bins, 9, (1, 1))[0])


def test_rounding_safeguard_recomputes_with_hypot_when_a_sum_is_near_a_tie(monkeypatch):
    calls = []

    def always_near(values):
        calls.append(values.shape)
        return np.ones(values.shape, dtype=bool)

    monkeypatch.setattr(HOG_MODULE, "near_float32_midpoint", always_near)
    images = np.random.default_rng(5).random((5, 28, 28))
    np.testing.assert_allclose(hog(images), skimage_hog(images), rtol=0, atol=TOLERANCE)
    assert calls

