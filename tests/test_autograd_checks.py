"""The backward pass's edges (found by mutation): autograd.backward's own default, a primitive
that returns too few gradients or None for an input, a tensor cut from the graph by
requires_grad_(False), and gradients summed back onto inputs of size-1 or empty axes. torch is
the oracle where it has the same behaviour.
"""

import numpy as np
import pytest
import torch

from cnnlab import Tensor, autograd
from cnnlab.ops.function import Function


def test_autograd_backward_frees_the_graph_by_default(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    y = (x * x).sum()
    autograd.backward(y, np.ones((), x.dtype))
    np.testing.assert_array_equal(x.grad, 2 * x.data)
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        autograd.backward(y, np.ones((), x.dtype))


class TimesFirst(Function):
    """a * b, differentiable in a only: backward gives (grad * b, None) as torch allows."""

    def forward(self, a, b):
        self.b = b
        return a * b

    def backward(self, grad):
        return grad * self.b, None


class TimesFirstTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(b)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        (b,) = ctx.saved_tensors
        return grad * b, None


def test_a_primitive_may_give_no_gradient_for_an_input_that_requires_one_as_in_torch(rng):
    a, b = rng.standard_normal((2, 4))
    ours = [Tensor(v, requires_grad=True) for v in (a, b)]
    (Tensor._make(TimesFirst, *ours) * 3).sum().backward()
    theirs = [torch.tensor(v, requires_grad=True) for v in (a, b)]
    (TimesFirstTorch.apply(*theirs) * 3).sum().backward()
    np.testing.assert_allclose(ours[0].grad, theirs[0].grad.numpy(), rtol=1e-15)
    assert ours[1].grad is None and theirs[1].grad is None


class TooFewGradients(TimesFirst):
    def backward(self, grad):
        return (grad * self.b,)


def test_a_primitive_that_returns_too_few_gradients_is_an_error(rng):
    a, b = (Tensor(v, requires_grad=True) for v in rng.standard_normal((2, 4)))
    out = Tensor._make(TooFewGradients, a, b).sum()
    with pytest.raises(ValueError, match="zip"):
        out.backward()


def test_a_tensor_cut_by_requires_grad_false_is_a_constant_even_when_its_graph_was_freed(rng):
    x = Tensor(rng.standard_normal(3), requires_grad=True)
    hidden = x * 2
    hidden.sum().backward()  # frees hidden's graph
    hidden.requires_grad_(False)
    x.grad = None
    (x * hidden).sum().backward()  # hidden is a constant: nothing behind it is visited
    np.testing.assert_array_equal(x.grad, hidden.data)


@pytest.mark.parametrize("parameter_shape, other_shape", [
    ((3, 1), (3, 1)), ((3, 1), (3, 4)), ((1, 4), (2, 3, 4)), ((3, 1), (3, 0)), ((1,), (0,)),
    ((2, 1, 1), (5, 2, 1, 3)),
])
def test_gradients_sum_back_onto_size_1_and_missing_axes_as_torch(rng, parameter_shape,
                                                                  other_shape):
    p, other = rng.standard_normal(parameter_shape), rng.standard_normal(other_shape)
    weights = rng.standard_normal(np.broadcast_shapes(parameter_shape, other_shape))
    ours = Tensor(p, requires_grad=True)
    ((ours + Tensor(other)) * Tensor(weights)).sum().backward()
    theirs = torch.tensor(p, requires_grad=True)
    ((theirs + torch.from_numpy(other)) * torch.from_numpy(weights)).sum().backward()
    assert ours.grad.shape == parameter_shape
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-15)

