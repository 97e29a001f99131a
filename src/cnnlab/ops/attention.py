"""Multi-head self-attention on packed projections: the heads' two batched matrix products and
the softmax between them, as one primitive.

qkv: (N, L, 3E), each token's query, key and value projections side by side (what one
in-projection product gives, as torch's in_proj_weight), E = h * d for h heads of d features;
mask: an additive array broadcasting to (N, h, L, L), or None; keep: dropout's (N, h, L, L)
factors (0 or 1 / (1 - p)), or None -> out: (N, L, E), the heads' outputs side by side.

    Q, K, V = the (N, h, L, d) views of qkv;  S = (Q / sqrt(d)) K^T + mask;  P = softmax(S)
    out = (P * keep) V, heads side by side

    backward, from G = d loss / d out viewed as (N, h, L, d):
    dV = (P * keep)^T G;  dP = (G V^T) * keep;  dS = P * (dP - rowsum(dP * P))
    dQ = dS K / sqrt(d);  dK = dS^T (Q / sqrt(d))

Composed from slices of qkv, each of the three slices' backward would fill a zeroed gradient
the size of qkv and the three would be added; fused, dQ, dK and dV go straight into theirs.
"""

import math

import numpy as np

from cnnlab.ops.function import Function
from cnnlab.ops.loss import softmax_rows, softmax_rows_backward
from cnnlab.ops.matmul import product


class SelfAttention(Function):
    """out = the h heads' softmax(Q K^T / sqrt(d) + mask) V, from packed projections qkv."""

    def forward(self, qkv, *, heads, mask=None, keep=None):
        count, length, width = qkv.shape
        head_dim = width // (3 * heads)
        parts = qkv.reshape(count, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        query = parts[0] * (1 / math.sqrt(head_dim))  # (N, h, L, d), scaled as torch does
        key, value = parts[1], parts[2]
        scores = product(query, key.swapaxes(-1, -2))  # (N, h, L, L)
        if mask is not None:
            scores += mask
        rows = scores.reshape(-1, length)
        weights = softmax_rows(rows, out=rows).reshape(scores.shape)  # in place
        dropped = weights if keep is None else weights * keep
        self.saved = (query, key, value, weights, dropped, keep, qkv.shape)
        out = np.empty((count, length, heads, head_dim), qkv.dtype)
        product(dropped, value, out=out.transpose(0, 2, 1, 3))  # (N, h, L, d) into (N, L, h, d)
        return out.reshape(count, length, width // 3)

    def backward(self, grad_output):
        query, key, value, weights, dropped, keep, shape = self.saved
        count, heads, length, head_dim = query.shape
        upstream = grad_output.reshape(count, length, heads, head_dim).transpose(0, 2, 1, 3)
        grad = np.empty((count, length, 3, heads, head_dim), grad_output.dtype)
        grad_parts = grad.transpose(2, 0, 3, 1, 4)  # (3, N, h, L, d) views, as qkv's parts
        product(dropped.swapaxes(-1, -2), upstream, out=grad_parts[2])
        grad_weights = product(upstream, value.swapaxes(-1, -2))
        if keep is not None:
            grad_weights *= keep
        rows = grad_weights.reshape(-1, length)
        grad_scores = softmax_rows_backward(weights.reshape(-1, length), rows, out=rows)
        grad_scores = grad_scores.reshape(weights.shape)
        product(grad_scores, key, out=grad_parts[0])
        grad_parts[0] *= 1 / math.sqrt(head_dim)
        product(grad_scores.swapaxes(-1, -2), query, out=grad_parts[1])
        return (grad.reshape(shape),)
