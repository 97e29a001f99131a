"""What a network does to its input, layer by layer: shapes, parameters, receptive fields.

`summary(model, input_shape)` walks the model's layers in order and, per layer, applies the
formulas of `cnnlab.shapes` (output size, receptive field and jump) without running the model:

    H_out = floor((H - K + 2P) / S) + 1
    rf_out = rf_in + (K - 1) * jump_in          jump_out = jump_in * S

starting from rf = 1 and jump = 1 at the input. The receptive field is the side of the input
window (in input pixels, padding included) that one output sees; the jump is the input-pixel
distance between neighbouring outputs. (Running a model layer by layer, and translation
equivariance, are cnnlab.analysis.equivariance.)

Layers are recognised by their attributes, as PyTorch names them, so any module with the same
attributes works (PyTorch's own included):
    kernel_size, stride, padding (+ in_channels, out_channels): Conv2d; without channels: pooling
    in_features, out_features: Linear (applies to the last axis; ends spatial tracking)
    start_dim, end_dim: Flatten (ends spatial tracking)
    class_token, num_patches: a ViT's PatchTokens, (C, H', W') -> (1 + H'W', C) tokens x dim
    self_attn (an encoder layer), or in_proj_weight (attention): one row each, (T, D) kept
    SelectToken: (T, D) -> (D,), the class token
Everything else (ReLU, Dropout, BatchNorm, LayerNorm, GELU, ...) keeps the shape, receptive
field and jump.

A transformer's rows: an encoder layer is one row (its parameters: attention, feed-forward
and norms together), not its sublayers. Patch tokens keep the patch embedding's receptive
field (the patch) and jump: token i still stands for patch i. Attention lets every token
see every other, so from the first attention layer on the receptive field is the whole image,
as after a Linear layer: the number is meaningful (each output depends on every pixel), and it
is why the recurrence above stops there.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from cnnlab.shapes import (
    dropped_pixels,
    output_hw,
    pair,
    receptive_field,
    receptive_field_start,
)

SHORT_NAMES = {
    "Conv2d": "conv", "MaxPool2d": "maxpool", "AvgPool2d": "avgpool", "Linear": "linear",
    "ReLU": "relu", "Flatten": "flatten", "Dropout": "dropout", "BatchNorm1d": "bn",
    "BatchNorm2d": "bn", "LayerNorm": "ln", "GELU": "gelu", "PatchTokens": "tokens",
    "TransformerEncoderLayer": "encoder", "MultiheadAttention": "attention",
    "SelectToken": "select",
}  # fmt: skip


@dataclass
class LayerRecord:
    """One row of `summary`: a layer and what it does to the shape and the receptive field.

    Attributes:
        name: short name numbered per kind, e.g. "conv2", "maxpool1", "linear1".
        path: the module's name in the model ("features.3"), as in its state-dict keys.
        type: the module's class name, e.g. "Conv2d".
        output_shape: (C, H_out, W_out) for spatial layers, (features,) after Flatten/Linear,
            (T, D) tokens x dim for a transformer's token layers; with a leading N when the
            input shape had one.
        params: number of learnable parameters.
        kernel_size, stride, padding: (h, w) pairs for convolution and pooling, else None.
        receptive_field: (h, w) input pixels seen by one output; the whole input (H, W) once
            Flatten or Linear has mixed every position. None for a non-image input.
        jump: (h, w) input pixels between neighbouring outputs; (H, W) after Flatten/Linear.
        start: (y, x) input coordinate of the centre of the first output's receptive field
            (pixel i has centre i; negative when padding shifts it off the image).
        spatial: True while outputs still correspond to positions in the image.
        warnings: e.g. input rows or columns that no window covers because of flooring.

    Records also read like dicts: record["name"], and `as_dict()` gives a plain dict.
    """

    name: str
    path: str
    type: str
    output_shape: tuple
    params: int
    kernel_size: tuple | None = None
    stride: tuple | None = None
    padding: tuple | None = None
    receptive_field: tuple | None = None
    jump: tuple | None = None
    start: tuple | None = None
    spatial: bool = True
    warnings: list = field(default_factory=list)

    def __getitem__(self, key):
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        return self.__dataclass_fields__.keys()

    def as_dict(self):
        return asdict(self)


# ----- walking a model -------------------------------------------------------------------------
def layers(model):
    """The model's leaf layers in forward order, as (path, module) pairs.

    Containers (Sequential, or a model whose submodules are `features` then `classifier`) are
    walked depth first in registration order, which is the order their forward calls them for
    every model in `cnnlab.models`. A module without children is a layer, and so is an
    encoder layer or an attention module (their sublayers are not called in sequence).
    """
    children = list(model.named_children())
    if not children or layer_kind(model) == "attention":
        return [("", model)]
    found = []
    for name, child in children:
        for path, layer in layers(child):
            found.append((f"{name}.{path}" if path else name, layer))
    return found


def layer_kind(layer):
    """ "conv", "pool", "linear", "flatten", "tokens", "attention", "select" or "other", from
    the layer's attributes."""
    if hasattr(layer, "self_attn") or hasattr(layer, "in_proj_weight"):
        return "attention"
    if hasattr(layer, "class_token") and hasattr(layer, "num_patches"):
        return "tokens"
    if type(layer).__name__ == "SelectToken":
        return "select"
    if all(hasattr(layer, attr) for attr in ("kernel_size", "stride", "padding")):
        return "conv" if hasattr(layer, "out_channels") else "pool"
    if hasattr(layer, "in_features") and hasattr(layer, "out_features"):
        return "linear"
    if type(layer).__name__ == "Flatten" or hasattr(layer, "start_dim"):
        return "flatten"
    return "other"


