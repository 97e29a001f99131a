"""The loss modules and the L2 penalty: values against torch, the warning for probabilities
given instead of scores (when, once, where it points), reprs and argument checks."""

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import nn

from helpers import relative_error

TOLERANCE = 1e-10  # float64


def test_losses_match_torch(rng):
    scores, target = rng.standard_normal((6, 4)) * 2, rng.integers(0, 4, 6)
    for reduction in ("mean", "sum", "none"):
        ours = nn.CrossEntropyLoss(reduction=reduction)(cnnlab.Tensor(scores), target)
        theirs = torch.nn.CrossEntropyLoss(reduction=reduction)(torch.tensor(scores),
                                                                 torch.tensor(target))
        assert relative_error(ours.data, theirs.numpy()) < TOLERANCE
        smoothed = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)
        theirs = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1)(
            torch.tensor(scores), torch.tensor(target))
        assert relative_error(smoothed(cnnlab.Tensor(scores), target).data,
                              theirs.numpy()) < TOLERANCE
        shown = "" if reduction == "mean" else f"reduction={reduction!r}, "
        assert repr(smoothed) == f"CrossEntropyLoss({shown}label_smoothing=0.1)"
        hinge = nn.MultiClassHingeLoss(margin=0.5, reduction=reduction)(cnnlab.Tensor(scores),
                                                                       target)
        multi_margin = torch.nn.MultiMarginLoss(margin=0.5, reduction=reduction)(
            torch.tensor(scores), torch.tensor(target))
        assert relative_error(hinge.data, multi_margin.numpy() * 4) < TOLERANCE
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.CrossEntropyLoss(reduction="average")


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), nn.MultiClassHingeLoss()], ids=repr)
def test_losses_warn_once_when_given_probabilities(rng, loss, recwarn):
    logits = cnnlab.Tensor(rng.standard_normal((8, 5)))
    target = rng.integers(0, 5, 8)
    loss(logits, target)
    assert len(recwarn) == 0
    probabilities = logits.softmax(dim=1)
    with pytest.warns(UserWarning, match="looks like probabilities"):
        loss(probabilities, target)
    loss(probabilities, target)
    assert len(recwarn) == 0  # once per loss object
    nonnegative = cnnlab.Tensor(np.abs(rng.standard_normal((8, 5))))
    type(loss)()(nonnegative, target)  # non-negative but not summing to 1: no warning
    assert len(recwarn) == 0


def test_l2_penalty_counts_weights_only_and_its_gradient_is_two_reg_w():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    reg = 0.05
    penalty = nn.l2_penalty(model, reg)
    weights = [model[0].weight, model[3].weight]
    expected = reg * sum(float((w.data.astype(np.float64) ** 2).sum()) for w in weights)
    assert penalty.item() == pytest.approx(expected, rel=1e-6)
    penalty.backward()
    for weight in weights:
        assert np.allclose(weight.grad, 2 * reg * weight.data, rtol=1e-6)
    assert model[0].bias.grad is None and model[1].weight.grad is None
    explicit = nn.l2_penalty([model[0].bias], 2.0)
    assert explicit.item() == pytest.approx(2.0 * float((model[0].bias.data ** 2).sum()), rel=1e-6)
    with pytest.raises(ValueError, match="reg must be a non-negative number"):
        nn.l2_penalty(model, -1)


def test_looks_like_probabilities_on_its_edge_cases():
    from cnnlab.nn.losses import looks_like_probabilities

    one_hot = np.eye(3)[[0, 2, 1, 1]]  # exact zeros are probabilities too
    assert looks_like_probabilities(one_hot)  # an ndarray, as well as a Tensor
    assert looks_like_probabilities(cnnlab.Tensor(one_hot))
    assert looks_like_probabilities(np.array([[0.3, 0.7]]))  # two classes, one row
    assert not looks_like_probabilities(np.ones((4, 1)))  # one class: its rows always sum to 1
    assert not looks_like_probabilities(np.zeros((0, 5)))  # no rows to judge
    assert not looks_like_probabilities(np.full((2, 3), 0.5))  # rows sum to 1.5
    assert not looks_like_probabilities(np.array([0.2, 0.8]))  # not (N, C)
    assert looks_like_probabilities(np.array([[0.2, 0.80009]]))  # within atol = 1e-4
    assert not looks_like_probabilities(np.array([[0.2, 0.8002]]))


def test_the_probability_warning_points_at_the_callers_line():
    with pytest.warns(UserWarning, match="looks like probabilities") as record:
        nn.CrossEntropyLoss()(cnnlab.Tensor(np.full((2, 4), 0.25)), np.array([0, 3]))
    assert record[0].filename == __file__


def test_loss_reprs_show_what_differs_from_the_defaults():
    assert repr(nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(nn.CrossEntropyLoss(reduction="sum")) == "CrossEntropyLoss(reduction='sum')"
    assert repr(nn.MultiClassHingeLoss()) == "MultiClassHingeLoss()"
    assert repr(nn.MultiClassHingeLoss(margin=0.5, reduction="none")) == (
        "MultiClassHingeLoss(margin=0.5, reduction='none')")


@pytest.mark.parametrize("margin", [True, "1", None])
def test_hinge_margin_must_be_a_number(margin):
    with pytest.raises(ValueError, match=f"^MultiClassHingeLoss: margin must be a number, got "
                                         f"{margin!r}$"):
        nn.MultiClassHingeLoss(margin=margin)


def test_l2_penalty_takes_zero_and_refuses_booleans():
    model = nn.Linear(3, 2)
    assert nn.l2_penalty(model, 0).item() == 0.0
    with pytest.raises(ValueError, match="^l2_penalty: reg must be a non-negative number, got "
                                         "True$"):
        nn.l2_penalty(model, True)
