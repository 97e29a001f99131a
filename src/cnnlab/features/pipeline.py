"""Hand-designed features for a linear classifier: compute, concatenate, standardise.

    pipeline = FeaturePipeline(("hog", "color"))
    train_features = pipeline.fit_transform(train_images)   # (N, D) float32
    test_features = pipeline.transform(test_images)

The pipeline saves without pickle: `config()` is a JSON-serialisable dict and
`state_dict()` a dict of numpy arrays (safetensors can store it);
`FeaturePipeline.from_config(config, state)` rebuilds it.
"""

import numpy as np

from cnnlab.features.color import color_histogram
from cnnlab.features.hog import check_hog_arguments, hog
from cnnlab.features.transforms import as_float_images, polar_coordinates, raw_pixels

STD_FLOOR = 1e-6  # a dimension whose training std is below this is only centred


def _hog_features(images, pipeline):
    return hog(
        images,
        orientations=pipeline.orientations,
        pixels_per_cell=pipeline.pixels_per_cell,
        cells_per_block=pipeline.cells_per_block,
        block_norm=pipeline.block_norm,
        transform_sqrt=pipeline.transform_sqrt,
    )


def _color_features(images, pipeline):
    return color_histogram(images, bins=pipeline.bins)


def _polar_features(images, pipeline):
    polar = polar_coordinates(images, n_radii=pipeline.n_radii, n_angles=pipeline.n_angles)
    return polar.reshape(len(polar), -1)


def _pixel_features(images, pipeline):
    return raw_pixels(images)


# name -> function(images: float64 (N, C, H, W) in [0, 1], pipeline) -> (N, D_name) float64
FEATURES = {
    "pixels": _pixel_features,
    "hog": _hog_features,
    "color": _color_features,
    "polar": _polar_features,
}


