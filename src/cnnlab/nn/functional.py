"""Functional ops on tensors (imported as F), PyTorch's names, argument order and shapes.

Layout is NCHW throughout. Wherever PyTorch accepts an int or an (h, w) pair, so does this
module. Each function validates its arguments, then makes one primitive from `cnnlab.ops` (or
composes a few); layers in `cnnlab.nn` are thin wrappers around these.
"""

import numpy as np

from cnnlab import rng as _rng
from cnnlab.ops import attention, conv, elementwise, loss, matmul, norm, pool
from cnnlab.shapes import pair
from cnnlab.tensor import Tensor


def _as_tensor(value):
    return value if isinstance(value, Tensor) else Tensor(value)


def linear(x, weight, bias=None):
    """Affine map y = x W^T + b, the linear classifier's scores = Wx + b for a batch.

    x: (N, in_features) or (*, in_features); weight: (out_features, in_features);
    bias: (out_features,) or None -> (N, out_features) or (*, out_features).
    """
    x, weight = _as_tensor(x), _as_tensor(weight)
    if weight.ndim != 2:
        raise ValueError(
            f"linear: expected weight of shape (out_features, in_features), got {weight.shape}"
        )
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: input of shape {x.shape} has {x.shape[-1] if x.ndim else 0} features on its"
            f" last axis, but weight {weight.shape} expects in_features = {weight.shape[1]}"
        )
    if bias is not None:
        bias = _as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(
                f"linear: expected bias of shape ({weight.shape[0]},), got {bias.shape}"
            )
    if x.ndim != 2:  # one matrix product over every row (a token's features), not one per batch
        rows = linear(x.reshape(-1, x.shape[-1]), weight, bias)
        return rows.reshape(x.shape[:-1] + (weight.shape[0],))
    return Tensor._make(matmul.Linear, x, weight, *([] if bias is None else [bias]))


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation of a batch of images with C_out filters.

    x: (N, C_in, H, W); weight: (C_out, C_in, KH, KW); bias: (C_out,) or None
    -> (N, C_out, H_out, W_out), with H_out = floor((H - KH + 2 * padding) / stride) + 1
    (and likewise W_out). stride and padding: int or (h, w) pair.
    """
    inputs = (x, weight) if bias is None else (x, weight, bias)
    stride, padding = pair(stride, "conv2d: stride"), pair(padding, "conv2d: padding")
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(
            f"conv2d: stride must be >= 1 and padding >= 0, got stride={stride}, padding={padding}"
        )
    return Tensor._make(conv.Conv2d, *inputs, stride=stride, padding=padding)


def _pool_args(op, kernel_size, stride, padding):
    kernel = pair(kernel_size, f"{op}: kernel_size")
    stride = kernel if stride is None else pair(stride, f"{op}: stride")
    padding = pair(padding, f"{op}: padding")
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ValueError(
            f"{op}: kernel_size and stride must be >= 1 and padding >= 0, got "
            f"kernel_size={kernel}, stride={stride}, padding={padding}"
        )
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding should be at most half of kernel size, got padding={padding}, "
            f"kernel_size={kernel}"
        )
    return {"kernel_size": kernel, "stride": stride, "padding": padding}


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each KH x KW window. x: (N, C, H, W) -> (N, C, H_out, W_out).

    stride defaults to kernel_size; padding (at most half the kernel) pads with -infinity.
    """
    return Tensor._make(pool.MaxPool2d, x, **_pool_args("max_pool2d", kernel_size, stride, padding))


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each KH x KW window, padded zeros counted (count_include_pad=True).

    x: (N, C, H, W) -> (N, C, H_out, W_out); stride defaults to kernel_size.
    """
    return Tensor._make(pool.AvgPool2d, x, **_pool_args("avg_pool2d", kernel_size, stride, padding))


def relu(x):
    """max(x, 0) elementwise."""
    return Tensor._make(elementwise.ReLU, x)


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return Tensor._make(elementwise.LeakyReLU, x, negative_slope=float(negative_slope))


def sigmoid(x):
    return Tensor._make(elementwise.Sigmoid, x)


def tanh(x):
    return Tensor._make(elementwise.Tanh, x)


def _check_dim(op, x, dim):
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"{op}: dim {dim} out of range for input of shape {x.shape}")


def log_softmax(x, dim):
    """log(softmax(x)) along `dim`, computed stably (max subtracted first)."""
    x = _as_tensor(x)
    _check_dim("log_softmax", x, dim)
    return Tensor._make(loss.LogSoftmax, x, dim=dim)


def softmax(x, dim):
    """exp(x) / sum(exp(x)) along `dim`, computed stably (max subtracted first)."""
    x = _as_tensor(x)
    _check_dim("softmax", x, dim)
    return Tensor._make(loss.Softmax, x, dim=dim)


def gelu(x, approximate="none"):
    """x * Phi(x), Phi the standard normal CDF (the exact, erf-based GELU).

    approximate: "none" only (torch's "tanh" variant is not implemented). Shape: any.
    """
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none', got {approximate!r}")
    return Tensor._make(elementwise.GELU, x)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise each example over its last axes, then scale and shift, as torch.

    x: (*, *normalized_shape); weight, bias: normalized_shape or None -> x's shape.
    y = (x - mean) / sqrt(var + eps) * weight + bias, mean and the biased var over the last
    len(normalized_shape) axes (a token's D features).
    """
    x = _as_tensor(x)
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
        normalized_shape)
    dims = len(normalized_shape)
    if dims == 0 or x.shape[x.ndim - dims :] != normalized_shape or x.ndim < dims:
        raise ValueError(
            f"layer_norm: expected input of shape (*, {', '.join(map(str, normalized_shape))}), "
            f"got {x.shape}"
        )
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and tuple(value.shape) != normalized_shape:
            raise ValueError(
                f"layer_norm: expected {name} of shape {normalized_shape}, got {value.shape}"
            )
    if weight is None and bias is not None:
        weight = Tensor(np.ones(normalized_shape, dtype=x.dtype))
    inputs = [x] + [value for value in (weight, bias) if value is not None]
    return Tensor._make(norm.LayerNorm, *inputs, dims=dims, eps=float(eps))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (axis 1) to zero mean and unit variance, then scale and shift.

    x: (N, C) or (N, C, *spatial); running_mean, running_var: (C,) arrays or None;
    weight, bias: (C,) or None -> x's shape. In training (or without running statistics) the
    batch's mean and biased variance over every axis but 1 are used, and the running
    statistics, when given, are updated in place: running = (1 - momentum) * running +
    momentum * batch, with the unbiased variance, as torch. Otherwise the running ones are.
    """
    x = _as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input of shape (N, C, ...), got {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    channel_shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    use_batch = training or running_mean is None
    if use_batch:
        count = x.size // x.shape[1]
        if count <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, "
                f"got input of shape {x.shape}"
            )
        mean = x.data.mean(axis=axes, keepdims=True)
        squares = x.data - mean
        variance = np.square(squares, out=squares).mean(axis=axes, keepdims=True)
        if training and running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean.reshape(-1)).astype(running_mean.dtype)
            unbiased = variance.reshape(-1) * (count / (count - 1))
            running_var *= 1 - momentum
            running_var += (momentum * unbiased).astype(running_var.dtype)
    else:
        mean = running_mean.reshape(channel_shape).astype(x.dtype)
        variance = running_var.reshape(channel_shape).astype(x.dtype)
    inv_std = (1 / np.sqrt(variance + eps)).astype(x.dtype, copy=False)
    inputs = (x,) if weight is None else (x, weight, bias)
    return Tensor._make(
        norm.BatchNorm, *inputs, mean=mean.astype(x.dtype, copy=False), inv_std=inv_std,
        batch_stats=use_batch,
    )


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each element with probability p and scale the rest by 1 / (1 - p) in training.

    The identity when not training or p == 0. generator: numpy.random.Generator
    (default: cnnlab's, seeded by cnnlab.manual_seed).
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    x = _as_tensor(x)
    if not training or p == 0:
        return x
    return x * Tensor(_keep_factors(x.shape, p, x.dtype, generator))


def _keep_factors(shape, p, dtype, generator=None):
    """Dropout's factors: 0 with probability p, else 1 / (1 - p); all 0 when p == 1."""
    if p == 1:
        return np.zeros(shape, dtype=dtype)
    generator = generator if generator is not None else _rng.default_generator()
    keep = generator.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64)
    return (keep >= p).astype(dtype) * np.asarray(1 / (1 - p), dtype=dtype)


