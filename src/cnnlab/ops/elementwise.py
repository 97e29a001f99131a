"""Elementwise primitives. Sub, neg, sqrt and friends are compositions in the tensor.

Binary ops receive operands that may broadcast against each other; backward returns gradients
of the broadcast shape and the tensor sums them back to each input's shape.
"""

import numpy as np

from cnnlab.ops import special
from cnnlab.ops.function import Function
from cnnlab.threads import parallel_for


class Add(Function):
    """out = a + b."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad_output):
        return grad_output, grad_output


class Mul(Function):
    """out = a * b."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad_output):
        grad_a = grad_output * self.b if self.needs_input_grad[0] else None
        grad_b = grad_output * self.a if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    """out = a / b."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad_output):
        grad_a = grad_output / self.b if self.needs_input_grad[0] else None
        grad_b = -grad_output * self.a / (self.b * self.b) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class Pow(Function):
    """out = a ** exponent, for a constant (non-tensor) exponent."""

    def forward(self, a, *, exponent):
        self.a, self.exponent = a, exponent
        return a**exponent

    def backward(self, grad_output):
        return (grad_output * self.exponent * self.a ** (self.exponent - 1),)


class Exp(Function):
    """out = e ** a."""

    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, grad_output):
        return (grad_output * self.out,)


class Log(Function):
    """out = natural log of a."""

    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, grad_output):
        return (grad_output / self.a,)


class ReLU(Function):
    """out = max(a, 0); the gradient at exactly 0 is 0, as in PyTorch."""

    def forward(self, a):
        if a.ndim == 0:
            self.out = np.maximum(a, 0)
            return self.out
        out = np.empty_like(a)  # the memory order of a: NHWC for conv outputs
        parallel_for(lambda share: np.maximum(a[share], 0, out=out[share]), len(a), a.nbytes)
        self.out = out
        return out

    def backward(self, grad_output):
        out = self.out
        if out.ndim == 0:
            return (grad_output * (out > 0),)
        grad = np.empty_like(out, dtype=grad_output.dtype)

        def share_grad(share):  # a product is 6x faster than where()
            np.multiply(grad_output[share], out[share] > 0, out=grad[share])

        parallel_for(share_grad, len(out), grad.nbytes)
        return (grad,)


class LeakyReLU(Function):
    """out = a where a > 0, else negative_slope * a."""

    def forward(self, a, *, negative_slope):
        self.positive = a > 0
        self.negative_slope = negative_slope
        return np.where(self.positive, a, a * negative_slope).astype(a.dtype, copy=False)

    def backward(self, grad_output):
        scale = np.where(self.positive, 1.0, self.negative_slope).astype(grad_output.dtype)
        return (grad_output * scale,)


class Sigmoid(Function):
    """out = 1 / (1 + e ** -a), computed without overflow for large |a|."""

    def forward(self, a):
        exp_neg_abs = np.exp(-np.abs(a))
        self.out = np.where(a >= 0, 1 / (1 + exp_neg_abs), exp_neg_abs / (1 + exp_neg_abs))
        self.out = self.out.astype(a.dtype, copy=False)
        return self.out

    def backward(self, grad_output):
        return (grad_output * self.out * (1 - self.out),)


class Tanh(Function):
    """out = tanh(a)."""

    def forward(self, a):
        self.out = np.tanh(a)
        return self.out

    def backward(self, grad_output):
        return (grad_output * (1 - self.out * self.out),)


class Maximum(Function):
    """out = max(a, b) elementwise; ties send half the gradient to each, as torch.maximum."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return np.maximum(a, b)

    def backward(self, grad_output):
        share_a = (self.a > self.b) + 0.5 * (self.a == self.b)
        grad_a = grad_output * share_a if self.needs_input_grad[0] else None
        grad_b = grad_output * (1 - share_a) if self.needs_input_grad[1] else None
        return grad_a, grad_b


class GELU(Function):
    """out = a * Phi(a), Phi the standard normal CDF: the exact (erf) GELU, torch's default.

    d out / da = Phi(a) + a * phi(a), phi the normal density, made in the forward pass only
    when a gradient is needed. Both from `special.gelu_and_slope` (exact to rounding in
    float64, to float32's precision in float32).
    """

    def forward(self, a):
        out, self.slope = special.gelu_and_slope(a, slope=any(self.needs_input_grad))
        return out

    def backward(self, grad_output):
        return (grad_output * self.slope,)
