"""cnnlab.shapes, the size formulas every op, layer and analysis calls, checked on their own:
output sizes against PyTorch's conv and pooling, the receptive-field recurrences against the
lecture's worked numbers and a brute-force count, pair() on what it accepts and refuses."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from cnnlab.shapes import (
    dropped_pixels,
    output_hw,
    output_size,
    pair,
    receptive_field,
    receptive_field_start,
)


@pytest.mark.parametrize("size", [1, 2, 5, 8, 9])
@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_output_size_is_pytorchs(size, kernel, stride, padding):
    x = torch.zeros(1, 1, size, 7)
    weight = torch.zeros(1, 1, kernel, 1)
    if size + 2 * padding < kernel:
        with pytest.raises(ValueError, match="is not positive"):
            output_size(size, kernel, stride, padding)
        return
    expected = TF.conv2d(x, weight, stride=(stride, 1), padding=(padding, 0)).shape[2]
    assert output_size(size, kernel, stride, padding) == expected
    # The pixels no window reaches: the padded length minus what the windows span.
    spanned = (expected - 1) * stride + kernel
    assert dropped_pixels(size, kernel, stride, padding) == size + 2 * padding - spanned


def test_output_hw_takes_height_then_width_and_names_the_axis():
    assert output_hw(9, 12, (3, 5), (2, 3), (1, 2), op="max_pool2d") == (5, 4)
    assert output_hw(12, 9, (5, 3), (3, 2), (2, 1)) == (4, 5)
    assert output_hw(10, 7, (1, 3), (1, 1), (0, 0)) == (10, 5)
    with pytest.raises(ValueError, match=r"^max_pool2d: output height .* = \(2 - 4 \+ 0\)/1"):
        output_hw(2, 9, (4, 1), (1, 1), (0, 0), op="max_pool2d")
    with pytest.raises(ValueError, match=r"^conv2d: output width .* = \(3 - 6 \+ 2\)/2 \+ 1"):
        output_hw(9, 3, (1, 6), (1, 2), (0, 1))


def test_output_size_quotes_every_number_of_the_formula():
    with pytest.raises(ValueError) as error:
        output_size(4, 7, 1, 0, op="conv2d", axis="width")
    assert str(error.value) == (
        "conv2d: output width (W - K + 2P)/S + 1 = (4 - 7 + 0)/1 + 1 = -2 is not positive"
        " (input width 4, kernel 7, padding 0, stride 1)"
    )
    with pytest.raises(ValueError, match=r"= \(1 - 5 \+ 2\)/3 \+ 1 = 0 is not positive"):
        output_size(1, 5, 3, 1)  # floor(-2 / 3) + 1 = 0: the boundary is refused
    assert output_size(3, 5, 3, 1) == 1  # (3 - 5 + 2) / 3 + 1 = 1: the smallest accepted


def test_receptive_field_recurrence_on_the_lecture_stack():
    """conv 3x3 s1, conv 3x3 s1, pool 2x2 s2, conv 3x3 s1: fields 3, 5, 6, 10; jumps 1, 1, 2, 2."""
    field, jump, seen = 1, 1, []
    for kernel, stride in [(3, 1), (3, 1), (2, 2), (3, 1)]:
        field, jump = receptive_field(field, jump, kernel, stride)
        seen.append((field, jump))
    assert seen == [(3, 1), (5, 1), (6, 2), (10, 2)]
    assert receptive_field(4, 3, 5, 2) == (16, 6)  # 4 + (5 - 1) * 3, 3 * 2


def test_receptive_field_start_is_the_first_windows_centre():
    """Brute force on one axis: where the first output's field is centred, in input pixels."""
    layers = [(3, 1, 1), (2, 2, 0), (5, 3, 2), (4, 1, 1)]  # (kernel, stride, padding)
    start, jump = 0.0, 1
    first, last = 0, 0  # the input pixels (padding included) the first output sees
    for kernel, stride, padding in layers:
        start = receptive_field_start(start, jump, kernel, padding)
        first, last = first - padding * jump, last - padding * jump + (kernel - 1) * jump
        jump *= stride
        assert start == pytest.approx((first + last) / 2)
    assert receptive_field_start(1.5, 2, 4, 1) == 1.5 + (1.5 - 1) * 2


@pytest.mark.parametrize("value, expected", [
    (3, (3, 3)), ((2, 1), (2, 1)), ([4, 5], (4, 5)), (np.int64(2), (2, 2)),
    ((np.int32(1), 6), (1, 6)), (range(3, 5), (3, 4)),
])
def test_pair_normalises_ints_and_pairs(value, expected):
    result = pair(value)
    assert result == expected and all(type(item) is int for item in result)


@pytest.mark.parametrize("value", [True, (1, 2, 3), (1,), (1.0, 2), 2.5, "ab", None, (1, False)])
def test_pair_refuses_everything_else_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^stride must be an int or a pair of ints, got "):
        pair(value, name="stride")
