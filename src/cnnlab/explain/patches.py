"""What a channel responds to, found in data: the image regions that activate it most.

Zeiler & Fergus 2014 ("Visualizing and Understanding Convolutional Networks") show, for a
channel of a layer, the input patches behind its largest activations over a dataset. Each
activation A[n, channel, i, j] sees exactly one window of its image, its receptive field,
given by the recurrences of `cnnlab.shapes` through `cnnlab.analysis.receptive_field_box`:

    centre = start + (i, j) * jump       box = centre -/+ (rf - 1) / 2, clipped to the image

`top_patches` ranks one channel; `top_patches_per_channel` ranks every channel of the layer in
the same single pass over the images (for a grid of them all), with the same result per
channel; `crop_patches` cuts the regions out of the images for display.
"""

import numpy as np

from cnnlab.analysis import receptive_field_box
from cnnlab.explain.split import check_images, check_model, split_at
from cnnlab.tensor import Tensor, no_grad


def _best(values, indices, k):
    """The k largest values with their indices, largest first; ties by smaller index."""
    if len(values) > k:
        keep = values >= np.partition(values, -k)[-k]
        values, indices = values[keep], indices[keep]
    order = np.lexsort((indices, -values))[:k]
    return values[order], indices[order]


def top_patches(model, images, layer, channel, k=9, batch_size=256):
    """The k image regions that most activate one channel of a layer.

    Args:
        model: a Module in eval mode, made of nn.Sequential containers.
        images: (N, C, H, W) float array, as the model takes them (a whole test set is
            fine: the layer is computed batch by batch).
        layer: a spatial layer's name as `cnnlab summary` gives it ("conv2", "relu2", ...).
        channel: the channel of that layer, in [0, K).
        k: how many regions. Default: 9.
        batch_size: images per forward pass. Default: 256.

    Returns:
        list of at most k tuples (image_index, y0, x0, y1, x1, activation), highest
        activation first (ties: lower image index, then row, then column): the k largest
        values of A[:, channel] over all images and positions, each with its receptive field
        in input pixels, rows y0..y1 - 1 and columns x0..x1 - 1, clipped to the image.
    """
    check_model("top_patches", model)
    images = check_images("top_patches", images)
    split = split_at(model, layer, images.shape[1:])
    record = split.record
    if not record.spatial:
        raise ValueError(
            f"top_patches: layer {layer!r} has no spatial output (shape "
            f"{record.output_shape}); pick a conv, relu or pool layer"
        )
    channels, out_h, out_w = record.output_shape
    if isinstance(channel, bool) or not isinstance(channel, int | np.integer) or not (
        0 <= channel < channels
    ):
        raise ValueError(f"top_patches: channel must be an int in [0, {channels}) for layer "
                         f"{layer!r}, got {channel!r}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"top_patches: k must be a positive int, got {k!r}")
    values = np.zeros(0, dtype=images.dtype)
    indices = np.zeros(0, dtype=np.int64)
    with no_grad():
        for start in range(0, len(images), batch_size):
            maps = split.head(Tensor(images[start : start + batch_size])).data[:, channel]
            flat = start * out_h * out_w + np.arange(maps.size)
            values, indices = _best(np.concatenate([values, maps.reshape(-1)]),
                                    np.concatenate([indices, flat]), k)
    return _patches(record, values, indices, images.shape[2:])


def _patches(record, values, indices, image_hw):
    """(image_index, y0, x0, y1, x1, activation) tuples for activations at flat indices
    n * H_l * W_l + i * W_l + j. The box of output (i, j) is that of output (0, 0) moved by
    (i, j) * jump (exact: the jump is a whole number of pixels), then clipped."""
    _, out_h, out_w = record.output_shape
    image_index, position = np.divmod(indices, out_h * out_w)
    rows, columns = np.divmod(position, out_w)
    top, left, bottom, right = receptive_field_box(record, (0, 0))
    y0 = np.maximum(top + rows * record.jump[0], 0)
    x0 = np.maximum(left + columns * record.jump[1], 0)
    y1 = np.minimum(bottom + rows * record.jump[0], image_hw[0] - 1) + 1
    x1 = np.minimum(right + columns * record.jump[1], image_hw[1] - 1) + 1
    return list(zip(image_index.tolist(), y0.tolist(), x0.tolist(), y1.tolist(), x1.tolist(),
                    np.asarray(values, dtype=np.float64).tolist(), strict=True))


def _best_per_row(values, indices, k):
    """Each row's k largest values with their indices, in index order; ties go to the smaller
    index (as `_best`). values, indices: (K, P), indices increasing along each row."""
    if values.shape[1] <= k:
        return values, indices
    kth = np.partition(values, -k, axis=1)[:, -k, None]  # each row's k-th largest value
    above = values > kth
    tied = values == kth
    room = k - above.sum(axis=1, keepdims=True)  # how many of the tied values fit
    keep = above | (tied & (np.cumsum(tied, axis=1) <= room))
    return values[keep].reshape(len(values), k), indices[keep].reshape(len(values), k)


def top_patches_per_channel(model, images, layer, k=9, batch_size=256):
    """`top_patches` for every channel of a layer, in one pass over the images.

    Args:
        model: a Module in eval mode, made of nn.Sequential containers.
        images: (N, C, H, W) float array, as the model takes them.
        layer: a spatial layer's name as `cnnlab summary` gives it ("conv2", "relu2", ...).
        k: regions per channel. Default: 9.
        batch_size: images per forward pass. Default: 256.

    Returns:
        list of K lists, one per channel of the layer (output (N, K, H_l, W_l)): element c is
        `top_patches(model, images, layer, c, k)`, the same tuples in the same order.
    """
    check_model("top_patches_per_channel", model)
    images = check_images("top_patches_per_channel", images)
    split = split_at(model, layer, images.shape[1:])
    record = split.record
    if not record.spatial:
        raise ValueError(
            f"top_patches_per_channel: layer {layer!r} has no spatial output (shape "
            f"{record.output_shape}); pick a conv, relu or pool layer"
        )
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"top_patches_per_channel: k must be a positive int, got {k!r}")
    channels, out_h, out_w = record.output_shape
    values = np.zeros((channels, 0), dtype=images.dtype)
    indices = np.zeros((channels, 0), dtype=np.int64)
    with no_grad():
        for start in range(0, len(images), batch_size):
            maps = split.head(Tensor(images[start : start + batch_size])).data  # (B, K, h, w)
            count = len(maps)
            flat = start * out_h * out_w + np.arange(count * out_h * out_w)
            maps = maps.transpose(1, 0, 2, 3).reshape(channels, -1)  # row c: image-major
            values, indices = _best_per_row(
                np.concatenate([values, maps], axis=1),
                np.concatenate([indices, np.broadcast_to(flat, maps.shape)], axis=1), k)
    order = np.lexsort((indices, -values), axis=1)  # highest first, ties: lower index
    values = np.take_along_axis(values, order, axis=1)
    indices = np.take_along_axis(indices, order, axis=1)
    found = _patches(record, values.ravel(), indices.ravel(), images.shape[2:])
    width = values.shape[1]
    return [found[c * width : (c + 1) * width] for c in range(channels)]


