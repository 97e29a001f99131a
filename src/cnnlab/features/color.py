"""Colour features: the histogram of hues (colour images) or of intensities (grey images)."""

import numpy as np

from cnnlab.features.transforms import as_float_images


def rgb_to_hue(images):
    """HSV hue of every pixel, as matplotlib.colors.rgb_to_hsv computes it.

    With V = max(r, g, b) and delta = V - min(r, g, b): hue = (g - b) / delta when red is the
    largest, 2 + (b - r) / delta when green is, 4 + (r - g) / delta when blue is (blue before
    green before red on a tie), divided by 6 and taken modulo 1. Grey pixels (delta == 0)
    have no hue; they get 0, as in matplotlib and colorsys.

    Args:
        images: (N, 3, H, W) float RGB in [0, 1].

    Returns:
        (N, H, W) float64 hue in [0, 1): 0 red, 1/6 yellow, 1/3 green, 1/2 cyan, 2/3 blue,
        5/6 magenta.
    """
    red, green, blue = images[:, 0], images[:, 1], images[:, 2]
    value = np.maximum(np.maximum(red, green), blue)
    delta = value - np.minimum(np.minimum(red, green), blue)
    safe_delta = np.where(delta > 0, delta, 1.0)
    hue = np.where(
        blue == value,
        4.0 + (red - green) / safe_delta,
        np.where(green == value, 2.0 + (blue - red) / safe_delta, (green - blue) / safe_delta),
    )
    hue = (hue / 6.0) % 1.0
    return np.where(delta > 0, hue, 0.0)


def color_histogram(images, bins=10):
    """Fraction of pixels per hue bin (colour images) or per intensity bin (grey images).

    The bins split [0, 1] into `bins` equal parts: bin k holds values in
    [k / bins, (k + 1) / bins), the last bin also holds 1. For colour the value is the HSV
    hue (see rgb_to_hue; grey pixels count as hue 0, red); for grey it is the intensity.

    Args:
        images: (N, 3, H, W) RGB or (N, 1, H, W) / (N, H, W) grey; uint8 in 0..255
            (divided by 255) or float in [0, 1].
        bins: number of bins, a positive int. Default: 10

    Returns:
        (N, bins) float64; each row sums to 1.

    Raises:
        ValueError for C other than 1 or 3, a bad `bins`, or values outside the range above.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"color_histogram: bins must be a positive int, got {bins!r}")
    images = as_float_images(images, "color_histogram")
    channels = images.shape[1]
    if channels not in (1, 3):
        raise ValueError(
            f"color_histogram: expected 1 (grey) or 3 (RGB) channels, got {channels}"
            f" in images of shape {images.shape}"
        )
    values = rgb_to_hue(images) if channels == 3 else images[:, 0]
    batch = len(values)
    values = values.reshape(batch, -1)
    index = np.minimum((values * bins).astype(np.intp), bins - 1)
    index += bins * np.arange(batch)[:, None]
    counts = np.bincount(index.ravel(), minlength=batch * bins).reshape(batch, bins)
    return counts / values.shape[1]
