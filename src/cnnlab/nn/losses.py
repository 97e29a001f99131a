"""Losses on class scores, and the lecture's L2 penalty R(W).

L2 regularisation comes in two conventions, and cnnlab offers both:

- the lecture's explicit penalty, loss = data_loss + reg * sum(W ** 2), whose gradient adds
  2 * reg * W to each weight's gradient: `l2_penalty(model, reg)`;
- the optimiser's `weight_decay` (PyTorch's coupled form in SGD, Adam and RMSprop), which adds
  weight_decay * W to the gradient, the gradient of (weight_decay / 2) * sum(W ** 2).

So `l2_penalty(model, reg)` equals `weight_decay = 2 * reg` applied to the same parameters
(the weights only, as below), and weight_decay = wd is l2_penalty with reg = wd / 2. AdamW's
decoupled decay (W -= lr * weight_decay * W, outside the adaptive scaling) is a different
regulariser with no exact penalty equivalent.
"""

import warnings

import numpy as np

from cnnlab.nn import functional as F
from cnnlab.nn.module import Module
from cnnlab.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def looks_like_probabilities(scores, atol=1e-4):
    """True when every row of `scores` (N, C) is non-negative and sums to 1 (C > 1)."""
    array = scores.data if isinstance(scores, Tensor) else np.asarray(scores)
    if array.ndim != 2 or array.shape[1] < 2 or array.shape[0] == 0:
        return False
    return bool(np.all(array >= 0) and np.allclose(array.sum(axis=1), 1.0, rtol=0, atol=atol))


class _ScoreLoss(Module):
    """A loss on raw class scores that warns once if it is given probabilities instead."""

    def __init__(self, reduction):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        self.reduction = reduction
        self._warned = False

    def _check_scores(self, scores):
        if not self._warned and looks_like_probabilities(scores):
            self._warned = True
            warnings.warn(
                f"{type(self).__name__}: every row of the input is non-negative and sums to 1, "
                "so it looks like probabilities (softmax already applied); this loss expects "
                "raw scores (logits). Remove the softmax from the model's output.",
                UserWarning,
                stacklevel=4,  # the user's loss(...): above __call__, forward and this method
            )

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class CrossEntropyLoss(_ScoreLoss):
    """Softmax cross-entropy on raw scores: loss_i = -log(exp(s_i,y_i) / sum_j exp(s_ij)).

    Args:
        reduction: "mean" over the batch, "sum", or "none" (one loss per example).
            Default: "mean".
        label_smoothing: e in [0, 1]; the target is 1 - e on the true class plus e / C on
            every class, as PyTorch's. Default: 0.0.

    Shape:
        Input: scores (N, C), the logits (not probabilities). Target: (N,) int class ids in
        [0, C). Output: a scalar, or (N,) for reduction="none".

    Warns once if every row of the input is non-negative and sums to 1 (probabilities).
    """

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.label_smoothing = F.check_label_smoothing("CrossEntropyLoss", label_smoothing)

    def forward(self, scores, target):
        self._check_scores(scores)
        return F.cross_entropy(scores, target, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)

    def extra_repr(self):
        text = super().extra_repr()
        if self.label_smoothing:
            text += (", " if text else "") + f"label_smoothing={self.label_smoothing}"
        return text


class MultiClassHingeLoss(_ScoreLoss):
    """The multiclass SVM loss: loss_i = sum over j != y_i of max(0, s_ij - s_i,y_i + margin).

    Not divided by the number of classes (torch.nn.MultiMarginLoss is this divided by C).

    Args:
        margin: Default: 1.0.
        reduction: "mean" over the batch, "sum", or "none". Default: "mean".

    Shape:
        Input: scores (N, C). Target: (N,) int class ids. Output: a scalar, or (N,).

    Warns once if every row of the input is non-negative and sums to 1 (probabilities).
    """

    def __init__(self, margin=1.0, reduction="mean"):
        super().__init__(reduction)
        if not isinstance(margin, int | float) or isinstance(margin, bool):
            raise ValueError(f"MultiClassHingeLoss: margin must be a number, got {margin!r}")
        self.margin = float(margin)

    def forward(self, scores, target):
        self._check_scores(scores)
        return F.multiclass_hinge_loss(scores, target, self.margin, reduction=self.reduction)

    def extra_repr(self):
        text = f"margin={self.margin}" if self.margin != 1.0 else ""
        reduction = super().extra_repr()
        return ", ".join(part for part in (text, reduction) if part)


def regularized_weights(module_or_params):
    """The tensors R(W) is over: for a Module, its weights with at least two dimensions
    (Linear and Conv2d weights; not biases, not BatchNorm's scale and shift); for an iterable
    of tensors, every one of them (the caller chose)."""
    if isinstance(module_or_params, Module):
        return [p for _, p in module_or_params.named_parameters() if p.ndim >= 2]
    return list(module_or_params)


def l2_penalty(module_or_params, reg):
    """The lecture's L2 regularisation R(W) scaled: reg * sum of squared weights, a Tensor.

    Args:
        module_or_params: a Module (its Linear and Conv2d weights count; biases and BatchNorm
            parameters do not), or an iterable of tensors (all count).
        reg: the regularisation strength (lambda).

    Add it to the data loss; its gradient is 2 * reg * W, the same as optimiser
    weight_decay = 2 * reg on those weights (see this module's docstring).
    """
    if not isinstance(reg, int | float) or isinstance(reg, bool) or reg < 0:
        raise ValueError(f"l2_penalty: reg must be a non-negative number, got {reg!r}")
    weights = regularized_weights(module_or_params)
    if not weights:
        return Tensor(np.zeros((), dtype=np.float32))
    total = None
    for weight in weights:
        term = (weight * weight).sum()
        total = term if total is None else total + term
    return total * reg
