"""Parameter: a tensor that a Module registers as learnable when assigned as an attribute."""

import numpy as np

from cnnlab.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad and that `Module` collects in `parameters()`.

    Args:
        data: a floating array (a floating ndarray keeps its dtype; lists, numbers and
            integer arrays become float32).
        requires_grad: Default: True.

    Ops on a Parameter return plain Tensors, as in PyTorch.
    """

    def __init__(self, data, requires_grad=True):
        data = data.data if isinstance(data, Tensor) else data
        if isinstance(data, np.ndarray) and data.dtype.kind != "f":
            data = data.astype(np.float32)
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
