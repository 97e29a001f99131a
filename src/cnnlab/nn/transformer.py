"""The transformer's layers, with PyTorch's names, arguments, state-dict keys and numbers.

LayerNorm and GELU, multi-head scaled dot-product attention, the encoder layer that stacks
them with a feed-forward block, and the two small modules a vision transformer adds around
the encoder: the tokens made from a patch embedding (class token, positions) and the class
token picked out for the head.

Shapes: N examples, L query tokens, S key tokens, E (= D, d_model) features per token, h heads
of d = E / h features. batch_first=False (PyTorch's default) means (L, N, E) sequences.
"""

import math

import numpy as np

from cnnlab.nn import functional as F
from cnnlab.nn import init
from cnnlab.nn.layers import Dropout, Linear, _positive_int, _probability
from cnnlab.nn.module import Module
from cnnlab.nn.parameter import Parameter
from cnnlab.tensor import Tensor, cat


class LayerNorm(Module):
    """Normalise each example over its last axes (a token's features), then scale and shift:
    y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased variance.

    Args:
        normalized_shape: int D, or the shape of the trailing axes to normalise over.
        eps: added to the variance. Default: 1e-5.
        elementwise_affine: learn weight and bias. Default: True.
        bias: learn the bias (when elementwise_affine). Default: True.

    Shape:
        Input: (*, *normalized_shape). Output: as input.

    Attributes:
        weight: normalized_shape, ones. bias: normalized_shape, zeros.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape = tuple(
            _positive_int("LayerNorm", "normalized_shape", size) for size in shape
        )
        if not eps > 0:
            raise ValueError(f"LayerNorm: eps must be positive, got {eps!r}")
        self.eps, self.elementwise_affine = float(eps), bool(elementwise_affine)
        shape, affine = self.normalized_shape, self.elementwise_affine
        self.register_parameter("weight", Parameter(np.ones(shape, np.float32)) if affine else None)
        self.register_parameter(
            "bias", Parameter(np.zeros(shape, np.float32)) if affine and bias else None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        text = f"{self.normalized_shape}"
        text += f", eps={self.eps}" if self.eps != 1e-5 else ""
        text += ", elementwise_affine=False" if not self.elementwise_affine else ""
        return text + (", bias=False" if self.elementwise_affine and self.bias is None else "")


class GELU(Module):
    """x * Phi(x), Phi the standard normal CDF (exact, with erf). Shape: any; output as input.

    Args:
        approximate: "none" only. Default: "none".
    """

    def __init__(self, approximate="none"):
        super().__init__()
        F.gelu(Tensor(np.zeros(1)), approximate)  # validate now
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)


def _additive_mask(mask, dtype, name):
    """A boolean mask (True = may not attend) as 0 / -inf, or a float one as it is."""
    mask = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if mask.dtype == np.bool_:
        return np.where(mask, -np.inf, 0).astype(dtype)
    if mask.dtype.kind != "f":
        raise ValueError(f"MultiheadAttention: {name} must be boolean or floating, "
                         f"got dtype {mask.dtype}")
    return mask.astype(dtype, copy=False)


class MultiheadAttention(Module):
    """Multi-head scaled dot-product attention, as torch.nn.MultiheadAttention.

    Each head i attends with softmax(Q_i K_i^T / sqrt(d) + mask) V_i, where Q = query W_q^T +
    b_q, K = key W_k^T + b_k, V = value W_v^T + b_v (W_q, W_k, W_v: the three (E, E) blocks of
    in_proj_weight); the heads' outputs, side by side, go through out_proj. Each projection
    is one matrix product over every token, the heads' products are batched (N, h, L, S).
    Self-attention without weights (query is key is value, need_weights=False: what
    TransformerEncoderLayer asks for) takes one in-projection product and one fused primitive
    (`F.self_attention`), as torch takes its fast path there.

    Args:
        embed_dim: E, features per token.
        num_heads: h; E must be divisible by h.
        dropout: dropout on the attention weights in training. Default: 0.0.
        bias: learn in_proj_bias and out_proj.bias. Default: True.
        batch_first: inputs and output as (N, L, E) instead of (L, N, E). Default: False.
        generator: numpy.random.Generator for the initial values. Default: cnnlab's.

    Shape:
        query: (L, N, E), or (N, L, E) with batch_first, or (L, E) unbatched; key, value:
        (S, N, E), (N, S, E) or (S, E). Output: as query; weights: (N, L, S) averaged over the
        heads, (N, h, L, S) with average_attn_weights=False ((L, S) and (h, L, S) unbatched).

    Attributes:
        in_proj_weight: (3E, E), xavier_uniform_. in_proj_bias: (3E,), zeros.
        out_proj: Linear(E, E), PyTorch's default init, its bias zeros.
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=False,
                 generator=None):
        super().__init__()
        self.embed_dim = _positive_int("MultiheadAttention", "embed_dim", embed_dim)
        self.num_heads = _positive_int("MultiheadAttention", "num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by "
                             f"num_heads {num_heads}")
        self.head_dim = embed_dim // num_heads
        self.dropout = _probability("MultiheadAttention", "dropout", dropout)
        self.batch_first = bool(batch_first)
        self.in_proj_weight = Parameter(np.empty((3 * embed_dim, embed_dim), np.float32))
        init.xavier_uniform_(self.in_proj_weight, generator=generator)
        self.register_parameter(
            "in_proj_bias", Parameter(np.zeros(3 * embed_dim, np.float32)) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, generator=generator)
        if bias:
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True):
        """Returns (output, weights); weights None when need_weights is False."""
        packed = query is key and key is value and not need_weights  # one fused primitive
        query, key, value = (x if isinstance(x, Tensor) else Tensor(x) for x in (query, key, value))
        batched = query.ndim == 3
        self._check_inputs(query, key, value, batched)
        if not batched:  # one sequence: a batch of one, batch first
            query, key, value = (x.reshape((1,) + x.shape) for x in (query, key, value))
        elif not self.batch_first:
            query, key, value = (x.permute(1, 0, 2) for x in (query, key, value))
        (count, length, _), source = query.shape, key.shape[1]
        mask = self._mask(key_padding_mask, attn_mask, count, length, source, batched,
                          query.dtype)
        dropout = self.dropout if self.training else 0.0
        if packed:
            qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
            out = F.self_attention(qkv, self.num_heads, mask, dropout)
            return self._output_layout(self.out_proj(out), batched), None
        out, weights = self._attend(query, key, value, mask, dropout)
        out = self._output_layout(self.out_proj(out), batched)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(axis=1)
        return out, (weights if batched else weights.reshape(weights.shape[1:]))

    def _attend(self, query, key, value, mask, dropout):
        """(N, L, E) queries, (N, S, E) keys and values -> the heads' outputs side by side
        (N, L, E) and the weights (N, h, L, S), composed from differentiable ops."""
        heads, head_dim, embed = self.num_heads, self.head_dim, self.embed_dim
        (count, length, _), source = query.shape, key.shape[1]
        weight, bias = self.in_proj_weight, self.in_proj_bias
        projected = [
            F.linear(x, weight[i * embed : (i + 1) * embed],
                     None if bias is None else bias[i * embed : (i + 1) * embed])
            for i, x in enumerate((query, key, value))
        ]
        q = projected[0].reshape(count, length, heads, head_dim).permute(0, 2, 1, 3)
        k = projected[1].reshape(count, source, heads, head_dim).permute(0, 2, 3, 1)
        v = projected[2].reshape(count, source, heads, head_dim).permute(0, 2, 1, 3)
        scores = (q * (1 / math.sqrt(head_dim))) @ k  # (N, h, L, S)
        if mask is not None:
            scores = scores + Tensor(mask)
        weights = F.dropout(F.softmax(scores, -1), dropout)
        return (weights @ v).permute(0, 2, 1, 3).reshape(count, length, embed), weights

    def _output_layout(self, out, batched):
        """(N, L, E) -> the layout of the query: (L, E), (N, L, E) or (L, N, E)."""
        if not batched:
            return out.reshape(out.shape[1:])
        return out if self.batch_first else out.permute(1, 0, 2)

    def _check_inputs(self, query, key, value, batched):
        ndim = 3 if batched else 2
        if query.ndim not in (2, 3) or key.ndim != ndim or value.ndim != ndim:
            raise ValueError(
                f"MultiheadAttention: expected query, key and value all 3-D (batched) or all "
                f"2-D, got shapes {query.shape}, {key.shape}, {value.shape}"
            )
        if query.shape[-1] != self.embed_dim or key.shape[-1] != self.embed_dim or (
                value.shape[-1] != self.embed_dim):
            raise ValueError(
                f"MultiheadAttention: expected {self.embed_dim} features on the last axis, got "
                f"shapes {query.shape}, {key.shape}, {value.shape}"
            )
        batch_axis = 0 if self.batch_first else 1
        if key.shape != value.shape or (
                batched and query.shape[batch_axis] != key.shape[batch_axis]):
            raise ValueError(
                f"MultiheadAttention: key and value must have one shape and the batch size of "
                f"query, got shapes {query.shape}, {key.shape}, {value.shape}"
            )

    def _mask(self, key_padding_mask, attn_mask, count, length, source, batched, dtype):
        """The additive mask broadcast against the scores (N, h, L, S), or None."""
        mask = None
        if key_padding_mask is not None:
            padding = _additive_mask(key_padding_mask, dtype, "key_padding_mask")
            if padding.shape != ((count, source) if batched else (source,)):
                raise ValueError(f"MultiheadAttention: expected key_padding_mask of shape "
                                 f"(N, S) = ({count}, {source}), got {padding.shape}")
            mask = padding.reshape(count, 1, 1, source)
        if attn_mask is not None:
            attention = _additive_mask(attn_mask, dtype, "attn_mask")
            if attention.shape == (count * self.num_heads, length, source):
                attention = attention.reshape(count, self.num_heads, length, source)
            elif attention.shape != (length, source):
                raise ValueError(
                    f"MultiheadAttention: expected attn_mask of shape (L, S) = ({length}, "
                    f"{source}) or (N * num_heads, L, S), got {attention.shape}")
            mask = attention if mask is None else mask + attention
        return mask

    def extra_repr(self):
        text = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        text += f", dropout={self.dropout}" if self.dropout else ""
        text += ", bias=False" if self.in_proj_bias is None else ""
        return text + (", batch_first=True" if self.batch_first else "")


