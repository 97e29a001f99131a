"""Reductions over axes. Mean is a composition (sum / count) in the tensor."""

import numpy as np

from cnnlab.ops.function import Function


def _expand(grad_output, input_shape, axis, keepdims):
    """Reinsert reduced axes (size 1) so grad_output broadcasts against the input."""
    if axis is None or keepdims:
        return grad_output if axis is not None else np.reshape(grad_output, (1,) * len(input_shape))
    axes = (axis,) if isinstance(axis, int) else axis
    axes = sorted(a % len(input_shape) for a in axes)
    shape = list(grad_output.shape)
    for a in axes:
        shape.insert(a, 1)
    return grad_output.reshape(shape)


class Sum(Function):
    """out = sum of a over `axis` (None: all axes)."""

    def forward(self, a, *, axis=None, keepdims=False):
        self.input_shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return np.asarray(a.sum(axis=axis, keepdims=keepdims))

    def backward(self, grad_output):
        grad = _expand(grad_output, self.input_shape, self.axis, self.keepdims)
        return (np.broadcast_to(grad, self.input_shape),)


class Max(Function):
    """out = max of a over `axis`; tied maxima share the gradient equally (as torch.amax)."""

    def forward(self, a, *, axis=None, keepdims=False):
        self.a, self.axis, self.keepdims = a, axis, keepdims
        self.out = np.asarray(a.max(axis=axis, keepdims=True))
        return self.out if keepdims else np.asarray(a.max(axis=axis, keepdims=False))

    def backward(self, grad_output):
        grad = _expand(grad_output, self.a.shape, self.axis, self.keepdims)
        is_max = self.a == self.out
        count = is_max.sum(axis=self.axis, keepdims=True)
        return (grad * is_max / count,)
