"""analysis: summary numbers for hand-computed stacks, predicted shapes equal a real forward
pass, the empirical receptive field (footprint of one output's input gradient) agrees with the
computed one, and equivariance is small for conv/pool and large for a dense layer."""

import numpy as np
import pytest

import cnnlab
from cnnlab import nn
from cnnlab.analysis import (
    equivariance_error,
    format_summary,
    layer_outputs,
    receptive_field_box,
    summary,
    translate,
)
from cnnlab.models import build_model
from cnnlab.nn import functional as F


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 10),
    )  # fmt: skip


def test_summary_of_a_hand_computed_stack():
    records = summary(small_cnn(), (1, 28, 28))
    table = [(r.name, r.output_shape, r.params, r.receptive_field, r.jump) for r in records]
    assert table == [
        ("conv1", (8, 24, 24), 8 * 25 + 8, (5, 5), (1, 1)),  # rf 1 + 4*1
        ("relu1", (8, 24, 24), 0, (5, 5), (1, 1)),
        ("maxpool1", (8, 12, 12), 0, (6, 6), (2, 2)),  # rf 5 + 1*1, jump 1*2
        ("conv2", (16, 6, 6), 16 * 8 * 9 + 16, (10, 10), (4, 4)),  # (12-3+2)//2+1; 6 + 2*2
        ("relu2", (16, 6, 6), 0, (10, 10), (4, 4)),
        ("flatten1", (576,), 0, (28, 28), (28, 28)),
        ("linear1", (10,), 576 * 10 + 10, (28, 28), (28, 28)),
    ]
    conv2 = records[3]
    assert (conv2.kernel_size, conv2.stride, conv2.padding) == ((3, 3), (2, 2), (1, 1))
    assert conv2["path"] == "3" and conv2["type"] == "Conv2d"
    assert records[2].start == (2.5, 2.5)  # centre of pixels 0..5
    assert not any(r.warnings for r in records)  # conv2's leftover row is padding


def test_summary_with_batch_dimension_and_nested_sequentials():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(nn.AvgPool2d(2), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 5 * 4, 2)),
    )
    records = summary(model, (7, 3, 10, 8))
    assert [r.path for r in records] == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2", "1.3"]
    assert records[1].params == 8 and records[1].receptive_field == (3, 3)
    assert records[3].output_shape == (7, 4, 5, 4) and records[3].jump == (2, 2)
    assert records[-1].output_shape == (7, 2)


def test_flooring_warnings_name_the_rows_and_columns_dropped():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.MaxPool2d(2))
    records = summary(model, (1, 8, 9))
    # conv1: (8 - 3) % 2 = 1 row dropped, (9 - 3) % 2 = 0 columns -> output (2, 3, 4)
    assert records[0].output_shape == (2, 3, 4)
    assert records[0].warnings == [
        "conv1 drops 1 input row(s) at the bottom: (H - K + 2P) % S = (8 - 3 + 0) % 2 = 1"
    ]
    # maxpool1 on 3 x 4: one row dropped, no column
    assert (
        len(records[1].warnings) == 1
        and "maxpool1 drops 1 input row(s)" in (records[1].warnings[0])
    )
    text = format_summary(records, (1, 8, 9))
    assert "warning: conv1 drops 1 input row(s)" in text and "total parameters: 20" in text


def test_empty_output_is_the_ops_error_with_the_layer_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 7))
    with pytest.raises(ValueError, match=r"conv2: conv2d: output height "
                                         r"\(H - K \+ 2P\)/S \+ 1 = \(6 - 7 \+ 0\)/1"):
        summary(model, (1, 8, 8))
    with pytest.raises(ValueError, match="expects 3 input channels"):
        summary(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 8, 8))
    with pytest.raises(ValueError, match="in_features = 5"):
        summary(nn.Sequential(nn.Flatten(), nn.Linear(5, 2)), (1, 8, 8))


STACKS = [
    (small_cnn, (1, 28, 28)),
    (lambda: nn.Sequential(nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2)),
                           nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d((2, 1)),
                           nn.Conv2d(4, 2, 1)), (3, 17, 11)),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 3)),
     (3, 2, 2)),
]  # fmt: skip


