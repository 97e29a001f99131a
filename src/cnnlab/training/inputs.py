"""How images become a model's input: normalised pixels, or standardised hand-designed features.

    inputs = fit_inputs(train_set)                     # PixelInputs: per-channel mean and std
    inputs = fit_inputs(train_set, ["hog", "color"])   # FeatureInputs: a fitted FeaturePipeline
    loader = inputs.loader(val_set, batch_size=500)    # batches (x, y) of model inputs, labels
    x = inputs.transform(pixels)                       # (N, C, H, W) uint8 -> model inputs

Both kinds are fitted on the training split alone, save their statistics with the model
(`preprocessing()` into its JSON metadata; the features' `arrays()` by `save_statistics` into
their own checkpoint, RUN_DIR/features, apart from the weights) and are rebuilt from them by
`inputs_from_checkpoint`, so evaluate and predict prepare new images exactly as training did.
A loader over features computes them once, when it is made, as an (N, D) float32 matrix; its
batches are drawn from the matrix in the same seeded order as images would be, so a resumed
run sees the same batches.
"""

import dataclasses
from pathlib import Path

import numpy as np

from cnnlab.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.data import DataLoader, ImageDataset, channel_stats
from cnnlab.errors import CheckpointError
from cnnlab.features import FeaturePipeline
from cnnlab.training.rundir import FEATURES_FORMAT, features_path

FEATURE_ARRAYS = ("features.mean", "features.std")  # their keys in a checkpoint


def hog_options(height: int, width: int) -> dict:
    """HOG cells of a seventh of the image side, at least 4 pixels, in blocks of 2 x 2 cells.

    At 28 x 28 (and 32 x 32): 4 x 4 cells, 7 x 7 of them, 6 x 6 blocks of 36 numbers, 1296 in
    all (the contract's default 8 x 8 cells in 3 x 3 blocks leave a single block, 81 numbers,
    at 28 x 28). Larger images get larger cells, so the vector stays near that length.
    """
    cell = max(4, min(height, width) // 7)
    return {"pixels_per_cell": (cell, cell), "cells_per_block": (2, 2)}


def fit_inputs(train_set: ImageDataset, features=None):
    """PixelInputs with the training images' channel statistics, or, given feature names,
    FeatureInputs with a FeaturePipeline of those features fitted on the training images."""
    if features is None:
        mean, std = channel_stats(train_set)
        return PixelInputs(train_set.image_shape, mean, std)
    _, height, width = train_set.image_shape
    pipeline = FeaturePipeline(tuple(features), **hog_options(height, width))
    return FeatureInputs(train_set.image_shape, pipeline.fit(train_set.images))


def inputs_from_checkpoint(preprocessing: dict, arrays: dict, folder=None):
    """The inputs a model was trained with, from its metadata's "preprocessing" and, for
    features, their statistics "features.mean" and "features.std".

    Args:
        preprocessing: the checkpoint's metadata's "preprocessing".
        arrays: the checkpoint's arrays. A training state (RUN_DIR/last) holds the statistics,
            and so do models saved before the statistics had a checkpoint of their own.
        folder: the checkpoint's folder. When given and `arrays` lacks the statistics, they
            are read from the folder's features checkpoint (see `save_statistics`).

    Raises:
        CheckpointError when the feature statistics are missing, damaged or do not fit.
    """
    image_shape = (preprocessing["channels"], *preprocessing["input_size"])
    if "features" not in preprocessing:
        return PixelInputs(image_shape, preprocessing["mean"], preprocessing["std"])
    if folder is not None and not set(FEATURE_ARRAYS) <= set(arrays):
        arrays, _ = load_checkpoint(features_path(folder))
    missing = [key for key in FEATURE_ARRAYS if key not in arrays]
    if missing:
        raise CheckpointError(f"the checkpoint lacks the feature statistics {missing}")
    state = {key.removeprefix("features."): arrays[key] for key in FEATURE_ARRAYS}
    try:
        pipeline = FeaturePipeline.from_config(preprocessing["features"], state)
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"cannot rebuild the feature pipeline: {error}") from None
    return FeatureInputs(image_shape, pipeline)