class FeaturePipeline:
    """Concatenated hand-designed features, standardised with training statistics.

    Images, in fit and transform alike: (N, C, H, W) or (N, H, W), uint8 in 0..255 or float
    in [0, 1]; both are converted to float64 in [0, 1] first (so a uint8 image and the same
    image divided by 255 give the same features). Features are computed `chunk_size` images
    at a time, so a 60,000-image training set needs memory for one chunk plus the result.

    Args:
        names: feature names from FEATURES, concatenated in this order:
            "pixels" (raw_pixels), "hog" (hog), "color" (color_histogram),
            "polar" (polar_coordinates, flattened). Default: ("hog", "color")
        orientations, pixels_per_cell, cells_per_block, block_norm, transform_sqrt: passed
            to hog. Defaults: 9, (8, 8), (3, 3), "L2-Hys", False
        bins: passed to color_histogram. Default: 10
        n_radii, n_angles: passed to polar_coordinates. Default: None (its defaults)
        chunk_size: images per feature computation. Default: 4096

    Attributes (set by fit):
        mean: (D,) float64, per-dimension mean of the training features.
        std: (D,) float64, their standard deviation (ddof 0), 1 where it is below 1e-6.
        input_shape: (C, H, W) of the training images; transform requires the same.
        dims: {name: D_name}, the length of each feature, in concatenation order.
    """

    def __init__(
        self,
        names=("hog", "color"),
        *,
        orientations=9,
        pixels_per_cell=(8, 8),
        cells_per_block=(3, 3),
        block_norm="L2-Hys",
        transform_sqrt=False,
        bins=10,
        n_radii=None,
        n_angles=None,
        chunk_size=4096,
    ):
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        unknown = [name for name in names if name not in FEATURES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"FeaturePipeline: names must be distinct names from {sorted(FEATURES)},"
                f" got {names!r}"
            )
        orientations, pixels_per_cell, cells_per_block = check_hog_arguments(
            orientations, pixels_per_cell, cells_per_block, block_norm
        )
        for name, value, optional in (
            ("bins", bins, False),
            ("n_radii", n_radii, True),
            ("n_angles", n_angles, True),
            ("chunk_size", chunk_size, False),
        ):
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"FeaturePipeline: {name} must be a positive int, got {value!r}")
        self.names = names
        self.orientations = orientations
        self.pixels_per_cell = pixels_per_cell
        self.cells_per_block = cells_per_block
        self.block_norm = block_norm
        self.transform_sqrt = bool(transform_sqrt)
        self.bins = int(bins)
        self.n_radii = None if n_radii is None else int(n_radii)
        self.n_angles = None if n_angles is None else int(n_angles)
        self.chunk_size = int(chunk_size)
        self.mean = None
        self.std = None
        self.input_shape = None
        self.dims = None

    def __repr__(self):
        return f"FeaturePipeline({self.config()})"

    def features(self, images):
        """Unstandardised concatenated features.

        Args:
            images: (N, C, H, W) or (N, H, W), uint8 in 0..255 or float in [0, 1].

        Returns:
            (N, D) float64, D = sum of dims.
        """
        images = np.asarray(images)
        chunks = []
        for start in range(0, max(len(images), 1), self.chunk_size):
            chunk = as_float_images(images[start : start + self.chunk_size])
            parts = [FEATURES[name](chunk, self) for name in self.names]
            chunks.append(np.concatenate(parts, axis=1))
            if self.dims is None:
                sizes = [part.shape[1] for part in parts]
                self.dims = dict(zip(self.names, sizes, strict=True))
        return np.concatenate(chunks, axis=0)

    def fit(self, images):
        """Compute the training features' per-dimension mean and std; returns self.

        Args:
            images: (N, C, H, W) or (N, H, W), N >= 1, uint8 in 0..255 or float in [0, 1].
        """
        images = np.asarray(images)
        if images.ndim not in (3, 4) or len(images) == 0:
            raise ValueError(
                f"FeaturePipeline.fit: expected a non-empty batch (N, C, H, W) or (N, H, W),"
                f" got shape {images.shape}"
            )
        self.dims = None
        count, mean, square_sum = 0, 0.0, 0.0
        for start in range(0, len(images), self.chunk_size):
            chunk = self.features(images[start : start + self.chunk_size])
            # Chan et al.'s pairwise update of the mean and the sum of squared deviations.
            chunk_mean = chunk.mean(axis=0)
            chunk_square_sum = ((chunk - chunk_mean) ** 2).sum(axis=0)
            total = count + len(chunk)
            delta = chunk_mean - mean
            mean = mean + delta * (len(chunk) / total)
            square_sum = square_sum + chunk_square_sum + delta**2 * (count * len(chunk) / total)
            count = total
        std = np.sqrt(square_sum / count)
        self.mean = mean
        self.std = np.where(std < STD_FLOOR, 1.0, std)
        self.input_shape = tuple(as_float_images(images[:1]).shape[1:])
        return self

    def transform(self, images):
        """Standardised features: (features - mean) / std.

        Args:
            images: (N, C, H, W) or (N, H, W) of the training images' (C, H, W), uint8 in
                0..255 or float in [0, 1].

        Returns:
            (N, D) float32.
        """
        if self.mean is None:
            raise RuntimeError("FeaturePipeline.transform: call fit first (or from_config)")
        images = np.asarray(images)
        shape = images.shape[1:] if images.ndim == 4 else (1,) + images.shape[1:]
        if images.ndim not in (3, 4) or tuple(shape) != self.input_shape:
            channels, height, width = self.input_shape
            raise ValueError(
                f"FeaturePipeline.transform: expected images of shape (N, {channels}, {height},"
                f" {width}) as in fit, got {images.shape}"
            )
        out = np.empty((len(images), len(self.mean)), dtype=np.float32)
        for start in range(0, len(images), self.chunk_size):
            chunk = self.features(images[start : start + self.chunk_size])
            out[start : start + len(chunk)] = (chunk - self.mean) / self.std
        return out

    def fit_transform(self, images):
        """fit(images), then transform(images); the features are computed twice to save memory.

        Returns:
            (N, D) float32, equal to fit(images).transform(images).
        """
        return self.fit(images).transform(images)

    def feature_slices(self):
        """{name: slice} locating each feature's columns in the (N, D) output (after fit)."""
        if self.dims is None:
            raise RuntimeError("FeaturePipeline.feature_slices: call fit first")
        slices, start = {}, 0
        for name in self.names:
            slices[name] = slice(start, start + self.dims[name])
            start += self.dims[name]
        return slices

    def state_dict(self):
        """{"mean": (D,) float64, "std": (D,) float64}: the fitted statistics (after fit)."""
        if self.mean is None:
            raise RuntimeError("FeaturePipeline.state_dict: call fit first")
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    def config(self):
        """JSON-serialisable description: names, options and, after fit, input shape and dims."""
        return {
            "names": list(self.names),
            "options": {
                "orientations": self.orientations,
                "pixels_per_cell": list(self.pixels_per_cell),
                "cells_per_block": list(self.cells_per_block),
                "block_norm": self.block_norm,
                "transform_sqrt": self.transform_sqrt,
                "bins": self.bins,
                "n_radii": self.n_radii,
                "n_angles": self.n_angles,
                "chunk_size": self.chunk_size,
            },
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "dims": None if self.dims is None else dict(self.dims),
        }

    @classmethod
    def from_config(cls, config, state=None):
        """Rebuild a pipeline from config() and, for a fitted one, state_dict().

        Args:
            config: a dict as returned by config() (after a JSON round trip too).
            state: {"mean": (D,), "std": (D,)} array-likes, or None for an unfitted pipeline.

        Raises:
            ValueError when state is missing, partial, or of the wrong length for config.
        """
        options = dict(config["options"])
        options["pixels_per_cell"] = tuple(options["pixels_per_cell"])
        options["cells_per_block"] = tuple(options["cells_per_block"])
        pipeline = cls(tuple(config["names"]), **options)
        if state is None:
            return pipeline
        if set(state) != {"mean", "std"} or config.get("dims") is None:
            raise ValueError(
                "FeaturePipeline.from_config: state must hold exactly 'mean' and 'std' and"
                f" config must be a fitted one, got state keys {sorted(state)}"
            )
        size = sum(config["dims"].values())
        mean = np.asarray(state["mean"], dtype=np.float64)
        std = np.asarray(state["std"], dtype=np.float64)
        if mean.shape != (size,) or std.shape != (size,):
            raise ValueError(
                f"FeaturePipeline.from_config: expected mean and std of shape ({size},),"
                f" got {mean.shape} and {std.shape}"
            )
        pipeline.mean, pipeline.std = mean.copy(), std.copy()
        pipeline.input_shape = tuple(config["input_shape"])
        pipeline.dims = {name: int(config["dims"][name]) for name in pipeline.names}
        return pipeline