def self_attention(qkv, num_heads, mask=None, dropout_p=0.0, generator=None):
    """Multi-head scaled dot-product self-attention on packed projections, fused.

    qkv: (N, L, 3E), each token's query, key and value projections side by side (one
    in-projection product); mask: additive float array broadcasting to (N, num_heads, L, L),
    or None; dropout_p: dropout on the attention weights (pass 0 outside training)
    -> (N, L, E): per head softmax(Q K^T / sqrt(E / num_heads) + mask) V, heads side by side.
    """
    qkv = _as_tensor(qkv)
    if qkv.ndim != 3 or qkv.shape[2] % (3 * num_heads):
        raise ValueError(f"self_attention: expected qkv of shape (N, L, 3 * E) with E divisible "
                         f"by num_heads = {num_heads}, got {qkv.shape}")
    if not 0 <= dropout_p <= 1:
        raise ValueError(f"self_attention: dropout_p must be in [0, 1], got {dropout_p}")
    count, length, _ = qkv.shape
    keep = None
    if dropout_p > 0:
        keep = _keep_factors((count, num_heads, length, length), dropout_p, qkv.dtype, generator)
    return Tensor._make(attention.SelfAttention, qkv, heads=num_heads, mask=mask, keep=keep)


def _check_scores_and_target(op, scores, target, reduction):
    if reduction not in loss.REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {loss.REDUCTIONS}, got {reduction!r}")
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if scores.ndim != 2:
        raise ValueError(f"{op}: expected scores of shape (N, C), got {scores.shape}")
    if target.shape != (scores.shape[0],):
        raise ValueError(
            f"{op}: expected target of shape (N,) = ({scores.shape[0]},), got {target.shape}"
        )
    if target.size and target.dtype.kind not in "iu":
        if not np.array_equal(target, np.round(target)):
            raise ValueError(f"{op}: target must hold integer class ids, got dtype {target.dtype}")
    target = target.astype(np.int64)
    if target.size and (target.min() < 0 or target.max() >= scores.shape[1]):
        bad = target[(target < 0) | (target >= scores.shape[1])][0]
        raise ValueError(
            f"{op}: target class id {bad} is out of range [0, {scores.shape[1]}) "
            f"for scores of shape {scores.shape}"
        )
    return target


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy loss: mean over the batch of -log softmax(logits)[i, target_i].

    logits: (N, C) raw class scores (not probabilities); target: (N,) int class ids in [0, C).
    reduction: "mean" (default), "sum" or "none" (-> (N,)).
    label_smoothing: e in [0, 1]: the target is 1 - e on the true class plus e / C on every
        class, as PyTorch's. Default: 0.0.
    """
    logits = _as_tensor(logits)
    target = _check_scores_and_target("cross_entropy", logits, target, reduction)
    smoothing = check_label_smoothing("cross_entropy", label_smoothing)
    return Tensor._make(loss.SoftmaxCrossEntropy, logits, target=target, reduction=reduction,
                        label_smoothing=smoothing)


def check_label_smoothing(op, value):
    """`value` as a float in [0, 1], else ValueError naming `op`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{op}: label_smoothing must be a number in [0, 1], got {value!r}")
    return float(value)


def multiclass_hinge_loss(scores, target, margin=1.0, reduction="mean"):
    """The multiclass SVM loss: sum over j != y of max(0, s_j - s_y + margin) per example.

    scores: (N, C); target: (N,) int class ids. Not divided by the number of classes.
    reduction: "mean" over the batch (default), "sum" or "none" (-> (N,)).
    """
    scores = _as_tensor(scores)
    target = _check_scores_and_target("multiclass_hinge_loss", scores, target, reduction)
    return Tensor._make(
        loss.MultiClassHinge, scores, target=target, margin=float(margin), reduction=reduction
    )