class PixelInputs:
    """Pixels normalised per channel: x = (pixel / 255 - mean) / std, float32.

    Attributes:
        image_shape: (C, H, W) of the images. input_shape: the same, the model's input.
        mean, std: (C,) float32, the training images' channel statistics on the [0, 1] scale.
    """

    def __init__(self, image_shape, mean, std):
        self.image_shape = self.input_shape = tuple(image_shape)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def loader(self, dataset, batch_size, shuffle=False, seed=0, augment=None) -> DataLoader:
        """Batches (x (B, C, H', W') float32, y (B,) int64) of `dataset` (see DataLoader)."""
        return DataLoader(dataset, batch_size, shuffle=shuffle, seed=seed, mean=self.mean,
                          std=self.std, augment=augment)

    def transform(self, pixels) -> np.ndarray:
        """(N, C, H, W) uint8 -> (N, C, H, W) float32, the loader's operations in its order."""
        x = np.asarray(pixels).astype(np.float32)
        x /= np.float32(255)
        x -= self.mean.reshape(-1, 1, 1)
        x /= self.std.reshape(-1, 1, 1)
        return x

    def preprocessing(self) -> dict:
        channels, height, width = self.image_shape
        return {"input_size": [height, width], "channels": channels,
                "mean": self.mean.tolist(), "std": self.std.tolist(),
                "resize": "bilinear", "normalise": "(pixel / 255 - mean) / std"}

    def arrays(self) -> dict:
        return {}

    def save_statistics(self, folder) -> None:
        """Nothing to write: the mean and std are in `preprocessing()`."""


class FeatureInputs:
    """Hand-designed features of the images, standardised with the training statistics.

    Attributes:
        image_shape: (C, H, W) of the images.
        pipeline: the fitted FeaturePipeline, (N, C, H, W) uint8 -> (N, D) float32.
        input_shape: (1, 1, D): a feature vector enters the flattening models (linear, svm,
            mlp) as a one-channel 1 x D image; Flatten leaves the (N, D) batches as they are.
    """

    def __init__(self, image_shape, pipeline: FeaturePipeline):
        self.image_shape = tuple(image_shape)
        self.pipeline = pipeline
        self.input_shape = (1, 1, len(pipeline.mean))

    def loader(self, dataset, batch_size, shuffle=False, seed=0, augment=None) -> DataLoader:
        """Batches (x (B, D) float32, y (B,) int64) of the features of `dataset`'s images,
        computed here, once."""
        if augment is not None:
            raise ValueError("features are computed once per image: no augmentation")
        features = FeatureSet(self.transform(dataset.images), dataset.labels, dataset.classes)
        return FeatureLoader(features, batch_size, shuffle=shuffle, seed=seed)

    def transform(self, pixels) -> np.ndarray:
        """(N, C, H, W) uint8 -> (N, D) float32 standardised features."""
        return self.pipeline.transform(pixels)

    def preprocessing(self) -> dict:
        channels, height, width = self.image_shape
        names = ", ".join(self.pipeline.names)
        return {"input_size": [height, width], "channels": channels, "resize": "bilinear",
                "features": self.pipeline.config(),
                "normalise": f"features ({names}) of pixel / 255, then (feature - mean) / std "
                             f"with the arrays {' and '.join(FEATURE_ARRAYS)}"}

    def arrays(self) -> dict:
        """The pipeline's statistics, (D,) float64 each, under FEATURE_ARRAYS."""
        state = self.pipeline.state_dict()
        return {key: state[key.removeprefix("features.")] for key in FEATURE_ARRAYS}

    def save_statistics(self, folder) -> Path:
        """Write `arrays()` as the checkpoint FOLDER/features (features.safetensors and .json,
        with `preprocessing()`), apart from the model's weights; returns the .safetensors."""
        metadata = {"format": FEATURES_FORMAT, "preprocessing": self.preprocessing()}
        return Path(save_checkpoint(features_path(folder), self.arrays(), metadata)[0])


@dataclasses.dataclass
class FeatureSet:
    """Feature vectors standing in for a dataset's images, for a DataLoader to batch.

    Attributes:
        images: (N, D) float32 features (named as ImageDataset's images, which DataLoader reads).
        labels: (N,) int64. classes: class names, indexed by label.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


class FeatureLoader(DataLoader):
    """A DataLoader over a FeatureSet: the same seeded order and resumable position, and the
    rows as they are (already standardised float32) instead of normalised pixels."""

    def normalise(self, features: np.ndarray) -> np.ndarray:
        return features
