"""The shape of every differentiable primitive: forward and backward side by side, on ndarrays.

A primitive is a small subclass of `Function`. `forward` receives plain NumPy arrays (one per
tensor input) plus keyword options, keeps on `self` whatever backward needs, and returns one
array. `backward` receives the gradient of the loss with respect to that output (same shape)
and returns one gradient per array input, in order, each of that input's exact shape (or None
where `self.needs_input_grad[i]` is False: the tensor skips work nobody asked for).

Backward returns gradients; it never writes `.grad`. Unbroadcasting, shape checks and
accumulation happen once, in `cnnlab.tensor`.
"""


class Function:
    """Base class of the differentiable primitives in `cnnlab.ops`."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = tuple(needs_input_grad)

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__}>"
