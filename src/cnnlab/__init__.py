"""cnnlab: image classification with convolutional networks, on NumPy.

    import cnnlab
    x = cnnlab.tensor([[1.0, 2.0]], requires_grad=True)
"""

from cnnlab import nn, optim
from cnnlab.allocator import keep_freed_memory
from cnnlab.errors import CheckpointError, DatasetError
from cnnlab.gradcheck import gradcheck
from cnnlab.rng import manual_seed
from cnnlab.tensor import Tensor, cat, is_grad_enabled, no_grad, tensor
from cnnlab.threads import get_num_threads, set_num_threads

__version__ = "0.1.0"
keep_freed_memory()  # a training step reuses its freed arrays (see cnnlab.allocator)
__all__ = [
    "CheckpointError",
    "DatasetError",
    "Tensor",
    "cat",
    "get_num_threads",
    "gradcheck",
    "is_grad_enabled",
    "manual_seed",
    "nn",
    "no_grad",
    "optim",
    "set_num_threads",
    "tensor",
]
