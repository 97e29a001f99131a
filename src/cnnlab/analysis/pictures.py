"""The array side of the pictures: what to draw, as arrays in [0, 1]; `plots` draws it.

The functions here are pure (arrays in, arrays out) and know nothing of Matplotlib or files:
weights rescaled per filter, linear-classifier templates, activation maps computed by running
a model layer by layer, and the receptive-field box of one output. `model_pictures` hands them
to `plots`, one PNG each, for `cnnlab viz RUN_DIR`.

Display images are (H, W) for grey or (H, W, 3) for colour, floats in [0, 1].
"""

import numpy as np

from cnnlab.analysis.equivariance import layer_outputs
from cnnlab.analysis.summary import layer_kind, layers, receptive_field_box, summary


def unit_scale(array, axes=None):
    """Rescale to [0, 1] by min and max over `axes` (per item), so each item uses the full range.

    Args:
        array: any shape.
        axes: the axes one item spans, e.g. (1, 2, 3) for each of (C_out, C_in, KH, KW)
            filters. Default: all (one scale).

    Returns:
        float64 array of the same shape; an item with no range becomes 0.5 everywhere.
    """
    array = np.asarray(array, dtype=np.float64)
    low = array.min(axis=axes, keepdims=True)
    span = array.max(axis=axes, keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (array - low) / safe, 0.5)


def to_display(images):
    """(..., C, H, W) channel-first images -> (..., H, W) grey (C = 1) or (..., H, W, 3) colour.

    Other channel counts are averaged to grey. Values are kept as they are.
    """
    images = np.asarray(images)
    channels = images.shape[-3]
    if channels == 3:
        return np.moveaxis(images, -3, -1)
    if channels == 1:
        return images[..., 0, :, :]
    return images.mean(axis=-3)


def display_image(image):
    """One image (C, H, W), uint8 in 0..255 or float, as a display image in [0, 1].

    uint8 is divided by 255; a float image already in [0, 1] is kept; any other float image
    (normalised, say) is rescaled by its min and max.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return to_display(image.astype(np.float64) / 255.0)
    image = image.astype(np.float64)
    if image.min() >= 0 and image.max() <= 1:
        return to_display(image)
    return to_display(unit_scale(image))


def template_images(weight, image_shape):
    """A linear classifier's templates: each row of W as an image, rescaled per class.

    Args:
        weight: (K, C*H*W), the Linear layer's weight on flattened images.
        image_shape: (C, H, W).

    Returns:
        (K, H, W) grey or (K, H, W, 3) colour display images in [0, 1].
    """
    weight = np.asarray(weight)
    channels, height, width = image_shape
    if weight.ndim != 2 or weight.shape[1] != channels * height * width:
        raise ValueError(
            f"template_images: expected weight of shape (K, {channels * height * width}) for "
            f"images {tuple(image_shape)}, got {weight.shape}"
        )
    templates = weight.reshape(len(weight), channels, height, width)
    return to_display(unit_scale(templates, axes=(1, 2, 3)))


def filter_images(weight):
    """A convolution layer's filters as display images, each rescaled to [0, 1] on its own.

    Args:
        weight: (C_out, C_in, KH, KW).

    Returns:
        (C_out, KH, KW, 3) colour for C_in = 3, (C_out, KH, KW) grey for C_in = 1, otherwise
        (C_out * C_in, KH, KW) grey: each filter's input channels side by side (C_in columns
        per filter), scaled together.
    """
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(
            f"filter_images: expected weight (C_out, C_in, KH, KW), got {weight.shape}"
        )
    scaled = unit_scale(weight, axes=(1, 2, 3))
    if weight.shape[1] in (1, 3):
        return to_display(scaled)
    return scaled.reshape(-1, *weight.shape[2:])


def first_conv_weight(model):
    """The weight (C_out, C_in, KH, KW) of the model's first convolution, or None."""
    for _, layer in layers(model):
        if layer_kind(layer) == "conv":
            return np.asarray(layer.weight.data)
    return None


def linear_template_weight(model, image_shape):
    """The weight (K, C*H*W) of a linear classifier on flattened images, or None.

    A model is a linear classifier when its only parametrised layer is one Linear whose
    in_features is C*H*W (Flatten, then Linear).
    """
    parametrised = [layer for _, layer in layers(model) if any(True for _ in layer.parameters())]
    if len(parametrised) != 1 or layer_kind(parametrised[0]) != "linear":
        return None
    if parametrised[0].in_features != int(np.prod(image_shape)):
        return None
    return np.asarray(parametrised[0].weight.data)


def activation_maps(model, x):
    """The output of every convolution layer for one input image, each channel in [0, 1].

    Args:
        model: a Module; x: (C, H, W), preprocessed as the model expects.

    Returns:
        list of (name, maps): name as in `summary` ("conv1", ...), maps (C_out, H_out, W_out)
        with each channel rescaled to [0, 1] on its own.
    """
    x = np.asarray(x, dtype=np.float32)[None]
    records = summary(model, x.shape)
    outputs = layer_outputs(model, x)
    return [
        (record.name, unit_scale(output[0], axes=(1, 2)))
        for record, (_, layer), (_, output) in zip(records, layers(model), outputs, strict=True)
        if layer_kind(layer) == "conv"
    ]


def receptive_field_overlay(model, image_shape, layer=None, position=None):
    """The input box seen by one output of a layer, for drawing on the input image.

    Args:
        model: a Module; image_shape: (C, H, W).
        layer: a layer name from `summary` ("conv2"). Default: the last spatial layer.
        position: (i, j) output position. Default: the centre output.

    Returns:
        (record, box): the layer's LayerRecord and (top, left, bottom, right), inclusive input
        pixels, clipped to the image.
    """
    records = [record for record in summary(model, image_shape) if record.spatial]
    if not records:
        raise ValueError("receptive_field_overlay: the model has no spatial layer")
    names = [record.name for record in records]
    if layer is not None and layer not in names:
        raise ValueError(f"receptive_field_overlay: expected a spatial layer "
                         f"({', '.join(names)}), got {layer!r}")
    record = records[-1] if layer is None else records[names.index(layer)]
    height, width = record.output_shape[-2:]
    position = position if position is not None else (height // 2, width // 2)
    return record, receptive_field_box(record, position, image_hw=tuple(image_shape[-2:]))


# ----- a trained model's input ---------------------------------------------------------------
def model_input(pixels, mean, std):
    """One image (C, H, W) uint8 -> the model's input (C, H, W) float32, (pixel / 255 - mean)
    / std per channel, as training's loader computes it."""
    mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return (np.asarray(pixels, dtype=np.float32) / 255 - mean) / std
