"""Raw pixels, polar resampling and FeaturePipeline: fit, transform, save without pickle."""

import json
import math

import numpy as np
import pytest

from cnnlab.features import (
    FEATURES,
    FeaturePipeline,
    as_float_images,
    color_histogram,
    hog,
    polar_coordinates,
    raw_pixels,
)


def polar_naive(image, n_radii, n_angles):
    """Bilinear polar resampling of one (H, W) image, one sample at a time."""
    height, width = image.shape
    radius_max = (min(height, width) - 1) / 2
    out = np.zeros((n_radii, n_angles))
    for i in range(n_radii):
        for j in range(n_angles):
            radius = radius_max * i / max(n_radii - 1, 1)
            angle = 2 * math.pi * j / n_angles
            row = (height - 1) / 2 + radius * math.sin(angle)
            col = (width - 1) / 2 + radius * math.cos(angle)
            top = min(max(math.floor(row), 0), height - 2)
            left = min(max(math.floor(col), 0), width - 2)
            down, right = row - top, col - left
            out[i, j] = (
                image[top, left] * (1 - down) * (1 - right)
                + image[top, left + 1] * (1 - down) * right
                + image[top + 1, left] * down * (1 - right)
                + image[top + 1, left + 1] * down * right
            )
    return out


def test_raw_pixels_flatten_in_c_h_w_order_and_scale_uint8():
    images = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype(np.uint8)
    features = raw_pixels(images)
    assert features.shape == (2, 60) and features.dtype == np.float64
    np.testing.assert_array_equal(features, images.reshape(2, 60) / 255.0)
    assert raw_pixels(np.zeros((3, 4, 5))).shape == (3, 20)


@pytest.mark.parametrize("shape, n_radii, n_angles", [((28, 28), 14, 56), ((17, 23), 5, 12)])
def test_polar_coordinates_equal_a_naive_bilinear_loop(shape, n_radii, n_angles):
    images = np.random.default_rng(0).random((2, 3) + shape)
    polar = polar_coordinates(images, n_radii=n_radii, n_angles=n_angles)
    assert polar.shape == (2, 3, n_radii, n_angles)
    for n in range(2):
        for c in range(3):
            reference = polar_naive(images[n, c], n_radii, n_angles)
            np.testing.assert_allclose(polar[n, c], reference, rtol=0, atol=1e-12)


def test_polar_coordinates_of_a_ramp_are_its_column_coordinate():
    """Bilinear interpolation is exact on a linear image: value = column / (W - 1)."""
    height, width = 21, 21
    ramp = np.broadcast_to(np.arange(width) / (width - 1), (1, 1, height, width))
    polar = polar_coordinates(ramp, n_radii=6, n_angles=16)[0, 0]
    radii = 10 * np.arange(6) / 5
    angles = 2 * np.pi * np.arange(16) / 16
    expected = (10 + radii[:, None] * np.cos(angles)) / (width - 1)
    np.testing.assert_allclose(polar, expected, rtol=0, atol=1e-12)
    assert np.allclose(polar_coordinates(np.full((1, 9, 9), 0.7)), 0.7)


def test_a_quarter_turn_of_the_image_is_a_quarter_shift_of_the_angles():
    images = np.random.default_rng(1).random((2, 1, 15, 15))
    turned = np.rot90(images, k=1, axes=(2, 3))  # counter-clockwise on screen
    polar = polar_coordinates(images, n_radii=7, n_angles=32)
    polar_turned = polar_coordinates(turned, n_radii=7, n_angles=32)
    # A counter-clockwise turn on screen (rows pointing down) lowers the angle by 90 degrees.
    np.testing.assert_allclose(polar_turned, np.roll(polar, -8, axis=-1), rtol=0, atol=1e-12)


def test_polar_defaults_and_bad_sizes():
    assert polar_coordinates(np.zeros((1, 28, 28), dtype=np.uint8)).shape == (1, 1, 14, 56)
    with pytest.raises(ValueError, match="n_angles"):
        polar_coordinates(np.zeros((1, 8, 8)), n_angles=0)


def test_as_float_images_accepts_uint8_and_unit_floats_only():
    assert as_float_images(np.full((1, 2, 2), 255, dtype=np.uint8)).max() == 1.0
    assert as_float_images(np.zeros((1, 2, 2), dtype=np.float32)).dtype == np.float64
    for bad in (np.full((1, 2, 2), -0.1), np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2), int)):
        with pytest.raises(ValueError, match="images"):
            as_float_images(bad)


def training_images(count=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 3, 28, 28), dtype=np.uint8)


