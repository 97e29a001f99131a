"""Image batches in, fixed feature maps out: the input convention, raw pixels, polar resampling.

Input convention for every feature here and in the pipeline: a batch (N, C, H, W) or
(N, H, W) (read as C = 1), either uint8 in 0..255 (divided by 255) or floating point in
[0, 1]; both become float64 in [0, 1]. `hog` alone keeps scikit-image's convention (values
used as given), so that its numbers are scikit-image's.
"""

from functools import lru_cache

import numpy as np


def as_float_images(images, name="images"):
    """Check a batch and convert it to float64 (N, C, H, W) in [0, 1].

    Args:
        images: (N, C, H, W) or (N, H, W) array-like; uint8 in 0..255 or floating point in
            [0, 1].
        name: what to call the argument in error messages.

    Returns:
        (N, C, H, W) float64 in [0, 1]; uint8 values are divided by 255.

    Raises:
        ValueError for another number of dimensions, another dtype (int, bool, complex), or
        floating-point values outside [0, 1] (NaN included).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W) or (N, H, W), got {images.shape}")
    if images.dtype == np.uint8:
        return images / 255.0
    if images.dtype.kind != "f":
        raise ValueError(
            f"{name}: expected uint8 in 0..255 or floating point in [0, 1], got {images.dtype}"
        )
    images = images.astype(np.float64, copy=False)
    if images.size and not (images.min() >= 0.0 and images.max() <= 1.0):
        raise ValueError(
            f"{name}: floating-point images must lie in [0, 1], got values in"
            f" [{images.min()}, {images.max()}]"
        )
    return images


def raw_pixels(images):
    """The pixels themselves as a feature vector: the baseline every other feature is judged by.

    Args:
        images: (N, C, H, W) or (N, H, W), uint8 in 0..255 or float in [0, 1].

    Returns:
        (N, C * H * W) float64 in [0, 1], in C, H, W order.
    """
    images = as_float_images(images)
    return images.reshape(len(images), -1)


def polar_coordinates(images, n_radii=None, n_angles=None):
    """Resample each image on a polar grid around its centre: rotations become shifts.

    The lecture's example of a fixed feature map: a classifier that is linear in its weights
    W, applied to phi(x) instead of x. Here phi moves each pixel from (row, column) to
    (radius, angle) around the image centre ((H - 1) / 2, (W - 1) / 2), a non-linear change
    of the image plane, so a rotation of the image about its centre becomes a cyclic shift
    along the angle axis and a ring becomes a row. (As a function of the pixel values phi is
    linear: a fixed sampling matrix, so only the change of coordinates adds anything.)

    Sample (i, j) is at radius r_i = i * R_max / (n_radii - 1), R_max = (min(H, W) - 1) / 2
    (the largest circle inside the image), and angle theta_j = 2 pi j / n_angles measured
    from the column axis towards the row axis: row = (H - 1) / 2 + r_i sin(theta_j),
    column = (W - 1) / 2 + r_i cos(theta_j). Values are interpolated bilinearly between the
    four surrounding pixels; the sampling positions and weights depend only on (H, W,
    n_radii, n_angles), are computed once and cached.

    Args:
        images: (N, C, H, W) or (N, H, W), uint8 in 0..255 or float in [0, 1].
        n_radii: number of radii R. Default: min(H, W) // 2
        n_angles: number of angles A. Default: 2 * max(H, W)

    Returns:
        (N, C, R, A) float64 in [0, 1]; row 0 is the centre value repeated.
    """
    images = as_float_images(images)
    height, width = images.shape[2:]
    n_radii = min(height, width) // 2 if n_radii is None else n_radii
    n_angles = 2 * max(height, width) if n_angles is None else n_angles
    for name, value in (("n_radii", n_radii), ("n_angles", n_angles)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"polar_coordinates: {name} must be a positive int, got {value!r}")
    index, weight = polar_sampling(height, width, int(n_radii), int(n_angles))
    flat = images.reshape(images.shape[0], images.shape[1], height * width)
    out = np.zeros(images.shape[:2] + index.shape[:2])
    for corner in range(4):
        out += flat[:, :, index[..., corner]] * weight[..., corner]
    return out


@lru_cache(maxsize=16)
def polar_sampling(height, width, n_radii, n_angles):
    """Flat pixel indices and bilinear weights of the polar grid, see polar_coordinates.

    Returns:
        index: (R, A, 4) int, into the flattened H * W image: the four corners of the cell
            around each sample (top-left, top-right, bottom-left, bottom-right).
        weight: (R, A, 4) float64, their bilinear weights, summing to 1.
    """
    radius_max = (min(height, width) - 1) / 2
    radii = radius_max * np.arange(n_radii) / max(n_radii - 1, 1)
    angles = 2 * np.pi * np.arange(n_angles) / n_angles
    rows = (height - 1) / 2 + radii[:, None] * np.sin(angles)
    cols = (width - 1) / 2 + radii[:, None] * np.cos(angles)
    # Top-left corner, kept one pixel inside so that the bottom-right corner exists.
    top = np.clip(np.floor(rows).astype(np.intp), 0, max(height - 2, 0))
    left = np.clip(np.floor(cols).astype(np.intp), 0, max(width - 2, 0))
    down = np.clip(rows - top, 0.0, 1.0)
    right = np.clip(cols - left, 0.0, 1.0)
    bottom = np.minimum(top + 1, height - 1)
    after = np.minimum(left + 1, width - 1)
    index = np.stack(
        [top * width + left, top * width + after, bottom * width + left, bottom * width + after],
        axis=-1,
    )
    weight = np.stack(
        [(1 - down) * (1 - right), (1 - down) * right, down * (1 - right), down * right],
        axis=-1,
    )
    index.setflags(write=False)
    weight.setflags(write=False)
    return index, weight