def _count_params(layer):
    return int(sum(int(np.prod(p.shape)) for p in layer.parameters()))


def _short_names(types):
    counts, names = {}, []
    for type_name in types:
        prefix = SHORT_NAMES.get(type_name, type_name.lower())
        counts[prefix] = counts.get(prefix, 0) + 1
        names.append(f"{prefix}{counts[prefix]}")
    return names


# ----- the summary -----------------------------------------------------------------------------
def summary(model, input_shape):
    """Per-layer output shape, parameter count, kernel/stride/padding, receptive field and jump.

    Args:
        model: a Module (Sequential, nested Sequentials, or a model built from them).
        input_shape: (C, H, W), or (N, C, H, W) to include the batch in the output shapes;
            (D,) for a model on feature vectors.

    Returns:
        list of LayerRecord, one per leaf layer in forward order.

    Raises:
        ValueError for a layer whose output would be empty (the ops' message, with the numbers
        and the layer's name) or whose expected input channels or features do not match.
    """
    input_shape = tuple(int(size) for size in input_shape)
    batched = len(input_shape) == 4
    shape = input_shape if batched else (1,) + input_shape
    spatial = len(shape) == 4
    image_hw = shape[2:] if spatial else None
    rf, jump, start = ((1, 1), (1, 1), (0.0, 0.0)) if spatial else (None, None, None)
    pairs = layers(model)
    names = _short_names([type(layer).__name__ for _, layer in pairs])
    records = []
    for name, (path, layer) in zip(names, pairs, strict=True):
        kind = layer_kind(layer)
        record = LayerRecord(name, path, type(layer).__name__, (), _count_params(layer))
        if kind in ("conv", "pool"):
            shape, rf, jump, start = _window_layer(record, layer, kind, shape, rf, jump, start)
        elif kind == "linear":
            shape = _linear_layer(record, layer, shape)
        elif kind in ("tokens", "attention", "select"):
            shape = _token_layer(record, layer, kind, shape)
        elif kind == "flatten":
            start_dim = getattr(layer, "start_dim", 1) % len(shape)
            end_dim = getattr(layer, "end_dim", -1) % len(shape)
            merged = int(np.prod(shape[start_dim : end_dim + 1]))
            shape = shape[:start_dim] + (merged,) + shape[end_dim + 1 :]
        if kind in ("linear", "flatten", "attention") and spatial:
            spatial = False
            rf = jump = image_hw
            start = ((image_hw[0] - 1) / 2, (image_hw[1] - 1) / 2)
        record.output_shape = shape if batched else shape[1:]
        record.receptive_field, record.jump, record.start = rf, jump, start
        record.spatial = spatial and len(shape) == 4
        records.append(record)
    return records


def _window_layer(record, layer, kind, shape, rf, jump, start):
    """Shape and receptive-field update for a convolution or pooling layer."""
    op = "conv2d" if kind == "conv" else type(layer).__name__.lower().replace("pool", "_pool")
    if len(shape) != 4:
        raise ValueError(
            f"summary: layer {record.name} ({record.type}) expects an (N, C, H, W) input, "
            f"got shape {shape}"
        )
    kernel = pair(layer.kernel_size, "kernel_size")
    stride = kernel if layer.stride is None else pair(layer.stride, "stride")
    padding = pair(layer.padding, "padding")
    record.kernel_size, record.stride, record.padding = kernel, stride, padding
    batch, channels, height, width = shape
    if kind == "conv" and layer.in_channels != channels:
        raise ValueError(
            f"summary: layer {record.name} ({record.type}) expects {layer.in_channels} input "
            f"channels, got input shape {shape[1:]}"
        )
    try:
        out_hw = output_hw(height, width, kernel, stride, padding, op=op)
    except ValueError as error:
        raise ValueError(f"summary: layer {record.name}: {error}") from None
    out_channels = layer.out_channels if kind == "conv" else channels
    for axis, size, side, unit in ((0, height, "bottom", "row"), (1, width, "right", "column")):
        dropped = dropped_pixels(size, kernel[axis], stride[axis], padding[axis])
        if dropped > padding[axis]:
            letter = "H" if axis == 0 else "W"
            record.warnings.append(
                f"{record.name} drops {dropped - padding[axis]} input {unit}(s) at the {side}: "
                f"({letter} - K + 2P) % S = ({size} - {kernel[axis]} + {2 * padding[axis]}) % "
                f"{stride[axis]} = {dropped}"
                + (f", of which {padding[axis]} padding" if padding[axis] else "")
            )
    new = [receptive_field(rf[axis], jump[axis], kernel[axis], stride[axis]) for axis in (0, 1)]
    start = tuple(
        receptive_field_start(start[axis], jump[axis], kernel[axis], padding[axis])
        for axis in (0, 1)
    )
    rf, jump = (new[0][0], new[1][0]), (new[0][1], new[1][1])
    return (batch, out_channels) + out_hw, rf, jump, start


