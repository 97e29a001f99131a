"""Normalisation: batch norm (per channel, over the batch) and layer norm (per example).

Batch normalisation: normalise each channel (axis 1), then scale and shift it.
x: (N, C) or (N, C, *spatial); weight, bias: (C,) or omitted -> out of x's shape.

    x_hat = (x - mean) * inv_std,  inv_std = 1 / sqrt(var + eps)
    out = x_hat * weight + bias

mean and inv_std arrive as options shaped (1, C, 1, ...): the caller (F.batch_norm) takes them
from the batch in training and from the running statistics in eval. Fused because composing
it from sum, sub, mul and pow costs about three times the memory passes, and the
batch-statistics backward has a closed form (means over every axis but 1):

    grad_x = weight * inv_std * (g - mean(g) - x_hat * mean(g * x_hat))   (batch statistics)
    grad_x = weight * inv_std * g                                         (running statistics)
    grad_weight = sum(g * x_hat),  grad_bias = sum(g)

Layer normalisation is the same formula with the statistics of each example's last axes (the
D = prod(normalized_shape) features of one token) and the weight and bias over those axes.
"""

import numpy as np

from cnnlab.ops.function import Function
from cnnlab.threads import in_blocks, parallel_for

BLOCK = 65536  # values per block of layer norm's rows: a block and its results stay in cache


class BatchNorm(Function):
    """out = (x - mean) * inv_std * weight + bias, per channel on axis 1."""

    def forward(self, x, weight=None, bias=None, *, mean, inv_std, batch_stats):
        self.axes = (0,) + tuple(range(2, x.ndim))
        self.channel_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        self.inv_std, self.batch_stats, self.weight = inv_std, batch_stats, weight
        # Elementwise, split over the images (threads); x's memory order (NHWC after a conv).
        x_hat = self.x_hat = np.empty_like(x, dtype=np.result_type(x, mean, inv_std))
        out = x_hat if weight is None else np.empty_like(x_hat)
        if weight is not None:
            scale, shift = weight.reshape(self.channel_shape), bias.reshape(self.channel_shape)

        def normalise_share(images):
            np.subtract(x[images], mean, out=x_hat[images])
            x_hat[images] *= inv_std
            if weight is not None:
                np.multiply(x_hat[images], scale, out=out[images])
                out[images] += shift

        parallel_for(normalise_share, len(x), x.nbytes)
        return out

    def backward(self, grad_output):
        needs, x_hat = self.needs_input_grad, self.x_hat
        grads = [None] * len(needs)
        grad_x_hat_sum = (grad_output * x_hat).sum(axis=self.axes, keepdims=True)
        grad_sum = grad_output.sum(axis=self.axes, keepdims=True)
        if needs[0]:
            scale = self.inv_std
            if self.weight is not None:
                scale = scale * self.weight.reshape(self.channel_shape)
            if self.batch_stats:  # in place, one array: the memory passes are the cost
                count = grad_output.size // grad_output.shape[1]
                slope, offset = -grad_x_hat_sum / count, grad_sum / count
                grad_x = np.empty_like(x_hat, dtype=np.result_type(x_hat, slope))

                def grad_share(images):
                    part = grad_x[images]
                    np.multiply(x_hat[images], slope, out=part)
                    part += grad_output[images]
                    part -= offset
                    part *= scale

                parallel_for(grad_share, len(x_hat), x_hat.nbytes)
            else:
                grad_x = grad_output * scale
            grads[0] = grad_x.astype(grad_output.dtype, copy=False)
        if len(needs) == 3:
            grads[1] = grad_x_hat_sum.reshape(-1) if needs[1] else None
            grads[2] = grad_sum.reshape(-1) if needs[2] else None
        return tuple(grads)


class LayerNorm(Function):
    """out = (x - mean) * inv_std * weight + bias, statistics over the last `dims` axes.

    x: (*, *normalized_shape); weight, bias: normalized_shape or omitted -> x's shape. With
    x viewed as (M, D) rows and g' = g * weight:

        grad_x = inv_std * (g' - mean(g') - x_hat * mean(g' * x_hat))   (means along a row)
        grad_weight = sum over rows of g * x_hat,  grad_bias = sum over rows of g

    Sums along a row of D = 64 values are matrix-vector products: NumPy's own reduction
    along a short last axis is ten times slower.
    """

    def forward(self, x, weight=None, bias=None, *, dims, eps):
        self.input_shape, self.weight = x.shape, weight
        features = int(np.prod(x.shape[x.ndim - dims :]))
        rows = x.reshape(-1, features)
        inv_std = np.empty((len(rows), 1), rows.dtype)
        out = np.empty_like(rows)
        # x_hat is kept for backward; without one (inference) it is made in out's memory
        x_hat = np.empty_like(rows) if weight is not None and any(self.needs_input_grad) else out
        scale = None if weight is None else weight.reshape(-1)

        def normalise(block):  # rows are independent: in blocks that stay in cache
            centred = x_hat[block]
            np.subtract(rows[block], _row_means(rows[block]), out=centred)
            variance = np.einsum("ij,ij->i", centred, centred)[:, None]
            variance /= features
            variance += eps
            np.sqrt(variance, out=variance)
            np.divide(1, variance, out=inv_std[block])
            centred *= inv_std[block]
            if scale is not None:
                np.multiply(centred, scale, out=out[block])
                if bias is not None:
                    out[block] += bias.reshape(-1)

        in_blocks(normalise, len(rows), max(1, BLOCK // features))
        self.x_hat, self.inv_std = x_hat, inv_std
        return out.reshape(x.shape)

    def backward(self, grad_output):
        needs, x_hat, weight = self.needs_input_grad, self.x_hat, self.weight
        features = x_hat.shape[1]
        rows = grad_output.reshape(-1, features)
        grads = [None] * len(needs)
        if needs[0]:
            grad_x = np.empty_like(x_hat, dtype=rows.dtype)

            def grad_block(block):
                share = grad_x[block]
                scaled = rows[block]
                if weight is not None:
                    scaled = np.multiply(scaled, weight.reshape(-1), out=share)
                slope = np.einsum("ij,ij->i", scaled, x_hat[block])[:, None] / features
                np.subtract(scaled, _row_means(scaled), out=share)
                share -= x_hat[block] * slope
                share *= self.inv_std[block]

            in_blocks(grad_block, len(rows), max(1, BLOCK // features))
            grads[0] = grad_x.reshape(self.input_shape)
        if len(needs) > 1 and needs[1]:
            grads[1] = np.einsum("ij,ij->j", rows, x_hat).reshape(weight.shape)
        if len(needs) > 2 and needs[2]:
            grads[2] = (np.ones(len(rows), rows.dtype) @ rows).reshape(weight.shape)
        return tuple(grads)


def _row_means(rows):
    """(M, D) -> (M, 1): the mean of each row, as one matrix-vector product."""
    return (rows @ np.full(rows.shape[1], 1 / rows.shape[1], rows.dtype))[:, None]
