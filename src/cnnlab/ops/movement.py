"""Primitives that move data without arithmetic: reshape, permute, indexing, concatenation,
broadcasting."""

import numpy as np

from cnnlab.ops.function import Function


class Reshape(Function):
    """out = a viewed (or copied) with a new shape of the same size."""

    def forward(self, a, *, shape):
        self.input_shape = a.shape
        return a.reshape(shape)

    def backward(self, grad_output):
        return (grad_output.reshape(self.input_shape),)


class Permute(Function):
    """out = a with its axes reordered by `dims` (a view)."""

    def forward(self, a, *, dims):
        self.inverse = tuple(np.argsort(dims))
        return a.transpose(dims)

    def backward(self, grad_output):
        return (grad_output.transpose(self.inverse),)


class GetItem(Function):
    """out = a[index], for basic slicing and integer-array / boolean indexing."""

    def forward(self, a, *, index):
        self.input_shape, self.dtype, self.index = a.shape, a.dtype, index
        return np.asarray(a[index])

    def backward(self, grad_output):
        grad = np.zeros(self.input_shape, dtype=grad_output.dtype)
        if _is_basic(self.index):
            grad[self.index] = grad_output
        else:  # repeated integer indices must add up, so the scatter has to accumulate
            np.add.at(grad, self.index, grad_output)
        return (grad,)


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(item is None or item is Ellipsis or isinstance(item, int | slice) for item in items)


class Concatenate(Function):
    """out = the inputs joined along `dim` (every other axis equal); backward slices it apart."""

    def forward(self, *arrays, dim):
        self.dim, self.bounds = dim, np.cumsum([array.shape[dim] for array in arrays])[:-1]
        return np.concatenate(arrays, axis=dim)

    def backward(self, grad_output):
        parts = np.split(grad_output, self.bounds, axis=self.dim)
        return tuple(part if need else None
                     for part, need in zip(parts, self.needs_input_grad, strict=True))


class Expand(Function):
    """out = a broadcast to `shape` (a read-only view, as torch.expand: no copy).

    Backward hands back the gradient of the broadcast shape; the tensor sums it over the
    broadcast axes, as for any broadcasting op (a class token expanded over the batch gets the
    sum of the batch's gradients).
    """

    def forward(self, a, *, shape):
        return np.broadcast_to(a, shape)

    def backward(self, grad_output):
        return (grad_output,)
