"""cnnlab.nn.functional against torch.nn.functional: losses, linear, softmax family, dropout,
and the error messages users see for bad shapes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnlab
import cnnlab.nn.functional as F

from helpers import assert_gradcheck, compare_with_torch

SEEDS = st.integers(0, 2**32 - 1)  # Hypothesis tests draw their data's seed with the case

def targets(rng, count, classes):
    return rng.integers(0, classes, count)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(rng, reduction, dtype):
    logits, target = rng.standard_normal((7, 5)) * 3, targets(rng, 7, 5)
    compare_with_torch(
        lambda s, t: F.cross_entropy(s, t, reduction=reduction),
        lambda s, t: TF.cross_entropy(s, t, reduction=reduction),
        [logits, target],
        dtype,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.1, 1.0])
def test_label_smoothed_cross_entropy_matches_torch(smoothing, reduction, dtype, rng):
    logits, target = rng.standard_normal((7, 5)) * 3, targets(rng, 7, 5)
    compare_with_torch(
        lambda s, t: F.cross_entropy(s, t, reduction=reduction, label_smoothing=smoothing),
        lambda s, t: TF.cross_entropy(s, t, reduction=reduction, label_smoothing=smoothing),
        [logits, target],
        dtype,
    )


def test_label_smoothing_gradcheck_and_bad_values(rng):
    target = np.array([0, 2, 1, 2])
    assert_gradcheck(lambda s: F.cross_entropy(s, target, label_smoothing=0.2),
                     rng.standard_normal((4, 3)))
    assert_gradcheck(lambda s: F.cross_entropy(s, target, reduction="none",
                                               label_smoothing=0.3).sum(),
                     rng.standard_normal((4, 3)))
    for bad in (-0.1, 1.5, True, "0.1"):
        with pytest.raises(ValueError, match="cross_entropy: label_smoothing must be a number "
                                             r"in \[0, 1\], got"):
            F.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), label_smoothing=bad)
    with pytest.raises(ValueError, match="CrossEntropyLoss: label_smoothing"):
        cnnlab.nn.CrossEntropyLoss(label_smoothing=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_multiclass_hinge_is_torch_multi_margin_times_the_class_count(
    rng, reduction, margin, dtype
):
    classes = 6
    scores, target = rng.standard_normal((8, classes)), targets(rng, 8, classes)
    compare_with_torch(
        lambda s, t: F.multiclass_hinge_loss(s, t, margin=margin, reduction=reduction),
        lambda s, t: TF.multi_margin_loss(s, t, margin=margin, reduction=reduction) * classes,
        [scores, target],
        dtype,
    )


def test_hinge_loss_on_the_lecture_example():
    # CS231n's three-image example: losses 2.9, 0 and 12.9, mean 5.27.
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])  # rows: images
    losses = F.multiclass_hinge_loss(scores, np.array([0, 1, 2]), reduction="none")
    np.testing.assert_allclose(losses.data, [2.9, 0.0, 12.9], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_linear_matches_torch(rng, dtype):
    x, weight = rng.standard_normal((4, 6)), rng.standard_normal((3, 6))
    bias = rng.standard_normal(3)
    compare_with_torch(F.linear, TF.linear, [x, weight, bias], dtype)
    compare_with_torch(F.linear, TF.linear, [x, weight], dtype)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_and_softmax_are_stable_for_huge_scores_along_any_axis(rng, dim):
    """Scores near 500 (exp overflows float64 above 709): as torch, finite, in either axis of
    a non-square input, gradients included."""
    scores = 500 + rng.standard_normal((4, 3))
    compare_with_torch(lambda t: F.log_softmax(t, dim=dim), lambda t: TF.log_softmax(t, dim=dim),
                       [scores], np.float64)
    compare_with_torch(lambda t: F.softmax(t, dim=dim), lambda t: TF.softmax(t, dim=dim),
                       [scores], np.float64)  # dim 0: the path for an axis that is not last


def test_softmax_is_stable_for_huge_scores():
    logits = cnnlab.Tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    np.testing.assert_allclose(F.softmax(logits, dim=1).data, [[1.0, 0.0, 0.0]])
    loss = F.cross_entropy(logits, np.array([2]))
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(2000.0)
    loss.backward()
    assert np.all(np.isfinite(logits.grad))


@pytest.mark.parametrize(
    "fn",
    [
        lambda s: F.cross_entropy(s, np.array([0, 2, 1, 2])),
        lambda s: F.multiclass_hinge_loss(s, np.array([0, 2, 1, 2]), margin=0.7),
        lambda s: F.log_softmax(s, dim=0),
        lambda s: F.softmax(s, dim=1),
        lambda s: F.leaky_relu(s, 0.1),
    ],
)
def test_losses_and_softmax_pass_gradcheck(rng, fn):
    assert_gradcheck(fn, rng.standard_normal((4, 3)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_leaky_relu_matches_torch_at_zero_and_between_zero_and_one(dtype):
    x = np.array([[-2.0, -0.5, 0.0], [0.3, 0.5, 2.0]])  # at 0 the gradient is the slope
    compare_with_torch(lambda t: F.leaky_relu(t, 0.1), lambda t: TF.leaky_relu(t, 0.1), [x], dtype)


def test_linear_passes_gradcheck(rng):
    assert_gradcheck(F.linear, rng.standard_normal((3, 5)), rng.standard_normal((2, 5)),
                     rng.standard_normal(2))


def test_dropout_scales_kept_units_and_is_the_identity_in_eval():
    x = cnnlab.Tensor(np.ones((200, 100)), requires_grad=True)
    out = F.dropout(x, p=0.25, training=True, generator=np.random.default_rng(0))
    kept = out.data != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out.data[kept], 1 / 0.75)
    out.sum().backward()
    np.testing.assert_allclose(x.grad, out.data)  # gradient flows exactly where units were kept
    assert F.dropout(x, p=0.25, training=False) is x


def test_dropout_with_the_same_seed_drops_the_same_units():
    x = cnnlab.Tensor(np.ones((10, 10)))
    first = F.dropout(x, 0.5, generator=np.random.default_rng(3)).data
    second = F.dropout(x, 0.5, generator=np.random.default_rng(3)).data
    np.testing.assert_array_equal(first, second)


def test_bad_shapes_name_the_op_what_was_expected_and_what_came():
    with pytest.raises(ValueError, match=r"linear: .*\(2, 5\).*in_features = 4"):
        F.linear(np.zeros((2, 5)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \(N,\) = \(2"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"cross_entropy: target class id 3 is out of range"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"multiclass_hinge_loss: expected scores of shape"):
        F.multiclass_hinge_loss(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(np.zeros((1, 3)), np.array([0]), reduction="avg")
    with pytest.raises(ValueError, match=r"dropout: probability p must be in \[0, 1\], got 1.5"):
        F.dropout(np.zeros(3), p=1.5)


def test_conv_and_pool_errors_quote_the_formula_with_the_numbers():
    x = np.zeros((1, 1, 5, 4), dtype=np.float32)
    message = (
        r"conv2d: output width \(W - K \+ 2P\)/S \+ 1 = \(4 - 7 \+ 0\)/1 \+ 1 = -2 is not positive"
    )
    with pytest.raises(ValueError, match=message):
        F.conv2d(x, np.zeros((2, 1, 3, 7), dtype=np.float32))
    with pytest.raises(ValueError, match=r"max_pool2d: output height .* = \(5 - 6 \+ 0\)/6 \+ 1"):
        F.max_pool2d(x, 6)
    with pytest.raises(ValueError, match="padding should be at most half of kernel size"):
        F.avg_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"conv2d: .*\(1, 5, 4\)"):
        F.conv2d(np.zeros((1, 5, 4)), np.zeros((2, 1, 3, 3)))


def test_torch_semantics_of_integer_and_pair_arguments(rng):
    x = rng.standard_normal((2, 3, 9, 8))
    weight = rng.standard_normal((4, 3, 3, 2))
    ours = F.conv2d(x, weight, stride=(2, 1), padding=(1, 0)).data
    theirs = TF.conv2d(torch.tensor(x), torch.tensor(weight), stride=(2, 1), padding=(1, 0))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)
    pooled = F.max_pool2d(x, (3, 2), stride=(2, 1), padding=(1, 1)).data
    reference = TF.max_pool2d(torch.tensor(x), (3, 2), stride=(2, 1), padding=(1, 1))
    np.testing.assert_array_equal(pooled, reference.numpy())


# ----- conv2d and pooling through the tensor (the primitives have their own ndarray tests) -----



@st.composite
def conv_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 9))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 9))
    n, c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    bias = draw(st.booleans())
    return (n, c_in, height, width), (c_out, c_in, *kernel), stride, padding, bias


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.sampled_from([np.float64, np.float32]), SEEDS)
def test_conv2d_matches_torch_on_random_configurations(case, dtype, seed):
    rng = np.random.default_rng(seed)
    x_shape, w_shape, stride, padding, bias = case
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    if bias:
        arrays.append(rng.standard_normal(w_shape[0]))
    compare_with_torch(
        lambda *a: F.conv2d(*a, stride=stride, padding=padding),
        lambda *a: TF.conv2d(*a, stride=stride, padding=padding),
        arrays,
        dtype,
    )


@settings(max_examples=8, deadline=None)
@given(conv_cases(), SEEDS)
def test_conv2d_passes_gradcheck(case, seed):
    rng = np.random.default_rng(seed)
    x_shape, w_shape, stride, padding, _ = case
    assert_gradcheck(
        lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
        rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0]),
    )


@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 9))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 9))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), height, width)
    return shape, kernel, stride, padding


@settings(max_examples=25, deadline=None)
@given(pool_cases(), st.sampled_from(["max", "avg"]), st.sampled_from([np.float64, np.float32]),
       SEEDS)
def test_pooling_matches_torch_on_random_configurations(case, kind, dtype, seed):
    rng = np.random.default_rng(seed)
    shape, kernel, stride, padding = case
    ours = F.max_pool2d if kind == "max" else F.avg_pool2d
    theirs = TF.max_pool2d if kind == "max" else TF.avg_pool2d
    compare_with_torch(
        lambda x: ours(x, kernel, stride, padding),
        lambda x: theirs(x, kernel, stride, padding),
        [rng.standard_normal(shape)],
        dtype,
    )


@settings(max_examples=8, deadline=None)
@given(pool_cases(), st.sampled_from(["max", "avg"]), SEEDS)
def test_pooling_passes_gradcheck(case, kind, seed):
    rng = np.random.default_rng(seed)
    shape, kernel, stride, padding = case
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    assert_gradcheck(lambda x: pool(x, kernel, stride, padding), rng.standard_normal(shape))


def test_max_pool_sends_the_gradient_of_ties_where_torch_does(rng):
    x = np.maximum(rng.standard_normal((2, 3, 6, 6)), 0)  # ReLU output: many tied zeros
    compare_with_torch(lambda t: F.max_pool2d(t, 2), lambda t: TF.max_pool2d(t, 2), [x])


def test_a_network_input_that_needs_no_gradient_gets_none(rng):
    x = cnnlab.Tensor(rng.standard_normal((2, 1, 5, 5)))
    weight = cnnlab.Tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    F.conv2d(x, weight).sum().backward()
    assert x.grad is None and weight.grad.shape == (3, 1, 3, 3)


@pytest.mark.parametrize("op", ["conv", "max", "avg"])
def test_conv_and_pooling_commute_with_translation(rng, op):
    x = np.zeros((1, 2, 24, 24))
    x[:, :, 6:18, 6:18] = rng.standard_normal((1, 2, 12, 12))
    weight = rng.standard_normal((3, 2, 3, 3))
    fn = {
        "conv": lambda t: F.conv2d(t, weight, padding=1),
        "max": lambda t: F.max_pool2d(t, 2),
        "avg": lambda t: F.avg_pool2d(t, 2),
    }[op]
    shifted = np.roll(x, (2, 4), axis=(2, 3))  # the content stays clear of the borders
    step = 1 if op == "conv" else 2
    expected = np.roll(fn(x).data, (2 // step, 4 // step), axis=(2, 3))
    np.testing.assert_allclose(fn(shifted).data, expected, atol=1e-12)
