"""A labelled set of images held as raw uint8, and the pure functions on it (split, statistics).

Images stay uint8 in memory (one byte a pixel, the size of the files) and become float32 only
batch by batch in the loader.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageDataset:
    """Images and their labels, in memory.

    Attributes:
        images: (N, C, H, W) uint8, pixel values 0..255.
        labels: (N,) int64, each in 0..len(classes) - 1.
        classes: class names, indexed by label.
        skipped: files of an image folder that were not loaded, each as "path: reason"
            (empty for the built-in datasets).
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                "ImageDataset: images must be uint8 of shape (N, C, H, W), "
                f"got {self.images.dtype} of shape {self.images.shape}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"ImageDataset: expected labels of shape ({len(self.images)},), "
                f"got {self.labels.shape}"
            )
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(
                f"ImageDataset: labels must lie in 0..{len(self.classes) - 1}, "
                f"found {self.labels.min()}..{self.labels.max()}"
            )
        self.classes = list(self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(self.images.shape[1:])

    def subset(self, indices) -> "ImageDataset":
        """The images at `indices` (ints or a boolean mask), copied, in that order."""
        indices = np.asarray(indices)
        return ImageDataset(self.images[indices], self.labels[indices], self.classes)


def split_count(size, total: int) -> int:
    """How many of `total` items `size` asks for: an int count, or a float fraction in (0, 1)."""
    if isinstance(size, bool) or not isinstance(size, int | float | np.integer | np.floating):
        raise ValueError(f"split size must be an int count or a float fraction, got {size!r}")
    if isinstance(size, float | np.floating):
        if not 0.0 < size < 1.0:
            raise ValueError(f"split fraction must lie strictly between 0 and 1, got {size}")
        size = int(round(size * total))
    if not 0 < size < total:
        raise ValueError(
            f"split size must leave both parts non-empty: asked for {size} of {total} images"
        )
    return int(size)


def train_val_split(
    dataset: ImageDataset, val_size, seed: int
) -> tuple[ImageDataset, ImageDataset]:
    """Carve a validation set out of a training set, the same way for the same seed.

    Args:
        dataset: the training data, N images.
        val_size: int count, or float fraction of N (rounded), taken for validation.
        seed: seeds numpy.random.default_rng; the split depends on nothing else.

    Returns:
        (train, val): N - V and V images; each keeps the original relative order.
    """
    count = split_count(val_size, len(dataset))
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.subset(np.sort(order[count:])), dataset.subset(np.sort(order[:count]))


def channel_stats(
    dataset: ImageDataset, chunk_size: int = 4096, min_std: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the pixels, on the [0, 1] scale.

    Counts the 256 pixel values of each channel chunk by chunk, so no float copy of the
    dataset is ever made; the moments follow exactly from the counts. The standard deviation is
    the population one (divided by the number of pixels), floored at `min_std` so that a
    constant channel does not divide by zero when normalising.

    Args:
        dataset: images (N, C, H, W) uint8, N > 0.

    Returns:
        (mean, std): float32 arrays of shape (C,).
    """
    if len(dataset) == 0:
        raise ValueError("channel_stats: the dataset is empty")
    channels = dataset.images.shape[1]
    counts = np.zeros((channels, 256), dtype=np.int64)
    for start in range(0, len(dataset), chunk_size):
        chunk = dataset.images[start : start + chunk_size]
        for channel in range(channels):
            counts[channel] += np.bincount(chunk[:, channel].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1)
    mean = counts @ values / total
    variance = (counts * (values - mean[:, None]) ** 2).sum(axis=1) / total
    std = np.maximum(np.sqrt(variance), min_std)
    return mean.astype(np.float32), std.astype(np.float32)