def crop_patches(images, patches, size, fill=0.0):
    """The regions of `top_patches`, cut out of the images at full receptive-field size.

    A region clipped by the image's edge keeps its place in the window: the missing rows or
    columns (outside the image) are `fill`, on the side where the image ended.

    Args:
        images: (N, C, H, W) array the patches index (e.g. the pixels, for display).
        patches: M tuples (image_index, y0, x0, y1, x1, ...) as `top_patches` gives them.
        size: (RF_h, RF_w), the layer's receptive field (LayerRecord.receptive_field).
        fill: value of the pixels outside the image. Default: 0.0.

    Returns:
        (M, C, RF_h, RF_w) array of images' dtype.
    """
    images = np.asarray(images)
    boxes = np.array([patch[:5] for patch in patches], dtype=np.int64).reshape(-1, 5)
    index, y0, x0, y1, x1 = boxes.T
    grids = []
    for low, high, extent, side in ((y0, y1, images.shape[2], size[0]),
                                    (x0, x1, images.shape[3], size[1])):
        missing = side - (high - low)
        first = np.where(low > 0, low, np.where(high < extent, high - side, low - missing // 2))
        grid = first[:, None] + np.arange(side)  # (M, side): source row or column per cell
        inside = (grid >= low[:, None]) & (grid < high[:, None])
        grids.append((np.clip(grid, 0, extent - 1), inside))
    (rows, row_in), (columns, column_in) = grids
    cut = images[index[:, None, None, None], np.arange(images.shape[1])[None, :, None, None],
                 rows[:, None, :, None], columns[:, None, None, :]]
    inside = row_in[:, None, :, None] & column_in[:, None, None, :]
    return np.where(inside, cut, np.asarray(fill, dtype=images.dtype))