def _linear_layer(record, layer, shape):
    """Output shape of a Linear layer (on the last axis, or on a flattened (C, H, W) input)."""
    features = int(np.prod(shape[1:]))
    if shape[-1] != layer.in_features:
        if len(shape) > 2 and features == layer.in_features:
            shape = (shape[0], features)  # a model that flattens in its forward
        else:
            raise ValueError(
                f"summary: layer {record.name} ({record.type}) expects in_features = "
                f"{layer.in_features}, got input shape {shape[1:]}"
            )
    return shape[:-1] + (layer.out_features,)


def _token_layer(record, layer, kind, shape):
    """Output shape of PatchTokens (N, D, H', W') -> (N, 1 + H'W', D), an attention or
    encoder layer (N, T, D) kept, or SelectToken (N, T, D) -> (N, D)."""
    if kind == "tokens":
        if len(shape) != 4 or shape[1] != layer.embed_dim or (
                shape[2] * shape[3] != layer.num_patches):
            raise ValueError(
                f"summary: layer {record.name} ({record.type}) expects (D, H', W') = "
                f"({layer.embed_dim}, H', W') with H' W' = {layer.num_patches}, got input "
                f"shape {shape[1:]}")
        return (shape[0], 1 + layer.num_patches, layer.embed_dim)
    if len(shape) != 3:
        raise ValueError(f"summary: layer {record.name} ({record.type}) expects tokens "
                         f"(T, D), got input shape {shape[1:]}")
    if kind == "select":
        return (shape[0], shape[2])
    embed_dim = getattr(layer, "self_attn", layer).embed_dim
    if shape[2] != embed_dim:
        raise ValueError(f"summary: layer {record.name} ({record.type}) expects tokens of "
                         f"{embed_dim} features, got input shape {shape[1:]}")
    return shape


def receptive_field_box(record, position, image_hw=None):
    """The input pixels that output `position` of a layer sees, as an inclusive box.

    Args:
        record: a spatial LayerRecord from `summary`.
        position: (i, j) output row and column.
        image_hw: (H, W) to clip the box to the image; Default: no clipping.

    Returns:
        (top, left, bottom, right) input pixel indices, inclusive: the centre
        start + position * jump, plus and minus (rf - 1) / 2 on each axis.
    """
    if not record.spatial:
        raise ValueError(f"receptive_field_box: layer {record.name} has no spatial outputs")
    box = []
    for axis in (0, 1):
        centre = record.start[axis] + position[axis] * record.jump[axis]
        half = (record.receptive_field[axis] - 1) / 2
        box.append((int(round(centre - half)), int(round(centre + half))))
    (top, bottom), (left, right) = box
    if image_hw is not None:
        top, left = max(top, 0), max(left, 0)
        bottom, right = min(bottom, image_hw[0] - 1), min(right, image_hw[1] - 1)
    return top, left, bottom, right


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])
    if isinstance(value, tuple):
        return "x".join(str(item) for item in value)
    return str(value)


def format_summary(records, input_shape=None):
    """The records of `summary` as a plain-text table, totals and warnings below it.

    Columns: layer, type, output shape, parameters, kernel, stride, padding, receptive field
    and jump (one number when equal on both axes, else h x w).
    """
    header = ("layer", "type", "output shape", "params", "kernel", "stride", "padding", "rf",
              "jump")  # fmt: skip
    rows = []
    if input_shape is not None:
        rows.append(("input", "", _shape_text(input_shape), "", "", "", "", "1", "1"))
    for record in records:
        rows.append((
            record.name, record.type, _shape_text(record.output_shape), f"{record.params:,}",
            _cell(record.kernel_size), _cell(record.stride), _cell(record.padding),
            _cell(record.receptive_field), _cell(record.jump),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7, 8}

    def line(row):
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(header))
    lines = [line(header), rule] + [line(row) for row in rows] + [rule]
    lines.append(f"total parameters: {sum(record.params for record in records):,}")
    lines.extend(f"warning: {text}" for record in records for text in record.warnings)
    return "\n".join(lines)


def _shape_text(shape):
    return str(tuple(int(size) for size in shape))
