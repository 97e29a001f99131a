"""Weight initialisation schemes, PyTorch's names and formulas (torch.nn.init).

Each function fills a tensor (usually a Parameter) in place, keeps its dtype and returns it.
Random ones draw from `generator` (a numpy.random.Generator), or from cnnlab's default
generator, seeded by `cnnlab.manual_seed`, when none is given.

fan_in and fan_out: for a weight (out_features, in_features) they are in_features and
out_features; for a conv weight (C_out, C_in, KH, KW), C_in * KH * KW and C_out * KH * KW.
"""

import math

from cnnlab import rng


def calculate_fan_in_and_fan_out(shape):
    """(fan_in, fan_out) of a weight shape with at least two dimensions."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need at least 2 dimensions, got {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain.

    linear, conv2d, sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + a^2))
    with negative slope a = param (default 0.01).
    """
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fan(shape, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"init: cannot initialise a tensor with zero {mode} (shape {shape})")
    return fan


def _fill(tensor, values):
    tensor.data[...] = values
    return tensor


def _generator(generator):
    return generator if generator is not None else rng.default_generator()


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with values drawn from U(a, b)."""
    return _fill(tensor, _generator(generator).uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with values drawn from N(mean, std^2)."""
    return _fill(tensor, _generator(generator).normal(mean, std, size=tensor.shape))


def constant_(tensor, value):
    return _fill(tensor, value)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He initialisation, uniform: U(-bound, bound), bound = gain * sqrt(3 / fan).

    a: negative slope of the leaky ReLU after this layer (used when nonlinearity is
    "leaky_relu"; a = sqrt(5) gives PyTorch's default Linear and Conv2d weights,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))). mode: "fan_in" (default) or "fan_out".
    """
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / _fan(tensor.shape, mode))
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He initialisation, normal: N(0, std^2), std = gain / sqrt(fan)."""
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor.shape, mode))
    return normal_(tensor, 0.0, std, generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot initialisation, uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot initialisation, normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor.shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def default_uniform_bound(weight_shape):
    """PyTorch's default bound for Linear and Conv2d weights and biases: 1 / sqrt(fan_in)."""
    fan_in, _ = calculate_fan_in_and_fan_out(weight_shape)
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


__all__ = [
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "constant_",
    "default_uniform_bound",
    "kaiming_normal_",
    "kaiming_uniform_",
    "normal_",
    "ones_",
    "uniform_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
