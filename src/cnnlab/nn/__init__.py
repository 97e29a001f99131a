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

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Module",
    "MultiClassHingeLoss",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "functional",
    "init",
    "l2_penalty",
]
