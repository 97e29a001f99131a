"""The lecture's size formulas, written once: output size, receptive field, jump, pair().

Every op, layer and analysis function calls these, so the numbers a user reads in
`cnnlab summary` are the numbers the ops compute. This module imports nothing.
"""


def pair(value, name="value"):
    """Normalise an int or an (h, w) pair to a tuple of two ints.

    >>> pair(3), pair((2, 1))
    ((3, 3), (2, 1))
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int) or (hasattr(value, "__index__") and not hasattr(value, "__len__")):
        return (int(value), int(value))
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(items) != 2 or not all(
        hasattr(item, "__index__") and not isinstance(item, bool) for item in items
    ):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (int(items[0]), int(items[1]))


def output_size(size, kernel, stride, padding, op="conv2d", axis="width"):
    """Output length along one spatial axis: floor((W - K + 2P) / S) + 1 (H for the height).

    Raises ValueError quoting the formula with the numbers when the result is not positive,
    e.g. "conv2d: output width (W - K + 2P)/S + 1 = (4 - 7 + 0)/1 + 1 = -2 is not positive",
    or "max_pool2d: output height (H - K + 2P)/S + 1 = ..." along the height.
    """
    out = (size - kernel + 2 * padding) // stride + 1
    if out <= 0:
        letter = "H" if axis == "height" else "W"
        raise ValueError(
            f"{op}: output {axis} ({letter} - K + 2P)/S + 1 = ({size} - {kernel} + {2 * padding})"
            f"/{stride} + 1 = {out} is not positive (input {axis} {size}, kernel {kernel},"
            f" padding {padding}, stride {stride})"
        )
    return out


def output_hw(height, width, kernel, stride, padding, op="conv2d"):
    """(H_out, W_out) for an (H, W) input and pair-valued kernel, stride and padding."""
    return (
        output_size(height, kernel[0], stride[0], padding[0], op, "height"),
        output_size(width, kernel[1], stride[1], padding[1], op, "width"),
    )


def dropped_pixels(size, kernel, stride, padding):
    """Input pixels (on one axis, padded side included) that no window covers, by flooring."""
    return (size - kernel + 2 * padding) % stride


def receptive_field(rf_in, jump_in, kernel, stride):
    """One layer of the receptive-field recurrence, on one axis.

    rf_out = rf_in + (K - 1) * jump_in;  jump_out = jump_in * S.
    Returns (rf_out, jump_out).
    """
    return rf_in + (kernel - 1) * jump_in, jump_in * stride


def receptive_field_start(start_in, jump_in, kernel, padding):
    """Where the first output's receptive field is centred, in input pixels, on one axis.

    start_out = start_in + ((K - 1) / 2 - P) * jump_in, starting from 0 at the input.
    """
    return start_in + ((kernel - 1) / 2 - padding) * jump_in