class TransformerEncoderLayer(Module):
    """Self-attention then a feed-forward block, each with a residual connection and a
    LayerNorm, as torch.nn.TransformerEncoderLayer:

        post-norm (norm_first=False): x = norm1(x + sa(x)); x = norm2(x + ff(x))
        pre-norm (norm_first=True):   x = x + sa(norm1(x)); x = x + ff(norm2(x))

    sa(x) = dropout1(self_attn(x, x, x)), ff(x) = dropout2(linear2(dropout(act(linear1(x))))).

    Args:
        d_model: E, features per token.
        nhead: heads of the attention (E divisible by it).
        dim_feedforward: width of the feed-forward block. Default: 2048.
        dropout: probability of every dropout, attention weights included. Default: 0.1.
        activation: "relu" or "gelu". Default: "relu".
        layer_norm_eps: Default: 1e-5.
        batch_first: sequences as (N, L, E) instead of (L, N, E). Default: False.
        norm_first: pre-norm instead of post-norm. Default: False.
        bias: learn the biases of the linear layers and LayerNorms. Default: True.
        generator: numpy.random.Generator for the initial values. Default: cnnlab's.

    Shape:
        src: (L, N, E), (N, L, E) with batch_first, or (L, E). Output: as src.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 generator=None):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu' or 'gelu', "
                             f"got {activation!r}")
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, bias, batch_first,
                                            generator)
        self.linear1 = Linear(d_model, dim_feedforward, bias, generator)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias, generator)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation

    def forward(self, src, src_mask=None, src_key_padding_mask=None):
        x = src if isinstance(src, Tensor) else Tensor(src)
        if self.norm_first:
            x = x + self._attention_block(self.norm1(x), src_mask, src_key_padding_mask)
            return x + self._feed_forward_block(self.norm2(x))
        x = self.norm1(x + self._attention_block(x, src_mask, src_key_padding_mask))
        return self.norm2(x + self._feed_forward_block(x))

    def _attention_block(self, x, attn_mask, key_padding_mask):
        out, _ = self.self_attn(x, x, x, key_padding_mask, need_weights=False,
                                attn_mask=attn_mask)
        return self.dropout1(out)

    def _feed_forward_block(self, x):
        hidden = self.linear1(x)
        hidden = F.gelu(hidden) if self.activation == "gelu" else F.relu(hidden)
        return self.dropout2(self.linear2(self.dropout(hidden)))

    def extra_repr(self):
        shown = [f"activation={self.activation!r}"] if self.activation != "relu" else []
        return ", ".join(shown + (["norm_first=True"] if self.norm_first else []))


class PatchTokens(Module):
    """A vision transformer's tokens from its patch embedding: the (H', W') grid of patch
    vectors flattened row by row into H'W' tokens, a learned class token put in front, a
    learned position embedding added (as torchvision's VisionTransformer).

    Args:
        num_patches: P = H' * W'.
        embed_dim: D, features per token.
        generator: numpy.random.Generator for the positions. Default: cnnlab's.

    Shape:
        Input: (N, D, H', W'), a strided convolution's output. Output: (N, 1 + P, D).

    Attributes:
        class_token: (1, 1, D), zeros. pos_embedding: (1, 1 + P, D), from N(0, 0.02^2).
    """

    def __init__(self, num_patches, embed_dim, generator=None):
        super().__init__()
        self.num_patches = _positive_int("PatchTokens", "num_patches", num_patches)
        self.embed_dim = _positive_int("PatchTokens", "embed_dim", embed_dim)
        self.class_token = Parameter(np.zeros((1, 1, embed_dim), np.float32))
        self.pos_embedding = Parameter(np.empty((1, 1 + num_patches, embed_dim), np.float32))
        init.normal_(self.pos_embedding, std=0.02, generator=generator)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim != 4 or x.shape[1] != self.embed_dim or (
                x.shape[2] * x.shape[3] != self.num_patches):
            raise ValueError(
                f"PatchTokens: expected input of shape (N, D, H', W') with D = "
                f"{self.embed_dim} and H' * W' = {self.num_patches}, got {x.shape}"
            )
        patches = x.flatten(2).permute(0, 2, 1)  # (N, P, D)
        class_tokens = self.class_token.expand(len(x), -1, -1)
        return cat([class_tokens, patches], dim=1) + self.pos_embedding

    def extra_repr(self):
        return f"num_patches={self.num_patches}, embed_dim={self.embed_dim}"


class SelectToken(Module):
    """One token of every sequence: the class token (index 0) for a ViT's head.

    Args:
        index: the token's position. Default: 0.

    Shape:
        Input: (N, T, D). Output: (N, D).
    """

    def __init__(self, index=0):
        super().__init__()
        self.index = int(index)

    def forward(self, x):
        if x.ndim != 3:
            raise ValueError(f"SelectToken: expected input of shape (N, T, D), got {x.shape}")
        return x[:, self.index]

    def extra_repr(self):
        return f"index={self.index}" if self.index else ""
