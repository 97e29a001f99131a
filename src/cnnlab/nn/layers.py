"""Layers: thin modules around the functional ops, with PyTorch's names, arguments and keys.

Layout is NCHW. Each layer validates its arguments where they enter, holds its parameters
(float32, PyTorch's default initialisation, drawn from `generator` or from cnnlab's default
generator, seeded by `cnnlab.manual_seed`) and calls one functional op in `forward`.
"""

import math

import numpy as np

from cnnlab.nn import functional as F
from cnnlab.nn import init
from cnnlab.nn.module import Module
from cnnlab.nn.parameter import Parameter
from cnnlab.shapes import pair
from cnnlab.tensor import Tensor


def _positive_int(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def _probability(layer, name, value):
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{layer}: {name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _empty(*shape):
    return Parameter(np.empty(shape, dtype=np.float32))


def _default_init(weight, bias, generator):
    """PyTorch's default for Linear and Conv2d: weight kaiming_uniform_(a=sqrt(5)), that is
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        bound = init.default_uniform_bound(weight.shape)
        init.uniform_(bias, -bound, bound, generator=generator)


class Linear(Module):
    """Affine map y = x W^T + b: the linear classifier's scores = Wx + b, one row per example.

    Args:
        in_features: size of each input row.
        out_features: size of each output row (the number of classes for a classifier).
        bias: learn an additive bias. Default: True.
        generator: numpy.random.Generator for the initial values. Default: cnnlab's.

    Shape:
        Input: (N, in_features) or (*, in_features). Output: (N, out_features).

    Attributes:
        weight: (out_features, in_features), initialised from U(-k, k), k = 1/sqrt(in_features).
        bias: (out_features,), initialised from U(-k, k); None when bias=False.
    """

    def __init__(self, in_features, out_features, bias=True, generator=None):
        super().__init__()
        self.in_features = _positive_int("Linear", "in_features", in_features)
        self.out_features = _positive_int("Linear", "out_features", out_features)
        self.weight = _empty(self.out_features, self.in_features)
        self.register_parameter("bias", _empty(self.out_features) if bias else None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        _default_init(self.weight, self.bias, generator)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        text = f"in_features={self.in_features}, out_features={self.out_features}"
        return text + (", bias=False" if self.bias is None else "")


class Conv2d(Module):
    """2-D convolution (cross-correlation) of a batch of images with out_channels filters.

    Args:
        in_channels: C_in, channels of the input image.
        out_channels: C_out, the number of filters (channels of the output).
        kernel_size: int or (KH, KW).
        stride: int or (h, w). Default: 1.
        padding: zeros added on each side, int or (h, w). Default: 0.
        bias: learn one bias per filter. Default: True.
        generator: numpy.random.Generator for the initial values. Default: cnnlab's.

    Shape:
        Input: (N, C_in, H, W). Output: (N, C_out, H_out, W_out), where
        H_out = floor((H - KH + 2 * padding[0]) / stride[0]) + 1 and
        W_out = floor((W - KW + 2 * padding[1]) / stride[1]) + 1.

    Attributes:
        weight: (C_out, C_in, KH, KW), from U(-k, k), k = 1/sqrt(C_in * KH * KW); every filter
            starts from different random values.
        bias: (C_out,), from U(-k, k); None when bias=False.
    """

    def __init__(
        self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
        generator=None,
    ):
        super().__init__()
        self.in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = pair(kernel_size, "Conv2d: kernel_size")
        self.stride = pair(stride, "Conv2d: stride")
        self.padding = pair(padding, "Conv2d: padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d: kernel_size and stride must be >= 1 and padding >= 0, got "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
            )
        self.weight = _empty(self.out_channels, self.in_channels, *self.kernel_size)
        self.register_parameter("bias", _empty(self.out_channels) if bias else None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        _default_init(self.weight, self.bias, generator)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        text += f", stride={self.stride}" if self.stride != (1, 1) else ""
        text += f", padding={self.padding}" if self.padding != (0, 0) else ""
        return text + (", bias=False" if self.bias is None else "")


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        F._pool_args(type(self).__name__, kernel_size, stride, padding)  # validate now

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}"
        text += f", stride={self.stride}" if self.stride is not None else ""
        return text + (f", padding={self.padding}" if self.padding != 0 else "")


class MaxPool2d(_Pool2d):
    """Max over each KH x KW window, per channel.

    Args:
        kernel_size: int or (KH, KW).
        stride: int or (h, w). Default: kernel_size.
        padding: -infinity added on each side, at most half the kernel. Default: 0.

    Shape:
        Input: (N, C, H, W). Output: (N, C, H_out, W_out), where
        H_out = floor((H - KH + 2 * padding[0]) / stride[0]) + 1 (likewise W_out).
    """

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over each KH x KW window, per channel; padded zeros count in the divisor.

    Args:
        kernel_size: int or (KH, KW).
        stride: int or (h, w). Default: kernel_size.
        padding: zeros added on each side, at most half the kernel. Default: 0.

    Shape:
        Input: (N, C, H, W). Output: (N, C, H_out, W_out), where
        H_out = floor((H - KH + 2 * padding[0]) / stride[0]) + 1 (likewise W_out).
    """

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class ReLU(Module):
    """max(x, 0) elementwise. Shape: any; output as input."""

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x. Shape: any; output as input.

    Args:
        negative_slope: Default: 0.01.
    """

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" if self.negative_slope != 0.01 else ""


class Tanh(Module):
    """tanh(x) elementwise. Shape: any; output as input."""

    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise. Shape: any; output as input."""

    def forward(self, x):
        return F.sigmoid(x)


class Identity(Module):
    """Returns its input unchanged."""

    def forward(self, x):
        return x


class Flatten(Module):
    """Merges dimensions start_dim..end_dim into one, as torch.nn.Flatten.

    Args:
        start_dim: Default: 1 (keep the batch dimension).
        end_dim: Default: -1.

    Shape:
        Input: (N, C, H, W). Output: (N, C * H * W) with the defaults.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        defaults = self.start_dim == 1 and self.end_dim == -1
        return "" if defaults else f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """In training, zeroes each element with probability p and scales the others by 1 / (1 - p),
    so the expected output equals the input; in eval mode, the identity.

    Args:
        p: probability of an element being zeroed. Default: 0.5.
        generator: numpy.random.Generator for the masks. Default: cnnlab's, at each call.

    Shape:
        Any; output as input.
    """

    def __init__(self, p=0.5, generator=None):
        super().__init__()
        self.p = _probability("Dropout", "p", p)
        self.generator = generator

    def forward(self, x):
        return F.dropout(x, self.p, self.training, self.generator)

    def extra_repr(self):
        return f"p={self.p}"


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d: normalise each channel over the batch (and the
    spatial positions), then scale and shift it, as torch.nn.BatchNorm."""

    _input_ranks = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        name = type(self).__name__
        self.num_features = _positive_int(name, "num_features", num_features)
        if momentum is not None:
            momentum = _probability(name, "momentum", momentum)
        if not eps > 0:
            raise ValueError(f"{name}: eps must be positive, got {eps!r}")
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        count = self.num_features
        self.register_parameter("weight", Parameter(np.ones(count, np.float32)) if affine else None)
        self.register_parameter("bias", Parameter(np.zeros(count, np.float32)) if affine else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(count, np.float32))
            self.register_buffer("running_var", np.ones(count, np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def _check_input(self, x):
        name = type(self).__name__
        if x.ndim not in self._input_ranks or x.shape[1] != self.num_features:
            expected = " or ".join(
                {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}[rank] for rank in self._input_ranks
            )
            raise ValueError(
                f"{name}: expected input of shape {expected} with C = {self.num_features}, "
                f"got {tuple(x.shape)}"
            )

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        self._check_input(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
            # momentum None: the cumulative average of the batch statistics, as torch
            factor = self.momentum if self.momentum is not None else (
                1.0 / float(self.num_batches_tracked))
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias,
            training=self.training or not self.track_running_stats, momentum=factor,
            eps=self.eps,
        )

    def extra_repr(self):
        text = f"{self.num_features}"
        text += f", eps={self.eps}" if self.eps != 1e-5 else ""
        text += f", momentum={self.momentum}" if self.momentum != 0.1 else ""
        text += ", affine=False" if not self.affine else ""
        return text + (", track_running_stats=False" if not self.track_running_stats else "")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of features: y = (x - mean) / sqrt(var + eps) * weight + bias.

    In training, mean and var are the batch's (the biased variance), and the running
    statistics are updated: running = (1 - momentum) * running + momentum * batch, with the
    unbiased variance for running_var. In eval mode the running statistics are used.

    Args:
        num_features: C.
        eps: added to the variance. Default: 1e-5.
        momentum: weight of the new batch in the running statistics; None for a cumulative
            average. Default: 0.1.
        affine: learn weight and bias. Default: True.
        track_running_stats: keep running statistics (else batch statistics in eval too).
            Default: True.

    Shape:
        Input: (N, C) or (N, C, L). Output: as input.

    Attributes:
        weight: (C,), ones. bias: (C,), zeros.
        running_mean: (C,) buffer, zeros. running_var: (C,) buffer, ones.
        num_batches_tracked: int64 0-d buffer, the number of training batches seen.
    """

    _input_ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of image channels: per channel, over N, H and W,
    y = (x - mean) / sqrt(var + eps) * weight + bias.

    Training and eval behaviour, arguments and attributes as `BatchNorm1d`.

    Shape:
        Input: (N, C, H, W). Output: (N, C, H, W).
    """

    _input_ranks = (4,)
