"""Neural-network building blocks: functional ops (cnnlab.nn.functional) and modules."""

from cnnlab.nn import functional, init
from cnnlab.nn.layers import (
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from cnnlab.nn.losses import CrossEntropyLoss, MultiClassHingeLoss, l2_penalty
from cnnlab.nn.module import Module, Sequential
from cnnlab.nn.parameter import Parameter
from cnnlab.nn.transformer import (
    GELU,
    LayerNorm,
    MultiheadAttention,
    PatchTokens,
    SelectToken,
    TransformerEncoderLayer,
)

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GELU",
    "Identity",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Module",
    "MultiClassHingeLoss",
    "MultiheadAttention",
    "Parameter",
    "PatchTokens",
    "ReLU",
    "SelectToken",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "TransformerEncoderLayer",
    "functional",
    "init",
    "l2_penalty",
]
