"""Training augmentations on whole batches, vectorised (no loop over images).

Each is a callable `aug(batch, rng) -> batch`: batch (B, C, H, W) of any dtype (the loader
passes uint8), rng a numpy.random.Generator supplying every random choice, so the same
generator state gives the same result. Labels are untouched. Padding fills with zeros, before
normalisation, as torchvision does.

Note: a horizontal flip turns a digit into a different shape; use it for clothes or objects,
not for MNIST.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(value, name) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, int | np.integer) or v < 0 for v in pair):
        raise ValueError(f"{name} must be a non-negative int or (h, w) pair, got {value!r}")
    return int(pair[0]), int(pair[1])


def crop_at(batch: np.ndarray, top: np.ndarray, left: np.ndarray, size) -> np.ndarray:
    """Cut a window of `size` out of each image, each at its own corner.

    Args:
        batch: (B, C, H, W).
        top, left: (B,) ints, 0 <= top <= H - h, 0 <= left <= W - w.
        size: (h, w).

    Returns:
        (B, C, h, w), a new array.
    """
    windows = sliding_window_view(batch, size, axis=(2, 3))  # (B, C, H-h+1, W-w+1, h, w)
    return windows[np.arange(len(batch)), :, top, left]


def _pad(batch: np.ndarray, padding: tuple[int, int]) -> np.ndarray:
    pad_h, pad_w = padding
    if pad_h == pad_w == 0:
        return batch
    return np.pad(batch, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))


class RandomCrop:
    """Zero-pad each side by `padding`, then cut a window of `size` at a random place per image.

    Args:
        size: (h, w) or int of the output; Default: the input's own (H, W).
        padding: int or (pad_h, pad_w) added to each side first. Default: 0.

    Shape:
        (B, C, H, W) -> (B, C, h, w), needing h <= H + 2 * pad_h and w <= W + 2 * pad_w.
    """

    def __init__(self, size=None, padding=0):
        self.size = None if size is None else _pair(size, "size")
        self.padding = _pair(padding, "padding")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        padded = _pad(batch, self.padding)
        height, width = self.size or batch.shape[2:]
        free_h, free_w = padded.shape[2] - height, padded.shape[3] - width
        if free_h < 0 or free_w < 0:
            raise ValueError(
                f"RandomCrop: crop {(height, width)} is larger than the padded image "
                f"{padded.shape[2:]}"
            )
        top = rng.integers(0, free_h + 1, size=len(batch))
        left = rng.integers(0, free_w + 1, size=len(batch))
        return crop_at(padded, top, left, (height, width))

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomTranslate:
    """Shift each image by its own whole-pixel (dy, dx), each uniform in
    [-max_shift, max_shift], filling the uncovered border with zeros.

    Args:
        max_shift: int or (max_dy, max_dx).

    Shape:
        (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, max_shift):
        self.max_shift = _pair(max_shift, "max_shift")

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        max_dy, max_dx = self.max_shift
        shift_y = rng.integers(-max_dy, max_dy + 1, size=len(batch))
        shift_x = rng.integers(-max_dx, max_dx + 1, size=len(batch))
        # Output pixel (i, j) shows input (i - dy, j - dx), i.e. padded (i - dy + max_dy, ...).
        padded = _pad(batch, self.max_shift)
        return crop_at(padded, max_dy - shift_y, max_dx - shift_x, batch.shape[2:])

    def __repr__(self):
        return f"RandomTranslate(max_shift={self.max_shift})"


class RandomHorizontalFlip:
    """Mirror each image left to right with probability p.

    Args:
        p: probability of flipping an image. Default: 0.5.

    Shape:
        (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, p=0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        flip = rng.random(len(batch)) < self.p
        return np.where(flip[:, None, None, None], batch[..., ::-1], batch)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply augmentations in order, all drawing from the same generator."""

    def __init__(self, augmentations):
        self.augmentations = list(augmentations)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for augmentation in self.augmentations:
            batch = augmentation(batch, rng)
        return batch

    def __repr__(self):
        return f"Compose({self.augmentations})"
