"""Optimisers with PyTorch's update rules, and learning-rate schedulers (optim.lr_scheduler)."""

from cnnlab.optim import lr_scheduler
from cnnlab.optim.adam import Adam, AdamW
from cnnlab.optim.optimizer import Optimizer
from cnnlab.optim.rmsprop import RMSprop
from cnnlab.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
