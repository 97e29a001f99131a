"""What a channel responds to, found in data: the image regions that activate it most.

Zeiler & Fergus 2014 ("Visualizing and Understanding Convolutional Networks") show, for a
channel of a layer, the input patches behind its largest activations over a dataset. Each
activation A[n, channel, i, j] sees exactly one window of its image, its receptive field,
given by the recurrences of `cnnlab.shapes` through `cnnlab.analysis.receptive_field_box`:

    centre = start + (i, j) * jump       box = centre -/+ (rf - 1) / 2, clipped to the image
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
    image_index, position = np.divmod(indices, out_h * out_w)
    rows, columns = np.divmod(position, out_w)
    patches = []
    for n, i, j, value in zip(image_index, rows, columns, values, strict=True):
        top, left, bottom, right = receptive_field_box(record, (i, j), images.shape[2:])
        patches.append((int(n), top, left, bottom + 1, right + 1, float(value)))
    return patches