@pytest.mark.parametrize("make, input_shape", STACKS)
def test_predicted_shapes_equal_a_real_forward_pass(make, input_shape):
    model = make()
    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype(np.float32)
    outputs = layer_outputs(model, x)
    records = summary(model, (2, *input_shape))
    assert [r.output_shape for r in records] == [out.shape for _, out in outputs]
    assert model(cnnlab.Tensor(x)).shape == records[-1].output_shape


@pytest.mark.parametrize("name", ["linear", "svm", "mlp", "cnn", "cnn-bn"])
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 30, 30)])
def test_summary_of_every_model_in_the_family_matches_its_forward_pass(name, input_shape):
    model = build_model(name, in_channels=input_shape[0], num_classes=10,
                        input_size=input_shape[1:]).eval()  # fmt: skip
    x = np.zeros((2, *input_shape), dtype=np.float32)
    records = summary(model, x.shape)
    assert [r.output_shape for r in records] == [out.shape for _, out in layer_outputs(model, x)]
    assert sum(r.params for r in records) == sum(p.data.size for p in model.parameters())


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_summary_of_the_vit_matches_its_forward_pass_one_row_per_encoder_layer(input_shape):
    """Tokens x dim per row, each encoder layer's parameters in one row, the patch's receptive
    field on the tokens and the whole image from the first attention layer on."""
    model = build_model("vit", in_channels=input_shape[0], input_size=input_shape[1:],
                        num_layers=2).eval()
    x = np.random.default_rng(0).normal(size=(2, *input_shape)).astype(np.float32)
    records = summary(model, x.shape)
    assert [r.output_shape for r in records] == [out.shape for _, out in layer_outputs(model, x)]
    tokens = 1 + (input_shape[1] // 4) * (input_shape[2] // 4)
    assert [(r.name, r.output_shape[1:]) for r in records] == [
        ("conv1", (64, input_shape[1] // 4, input_shape[2] // 4)), ("tokens1", (tokens, 64)),
        ("encoder1", (tokens, 64)), ("encoder2", (tokens, 64)), ("ln1", (tokens, 64)),
        ("select1", (64,)), ("linear1", (10,))]
    encoder = model[2]
    assert records[2].params == sum(p.data.size for p in encoder.parameters()) == 33472
    assert sum(r.params for r in records) == sum(p.data.size for p in model.parameters())
    assert [r.receptive_field for r in records[:3]] == [(4, 4), (4, 4), tuple(input_shape[1:])]
    assert not any(r.spatial for r in records[1:])
    text = format_summary(records, x.shape)
    assert f"encoder1  TransformerEncoderLayer  (2, {tokens}, 64)     33,472" in text


def footprint(model, x, layer_index, position):
    """Bounding box (top, left, bottom, right) of the nonzero input gradient of one output."""
    x = cnnlab.Tensor(x, requires_grad=True)
    out = nn.Sequential(*list(model)[: layer_index + 1])(x)
    grad = np.zeros(out.shape)
    grad[(0, 0, *position)] = 1.0
    out.backward(grad)
    rows, columns = np.nonzero(np.abs(x.grad[0]).sum(axis=0))
    return rows.min(), columns.min(), rows.max(), columns.max()


def random_weights(model, seed):
    rng = np.random.default_rng(seed)
    for parameter in model.parameters():
        parameter.data = rng.uniform(0.5, 1.5, size=parameter.shape)  # positive: no cancelling


def test_empirical_receptive_field_equals_the_computed_one_for_a_linear_stack():
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 3, (3, 5), stride=2),
        nn.Conv2d(3, 2, 3, padding=1),
    ).double()
    random_weights(model, 0)
    x = np.random.default_rng(1).normal(size=(1, 2, 30, 34))
    records = summary(model, (2, 30, 34))
    for index, record in enumerate(records):
        height, width = record.output_shape[1:]
        for position in [(height // 2, width // 2), (0, 0), (height - 1, width - 1)]:
            expected = receptive_field_box(record, position, image_hw=(30, 34))
            assert footprint(model, x, index, position) == expected, (record.name, position)
        box = receptive_field_box(record, (height // 2, width // 2))
        assert (box[2] - box[0] + 1, box[3] - box[1] + 1) == record.receptive_field
    # rf 1 -> 3 -> 4 (jump 2) -> (8, 12) (jump 4) -> (16, 20)
    assert records[-1].receptive_field == (16, 20) and records[-1].jump == (4, 4)


def test_empirical_receptive_field_never_exceeds_the_computed_one_with_relu_and_max_pool():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    ).double()
    random_weights(model, 2)
    for parameter in model.parameters():
        parameter.data -= 1.0  # mixed signs: ReLU and max pooling cut the footprint down
    x = np.random.default_rng(3).normal(size=(1, 1, 24, 24))
    records = summary(model, (1, 24, 24))
    for index, record in enumerate(records):
        height, width = record.output_shape[1:]
        position = (height // 2, width // 2)
        out = layer_outputs(model[: index + 1], x)[-1][1]
        if out[0, 0, position[0], position[1]] == 0:
            continue  # a dead ReLU sees nothing
        top, left, bottom, right = footprint(model, x, index, position)
        box = receptive_field_box(record, position, image_hw=(24, 24))
        assert box[0] <= top and box[1] <= left and bottom <= box[2] and right <= box[3]


def test_translate_shifts_with_zero_fill():
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    assert translate(x, (1, -1))[0, 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0]]
    assert not translate(x, (3, 0)).any()


def test_equivariance_is_small_for_conv_and_pool_and_large_for_a_dense_layer():
    rng = np.random.default_rng(0)
    x = np.zeros((2, 3, 32, 32), dtype=np.float32)
    x[:, :, 6:26, 6:26] = rng.normal(size=(2, 3, 20, 20))  # zero border: shifts lose nothing
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3), nn.AvgPool2d(2))  # fmt: skip
    assert equivariance_error(conv, x, (4, -4)) < 1e-5
    assert equivariance_error(conv, x, (4, -4), jump=summary(conv, x.shape)[-1].jump) < 1e-5
    pool = lambda images: F.max_pool2d(images, 2)  # noqa: E731  a plain function on ndarrays
    assert equivariance_error(pool, x, (2, 0)) < 1e-6
    subsample = lambda images: np.asarray(images)[..., ::2, ::2]  # noqa: E731  NumPy only
    assert equivariance_error(subsample, cnnlab.Tensor(x), (2, 4)) == 0
    dense = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4 * 8 * 8))
    reshaped = lambda images: dense(images).reshape(-1, 4, 8, 8)  # noqa: E731
    assert equivariance_error(reshaped, cnnlab.Tensor(x), (4, 4)) > 0.3
    with pytest.raises(ValueError, match="multiple of the jump"):
        equivariance_error(pool, x, (1, 0))


