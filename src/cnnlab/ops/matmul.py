"""Matrix products: the primitives that reach BLAS outside convolution (and attention)."""

import numpy as np

from cnnlab.blas import BLAS
from cnnlab.ops.function import Function
from cnnlab.threads import parallel_for


def product(a, b, out=None):
    """a @ b; for two matrices split over cnnlab's threads by the longer side of the result
    (rows of a, or columns of b), each share one BLAS call on one thread; for two stacks of
    matrices of the same batch shape (attention's (N, heads, T, d) @ (N, heads, d, S)) split
    by the first batch axis, written into `out` where given (any strides: a view into a
    larger array saves attention a copy)."""
    if a.ndim > 2 and a.ndim == b.ndim and a.shape[:-2] == b.shape[:-2]:
        if out is None:
            out = np.empty(a.shape[:-1] + b.shape[-1:], np.result_type(a, b))
        work = a.nbytes + b.nbytes + out.nbytes
        parallel_for(lambda batch: np.matmul(a[batch], b[batch], out=out[batch]), len(a), work)
        return out
    if a.ndim != 2 or b.ndim != 2:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    nbytes = a.nbytes + b.nbytes
    if a.shape[0] >= b.shape[1]:
        parallel_for(lambda rows: np.matmul(a[rows], b, out=out[rows]), a.shape[0], nbytes)
    else:
        parallel_for(lambda cols: np.matmul(a, b[:, cols], out=out[:, cols]), b.shape[1], nbytes)
    return out


def add_product(a, b, out):
    """out += a @ b for matrices a (M, K), b (K, N), out (M, N), split over cnnlab's threads as
    `product`, each share one GEMM that adds into out (BLAS.gemm_accumulate: no temporary)."""
    nbytes = a.nbytes + b.nbytes
    if a.shape[0] >= b.shape[1]:
        parallel_for(lambda rows: BLAS.gemm_accumulate(a[rows], b, out[rows]), a.shape[0], nbytes)
    else:
        parallel_for(lambda cols: BLAS.gemm_accumulate(a, b[:, cols], out[:, cols]),
                     b.shape[1], nbytes)


class MatMul(Function):
    """out = a @ b with NumPy's matmul semantics (1-D operands, batched broadcasting).

    Gradients come back in the broadcast batch shape; the tensor sums them to each input's.
    """

    def forward(self, a, b):
        self.a, self.b = a, b
        return product(a, b)

    def backward(self, grad_output):
        a, b = self.a, self.b
        # Promote 1-D operands to matrices so one pair of formulas serves every case.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        grad = grad_output
        if a.ndim == 1:
            grad = np.expand_dims(grad, -2)
        if b.ndim == 1:
            grad = np.expand_dims(grad, -1)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = product(grad, np.swapaxes(b2, -1, -2))
            if a.ndim == 1:
                grad_a = grad_a.reshape(grad_a.shape[:-2] + (a.shape[0],))
        if self.needs_input_grad[1]:
            grad_b = product(np.swapaxes(a2, -1, -2), grad)
            if b.ndim == 1:
                grad_b = grad_b.reshape(grad_b.shape[:-2] + (b.shape[0],))
        return grad_a, grad_b



class Linear(Function):
    """out = x @ weight^T + bias: x (M, in), weight (out, in), bias (out,) or omitted -> (M, out).

    One primitive rather than MatMul and Add: the output starts as the bias, broadcast, and the
    product is added to it by the GEMM itself (no second pass over the (M, out) array: the
    ViT's (6400, 64) @ (64, 192) one thread 1.32 -> 1.11 ms), and the bias's gradient is a
    matrix-vector product, ones @ g, four times faster than NumPy's column sum.
    grad_x = g @ weight, grad_weight = g^T @ x.
    """

    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        if bias is None:
            return product(x, weight.T)
        out = np.empty((x.shape[0], weight.shape[0]), np.result_type(x, weight))
        out[...] = bias
        add_product(x, weight.T, out)
        return out

    def backward(self, grad_output):
        needs = self.needs_input_grad
        grads = [None] * len(needs)
        if needs[0]:
            grads[0] = product(grad_output, self.weight)
        if needs[1]:
            grads[1] = product(grad_output.T, self.x)
        if len(needs) > 2 and needs[2]:
            grads[2] = np.ones(len(grad_output), grad_output.dtype) @ grad_output
        return tuple(grads)