def test_pipeline_concatenates_features_in_order_and_standardises_them():
    images = training_images()
    pipeline = FeaturePipeline(("hog", "color", "pixels"), bins=8)
    features = pipeline.fit_transform(images)
    assert features.shape == (40, 81 + 8 + 3 * 28 * 28) and features.dtype == np.float32
    assert pipeline.dims == {"hog": 81, "color": 8, "pixels": 3 * 28 * 28}
    raw = np.concatenate(
        [hog(images / 255.0), color_histogram(images, bins=8), raw_pixels(images)], axis=1
    )
    np.testing.assert_allclose(pipeline.mean, raw.mean(axis=0), rtol=1e-12, atol=1e-15)
    std = raw.std(axis=0)
    np.testing.assert_allclose(pipeline.std, np.where(std < 1e-6, 1.0, std), rtol=1e-10)
    np.testing.assert_allclose(features, (raw - raw.mean(axis=0)) / pipeline.std, atol=1e-5)
    columns = pipeline.feature_slices()["color"]
    assert (columns.start, columns.stop) == (81, 89)


def test_constant_dimensions_are_centred_not_blown_up():
    images = np.zeros((5, 1, 16, 16))
    images[:, :, 4:12, 4:12] = np.linspace(0.2, 1.0, 5)[:, None, None, None]
    pipeline = FeaturePipeline(("pixels",)).fit(images)
    assert pipeline.std[0] == 1.0  # pixel (0, 0) is 0 in every image
    new = np.full((1, 1, 16, 16), 0.5)
    assert np.isfinite(pipeline.transform(new)).all()
    assert pipeline.transform(new)[0, 0] == 0.5


def test_uint8_and_unit_float_images_give_the_same_features():
    images = training_images(12)
    pipeline = FeaturePipeline(("hog", "color", "polar")).fit(images)
    np.testing.assert_array_equal(pipeline.transform(images), pipeline.transform(images / 255.0))


def test_chunked_computation_equals_one_chunk():
    images = training_images(30)
    whole = FeaturePipeline(("hog", "color"), chunk_size=4096)
    chunked = FeaturePipeline(("hog", "color"), chunk_size=7)
    np.testing.assert_allclose(whole.fit(images).mean, chunked.fit(images).mean, rtol=1e-13)
    np.testing.assert_allclose(whole.std, chunked.std, rtol=1e-12)
    np.testing.assert_allclose(whole.transform(images), chunked.transform(images), atol=1e-6)


def test_fit_transform_equals_fit_then_transform():
    images = training_images(10)
    first = FeaturePipeline().fit_transform(images)
    np.testing.assert_array_equal(first, FeaturePipeline().fit(images).transform(images))


@pytest.mark.parametrize("fitted", [True, False])
def test_config_and_state_rebuild_the_pipeline_without_pickle(fitted):
    images = training_images(20)
    pipeline = FeaturePipeline(
        ("polar", "hog"), orientations=6, pixels_per_cell=7, cells_per_block=(2, 2),
        block_norm="L1", n_radii=9, n_angles=20, chunk_size=8,
    )  # fmt: skip
    if not fitted:
        rebuilt = FeaturePipeline.from_config(json.loads(json.dumps(pipeline.config())))
        assert rebuilt.config() == pipeline.config()
        return
    pipeline.fit(images)
    config = json.loads(json.dumps(pipeline.config()))
    state = pipeline.state_dict()
    assert set(state) == {"mean", "std"}
    assert all(type(value) is np.ndarray for value in state.values())
    rebuilt = FeaturePipeline.from_config(config, {k: v.tolist() for k, v in state.items()})
    assert rebuilt.config() == pipeline.config()
    test_images = training_images(6, seed=1)
    np.testing.assert_array_equal(rebuilt.transform(test_images), pipeline.transform(test_images))


def test_mistakes_raise_errors_naming_them():
    with pytest.raises(ValueError, match="names"):
        FeaturePipeline(("hog", "sift"))
    with pytest.raises(ValueError, match="names"):
        FeaturePipeline(("hog", "hog"))
    with pytest.raises(ValueError, match="block_norm"):
        FeaturePipeline(block_norm="L3")
    with pytest.raises(ValueError, match="chunk_size"):
        FeaturePipeline(chunk_size=0)
    with pytest.raises(RuntimeError, match="fit"):
        FeaturePipeline().transform(training_images(2))
    pipeline = FeaturePipeline(("color",)).fit(training_images(4))
    with pytest.raises(ValueError, match=r"\(N, 3, 28, 28\)"):
        pipeline.transform(np.zeros((2, 1, 28, 28)))
    with pytest.raises(ValueError, match="mean and std"):
        FeaturePipeline.from_config(pipeline.config(), {"mean": np.zeros(3), "std": np.ones(3)})
    assert sorted(FEATURES) == ["color", "hog", "pixels", "polar"]


def test_sixty_thousand_images_go_through_in_chunks(monkeypatch):
    """Only `chunk_size` images are ever converted to float64 at once."""
    seen = []
    original = FEATURES["color"]

    def spy(images, pipeline):
        seen.append(len(images))
        return original(images, pipeline)

    monkeypatch.setitem(FEATURES, "color", spy)
    images = np.zeros((60_000, 1, 4, 4), dtype=np.uint8)
    features = FeaturePipeline(("color",), bins=4, chunk_size=4096).fit_transform(images)
    assert features.shape == (60_000, 4)
    assert max(seen) == 4096 and sum(seen) == 2 * 60_000
