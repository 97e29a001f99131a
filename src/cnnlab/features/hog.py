"""Histogram of oriented gradients (HOG), vectorised over a batch, with scikit-image's numbers.

The steps are scikit-image's (`skimage.feature.hog`, 0.19 and later), each one array operation
over a chunk of images (256 at a time) instead of a loop over images:

1. optional square root of the image (`transform_sqrt`);
2. gradients by central differences, img[i + 1] - img[i - 1], zero on the border rows
   (for g_row) and columns (for g_col); for colour, each pixel keeps the gradient of the
   channel with the largest magnitude (the first such channel on a tie);
3. per pixel, magnitude hypot(g_col, g_row) and unsigned orientation
   rad2deg(arctan2(g_row, g_col)) % 180 in degrees; bin i holds orientations in
   [i * 180 / O, (i + 1) * 180 / O), edges computed as (180 / O) * i;
4. cells of pixels_per_cell pixels tile the image from the top-left corner; rows and columns
   that do not fill a whole cell are dropped. A cell's bin value is the sum of the magnitudes
   of its pixels in that bin, divided by the cell area;
5. blocks of cells_per_block cells, stride one cell, each normalised on its own (L1, L1-sqrt,
   L2 or L2-Hys, eps = 1e-5), flattened in (block_row, block_col, cell_row, cell_col, bin)
   order.

scikit-image adds up each cell in a C `float` (float32), pixel by pixel in row-major order,
and divides in float32. Step 4 repeats exactly that rounding, so the features agree with
scikit-image's to float64 rounding (about 1e-15) rather than to float32's 1e-7.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnlab.shapes import pair

BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
EPS = 1e-5
CHUNK_SIZE = 256  # images per step: small enough for the cache, large enough for NumPy


def check_hog_arguments(orientations, pixels_per_cell, cells_per_block, block_norm):
    """Validate HOG arguments; return (orientations, (cell_h, cell_w), (block_h, block_w))."""
    if isinstance(orientations, bool) or not isinstance(orientations, int | np.integer):
        raise ValueError(f"hog: orientations must be a positive int, got {orientations!r}")
    if orientations < 1:
        raise ValueError(f"hog: orientations must be a positive int, got {orientations!r}")
    cell = pair(pixels_per_cell, "pixels_per_cell")
    block = pair(cells_per_block, "cells_per_block")
    for name, value in (("pixels_per_cell", cell), ("cells_per_block", block)):
        if min(value) < 1:
            raise ValueError(f"hog: {name} must be positive, got {value}")
    if block_norm not in BLOCK_NORMS:
        raise ValueError(f"hog: block_norm must be one of {BLOCK_NORMS}, got {block_norm!r}")
    return int(orientations), cell, block


def hog_output_size(height, width, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(3, 3)):
    """Length D of the HOG vector of an H x W image.

    D = n_blocks_h * n_blocks_w * block_h * block_w * orientations, with
    n_cells = H // cell_h and n_blocks = n_cells - block_h + 1 on each axis.
    Raises ValueError, with the smallest usable size, when no block fits.
    """
    cell_h, cell_w = pair(pixels_per_cell, "pixels_per_cell")
    block_h, block_w = pair(cells_per_block, "cells_per_block")
    blocks_h = height // cell_h - block_h + 1
    blocks_w = width // cell_w - block_w + 1
    if blocks_h <= 0 or blocks_w <= 0:
        raise ValueError(
            f"hog: image of {height} x {width} pixels is too small for blocks of"
            f" {block_h} x {block_w} cells of {cell_h} x {cell_w} pixels; it needs at least"
            f" {block_h * cell_h} rows and {block_w * cell_w} columns"
        )
    return blocks_h * blocks_w * block_h * block_w * orientations


def hog(
    images,
    orientations=9,
    pixels_per_cell=(8, 8),
    cells_per_block=(3, 3),
    block_norm="L2-Hys",
    transform_sqrt=False,
):
    """HOG feature vectors of a batch of images, equal to scikit-image's for each image.

    Args:
        images: (N, H, W) grey or (N, C, H, W) images, any real dtype. Values are used as
            given (converted to float64, not rescaled), as scikit-image does: a uint8 image
            gives the features of its 0..255 values. For C > 1 each pixel uses the channel
            with the strongest gradient, as `skimage.feature.hog(..., channel_axis=-1)` on the
            (H, W, C) image; C == 1 is the same as grey.
        orientations: number of orientation bins over [0, 180) degrees. Default: 9
        pixels_per_cell: int or (cell_h, cell_w). Default: (8, 8)
        cells_per_block: int or (block_h, block_w). Default: (3, 3)
        block_norm: "L1", "L1-sqrt", "L2" or "L2-Hys". Default: "L2-Hys"
        transform_sqrt: take the square root of the image first (values must be >= 0).
            Default: False

    Returns:
        (N, D) float64 array, D = n_blocks_h * n_blocks_w * block_h * block_w * orientations,
        where n_cells_h = H // cell_h and n_blocks_h = n_cells_h - block_h + 1 (likewise for
        W). Equal to `skimage.feature.hog(image, ..., feature_vector=True)` to about 1e-15
        for float64 and integer images (a float32 image is taken as its float64 values,
        where scikit-image would compute its gradients in float32).

    Raises:
        ValueError for a bad argument, a batch that is not 3-d or 4-d, or images too small
        to hold one block.
    """
    orientations, cell, block = check_hog_arguments(
        orientations, pixels_per_cell, cells_per_block, block_norm
    )
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(
            f"hog: expected images of shape (N, H, W) or (N, C, H, W), got {images.shape}"
        )
    batch, _, height, width = images.shape
    size = hog_output_size(height, width, orientations, cell, block)
    crop = (height // cell[0] * cell[0], width // cell[1] * cell[1])
    features = np.empty((batch, size))
    for start in range(0, batch, CHUNK_SIZE):  # chunks keep the work arrays in cache
        chunk = images[start : start + CHUNK_SIZE].astype(np.float64, copy=False)
        if transform_sqrt:
            chunk = np.sqrt(chunk)
        g_row, g_col = dominant_gradients(chunk, crop)
        histograms = cell_histograms(g_row, g_col, orientations, cell)
        blocks = normalize_blocks(histograms, block, block_norm)
        features[start : start + CHUNK_SIZE] = blocks.reshape(len(chunk), size)
    return features


def dominant_gradients(images, crop):
    """Central-difference gradients of the channel with the largest gradient magnitude.

    Args:
        images: (N, C, H, W) float64.
        crop: (H_crop, W_crop), the top-left region to return (the pixels that cells cover).

    Returns:
        g_row, g_col: (N, H_crop, W_crop) float64, g_row[i, j] = img[i + 1, j] - img[i - 1, j]
        and g_col[i, j] = img[i, j + 1] - img[i, j - 1], zero on the image border.
    """
    rows, cols = crop
    g_row = np.zeros(images.shape[:2] + crop)
    g_col = np.zeros(images.shape[:2] + crop)
    last_row = min(rows, images.shape[2] - 1)
    last_col = min(cols, images.shape[3] - 1)
    g_row[:, :, 1:last_row] = (
        images[:, :, 2 : last_row + 1, :cols] - images[:, :, : last_row - 1, :cols]
    )
    g_col[:, :, :, 1:last_col] = (
        images[:, :, :rows, 2 : last_col + 1] - images[:, :, :rows, : last_col - 1]
    )
    if images.shape[1] == 1:
        return g_row[:, 0], g_col[:, 0]
    strongest = np.hypot(g_row, g_col).argmax(axis=1)[:, None]
    g_row = np.take_along_axis(g_row, strongest, axis=1)[:, 0]
    g_col = np.take_along_axis(g_col, strongest, axis=1)[:, 0]
    return g_row, g_col


def orientation_bins(g_row, g_col, orientations):
    """Orientation bin of each pixel, exactly as scikit-image compares it.

    scikit-image puts a pixel in bin i when edge_i <= d < edge_(i + 1), where
    d = rad2deg(arctan2(g_row, g_col)) % 180 and edge_i = (180 / O) * i. This computes the
    same d and compares it with the same edges, without the slow float modulo and binary
    search: d % 180 is d + 180 for negative d (as NumPy's modulo computes it) and 0 for
    d == 180, and a first guess trunc(d * O / 180), off by at most one, is corrected by
    comparing with the edges on both sides.

    Args:
        g_row, g_col: (N, H, W) gradients.
        orientations: number of bins O.

    Returns:
        (N, H, W) int array in 0..O; O marks an orientation that no bin holds (it can only
        happen when rounding puts d at or above the last edge, (180 / O) * O).
    """
    degrees = np.arctan2(g_row, g_col)
    np.rad2deg(degrees, out=degrees)
    folded = degrees + (degrees < 0) * 180.0
    edges = np.append((180.0 / orientations) * np.arange(orientations + 1), np.inf)
    bins = (folded * (orientations / 180.0)).astype(np.int32)
    np.minimum(bins, orientations, out=bins)
    bins -= folded < edges.take(bins)
    bins += folded >= edges.take(bins + 1)
    bins[degrees == 180] = 0
    return bins


def cell_histograms(g_row, g_col, orientations, cell):
    """Per-cell orientation histograms, rounded as scikit-image's float32 accumulator does.

    Args:
        g_row, g_col: (N, H, W) gradients with H, W multiples of the cell size.
        orientations: number of bins O.
        cell: (cell_h, cell_w).

    Returns:
        (N, H // cell_h, W // cell_w, O) float64: per bin, the sum of the magnitudes of the
        cell's pixels in that bin divided by cell_h * cell_w, every partial sum rounded to
        float32 in row-major pixel order.

    scikit-image's magnitude is np.hypot(g_col, g_row). sqrt(g_col**2 + g_row**2) is six
    times faster and within one unit in the last place of it, which changes a float32 partial
    sum only when the float64 sum lies next to a float32 rounding midpoint. When any sum does,
    the histograms are computed again with np.hypot; so the result is always scikit-image's.
    """
    bins = orientation_bins(g_row, g_col, orientations)
    magnitude = np.sqrt(g_col * g_col + g_row * g_row)
    histograms, sums = accumulate_cells(magnitude, bins, orientations, cell)
    if near_float32_midpoint(sums).any():
        histograms, _ = accumulate_cells(np.hypot(g_col, g_row), bins, orientations, cell)
    return histograms


def accumulate_cells(magnitude, bins, orientations, cell):
    """Add up magnitudes per (cell, bin), pixel by pixel, in a float32 accumulator.

    Args:
        magnitude: (N, H, W) float64, H and W multiples of the cell size.
        bins: (N, H, W) ints in 0..O (O: in no bin, left out).
        orientations: number of bins O.
        cell: (cell_h, cell_w).

    Returns:
        histograms: (N, H // cell_h, W // cell_w, O) float64 cell means, as cell_histograms.
        sums: (cell_h * cell_w, N * H // cell_h * W // cell_w) float64, the float64 sum
            (float32 partial sum + magnitude) before each rounding to float32.
    """
    batch, height, width = magnitude.shape
    cell_h, cell_w = cell
    cells_h, cells_w = height // cell_h, width // cell_w

    def by_pixel_in_cell(array):  # (N, H, W) -> (cell_h * cell_w, N * cells_h * cells_w)
        array = array.reshape(batch, cells_h, cell_h, cells_w, cell_w)
        return array.transpose(2, 4, 0, 1, 3).reshape(cell_h * cell_w, -1)

    sums = by_pixel_in_cell(magnitude)  # a copy; row p becomes the sums at pixel p
    # One slot per (cell, bin), plus a last slot per cell for orientations in no bin.
    slots = by_pixel_in_cell(bins) + (orientations + 1) * np.arange(sums.shape[1])
    totals = np.zeros(sums.shape[1] * (orientations + 1), dtype=np.float32)
    for pixel in range(cell_h * cell_w):  # each pixel adds to one bin of its cell
        slot = slots[pixel]
        np.add(totals[slot], sums[pixel], out=sums[pixel])
        totals[slot] = sums[pixel]  # rounds to nearest float32, as C's double-to-float
    totals = totals.reshape(batch, cells_h, cells_w, orientations + 1)[..., :orientations]
    return (totals / np.float32(cell_h * cell_w)).astype(np.float64), sums


def near_float32_midpoint(values, ulps=16):
    """True where a float64 lies within `ulps` float64 units of a float32 rounding midpoint.

    A float32 keeps 29 fewer mantissa bits than a float64; a float64 rounds half-way between
    two float32s exactly when those 29 bits are 1 followed by 28 zeros. Values below the
    float32 normal range, where the float32 grid is coarser, are reported too.

    Args:
        values: float64 array, any shape, values >= 0.

    Returns:
        bool array of the same shape.
    """
    bits = values.view(np.int64)  # ordered like the values, which are >= 0
    low_bits = bits & ((1 << 29) - 1)
    low_bits -= (1 << 28) - ulps
    near = low_bits.view(np.uint64) <= 2 * ulps  # |low bits - 2**28| <= ulps
    tiny = np.float64(2 * np.finfo(np.float32).tiny).view(np.int64)
    near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 1)  # 0 < value < tiny
    return near


def normalize_blocks(histograms, block, block_norm):
    """Overlapping blocks of cells, each normalised on its own.

    Args:
        histograms: (N, cells_h, cells_w, O) cell histograms.
        block: (block_h, block_w) cells per block; blocks step by one cell.
        block_norm: "L1", "L1-sqrt", "L2" or "L2-Hys" (eps = 1e-5).

    Returns:
        (N, blocks_h, blocks_w, block_h, block_w, O), blocks_h = cells_h - block_h + 1.
    """
    windows = sliding_window_view(histograms, block, axis=(1, 2))
    blocks = windows.transpose(0, 1, 2, 4, 5, 3)
    axes = (3, 4, 5)
    if block_norm in ("L1", "L1-sqrt"):
        out = blocks / (np.abs(blocks).sum(axis=axes, keepdims=True) + EPS)
        return np.sqrt(out) if block_norm == "L1-sqrt" else out
    out = blocks / np.sqrt((blocks**2).sum(axis=axes, keepdims=True) + EPS**2)
    if block_norm == "L2-Hys":
        out = np.minimum(out, 0.2)
        out = out / np.sqrt((out**2).sum(axis=axes, keepdims=True) + EPS**2)
    return out