def test_equivariance_for_class_scores_is_invariance_and_nearest_allows_any_shift():
    """Global average pooling then a linear head gives a shifted image (zero border) the
    same scores; a flattening head does not. A stride-4 patch embedding commutes with a shift
    of one patch, not with a shift of one pixel (nearest: against the unshifted tokens)."""
    rng = np.random.default_rng(1)
    x = np.zeros((2, 1, 28, 28), dtype=np.float32)
    x[:, :, 8:20, 8:20] = rng.normal(size=(2, 1, 12, 12))
    conv = nn.Conv2d(1, 4, 3, padding=1, generator=rng)
    head = nn.Linear(4, 3, generator=rng)
    pooled = lambda images: head(conv(images).mean(axis=(2, 3)))  # noqa: E731
    assert equivariance_error(pooled, x, (4, 4)) < 1e-5  # float32 sums in another order
    flat = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3, generator=rng))
    assert equivariance_error(flat, x, (4, 4)) > 0.1
    patches = nn.Conv2d(1, 8, 4, stride=4, generator=rng)
    assert equivariance_error(patches, x, (4, -4)) < 1e-6
    assert equivariance_error(patches, x, (1, 0), nearest=True) > 0.1
    assert equivariance_error(patches, x, (-4, 4), nearest=True) < 1e-6  # a multiple: as before
    with pytest.raises(ValueError, match="or give nearest=True"):
        equivariance_error(patches, x, (1, 0))
