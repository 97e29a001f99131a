"""Tensor: an ndarray that remembers how it was computed, and backward() through that graph.

Every op on tensors that require grad (while grad mode is on) records a node: the primitive
(a `Function` from `cnnlab.ops`, holding what its backward needs) and its input tensors.
`backward()` hands the graph to `cnnlab.autograd`, which orders it, calls each primitive's
backward, undoes broadcasting, checks shapes and accumulates, once for every op.
"""

import numbers

import numpy as np

from cnnlab import autograd
from cnnlab.autograd import is_grad_enabled, no_grad
from cnnlab.ops import elementwise, loss, matmul, movement, reduce

__all__ = ["Tensor", "is_grad_enabled", "no_grad", "tensor"]


def _to_array(data, dtype=None):
    """ndarray for Tensor(data): floating arrays keep their dtype, Python numbers become float32."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray | np.generic):
        array = np.asarray(data)
    else:
        array = np.asarray(data)
        if array.dtype.kind in "biuf":
            array = array.astype(np.float32)
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    return array


class Tensor:
    """A multi-dimensional array with automatic differentiation.

    Args:
        data: array-like. A floating NumPy array keeps its dtype (float32 or float64); integer
            arrays stay integer (class ids); Python numbers and lists become float32.
        requires_grad: record operations on this tensor so backward() can fill `.grad`.
            Default: False.
        dtype: optional NumPy dtype to convert to.

    Attributes:
        data: the ndarray. grad: ndarray of exactly `shape`, or None before any backward.
    """

    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operator

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _to_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(
                f"Tensor: only floating tensors can require grad, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._function = None  # the primitive that made this tensor (None for leaves)
        self._parents = ()
        self._retains_grad = False
        self._released = False

    # ----- graph construction ---------------------------------------------------------------
    @classmethod
    def _make(cls, function_class, *inputs, **options):
        """Run a primitive on tensors (or constants) and record the node if a grad is needed."""
        tensors = [item if isinstance(item, Tensor) else Tensor(item) for item in inputs]
        needs = [tensor.requires_grad for tensor in tensors]
        record = is_grad_enabled() and any(needs)
        function = function_class(needs if record else [False] * len(needs))
        out = Tensor.__new__(Tensor)
        out.data = np.asarray(function.forward(*[t.data for t in tensors], **options))
        out.requires_grad, out.grad, out._retains_grad, out._released = record, None, False, False
        out._function, out._parents = (function, tuple(tensors)) if record else (None, ())
        return out

    def _constant(self, value):
        """A Python number or array as a tensor of this tensor's float dtype (no precision loss)."""
        if isinstance(value, Tensor):
            return value
        if isinstance(value, numbers.Number) and self.data.dtype.kind == "f":
            return Tensor(np.asarray(value, dtype=self.data.dtype))
        return Tensor(value)

    # ----- backward -------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph=False):
        """Compute d(self)/d(leaf) for every leaf that requires grad, accumulating into `.grad`.

        Args:
            grad: upstream gradient of self's shape; may be omitted for a one-element tensor.
            retain_graph: keep the saved arrays for another backward. Default: False.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implicit only for one-element tensors, "
                    f"got shape {self.shape}; pass backward(grad)"
                )
            grad = np.ones_like(self.data)
        grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward: grad has shape {grad.shape}, expected {self.shape}")
        autograd.backward(self, grad, retain_graph)

    def retain_grad(self):
        """Keep `.grad` on this non-leaf tensor during backward (as torch)."""
        self._retains_grad = True
        return self

    def detach(self):
        """A tensor sharing this data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self):
        self.grad = None

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = bool(requires_grad)
        return self

    # ----- array-like properties --------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def is_leaf(self):
        return self._function is None and not self._released  # freed nodes stay non-leaves

    def numpy(self):
        return self.data

    def item(self):
        return self.data.item()

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.data, prefix="tensor(", separator=", ")
        return f"tensor({body}{grad})"

    # ----- arithmetic -----------------------------------------------------------------------
    def __add__(self, other):
        return Tensor._make(elementwise.Add, self, self._constant(other))

    def __radd__(self, other):
        return Tensor._make(elementwise.Add, self._constant(other), self)

    def __mul__(self, other):
        return Tensor._make(elementwise.Mul, self, self._constant(other))

    def __rmul__(self, other):
        return Tensor._make(elementwise.Mul, self._constant(other), self)

    def __truediv__(self, other):
        return Tensor._make(elementwise.Div, self, self._constant(other))

    def __rtruediv__(self, other):
        return Tensor._make(elementwise.Div, self._constant(other), self)

    def __neg__(self):
        return self * -1

    def __sub__(self, other):
        return self + (-self._constant(other))

    def __rsub__(self, other):
        return self._constant(other) + (-self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):  # a tensor exponent: a ** b = exp(b log a)
            return (exponent * self.log()).exp()
        return Tensor._make(elementwise.Pow, self, exponent=exponent)

    def __rpow__(self, base):
        return (self * self._constant(base).log()).exp()

    def __matmul__(self, other):
        return Tensor._make(matmul.MatMul, self, self._constant(other))

    def __rmatmul__(self, other):
        return Tensor._make(matmul.MatMul, self._constant(other), self)

    # Comparisons give plain boolean tensors (no graph), as in PyTorch.
    def __eq__(self, other):
        return Tensor(self.data == _data(other))

    def __ne__(self, other):
        return Tensor(self.data != _data(other))

    def __lt__(self, other):
        return Tensor(self.data < _data(other))

    def __le__(self, other):
        return Tensor(self.data <= _data(other))

    def __gt__(self, other):
        return Tensor(self.data > _data(other))

    def __ge__(self, other):
        return Tensor(self.data >= _data(other))

    __hash__ = object.__hash__  # by identity, as torch: sets and dicts hold tensors, not values

    def __bool__(self):
        """The value of a one-element tensor (so `t > 2` reads as a condition), as torch."""
        if self.data.size != 1:
            count = "no values" if self.data.size == 0 else "more than one value"
            raise RuntimeError(f"Boolean value of Tensor with {count} is ambiguous")
        return bool(self.data.item())

    # ----- elementwise functions ------------------------------------------------------------
    def exp(self):
        return Tensor._make(elementwise.Exp, self)

    def log(self):
        return Tensor._make(elementwise.Log, self)

    def sqrt(self):
        return self**0.5

    def abs(self):
        return self * Tensor(np.sign(self.data))

    def relu(self):
        return Tensor._make(elementwise.ReLU, self)

    def sigmoid(self):
        return Tensor._make(elementwise.Sigmoid, self)

    def tanh(self):
        return Tensor._make(elementwise.Tanh, self)

    def maximum(self, other):
        return Tensor._make(elementwise.Maximum, self, self._constant(other))

    def clamp_min(self, minimum):
        return self.maximum(minimum)

    # ----- reductions -----------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._make(reduce.Sum, self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        axes = range(self.ndim) if axis is None else (axis,) if isinstance(axis, int) else axis
        count = int(np.prod([self.shape[a] for a in axes]))
        return self.sum(axis=axis, keepdims=keepdims) / count

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        axis, keepdims = _axis_args(axis, keepdims, dim, keepdim)
        return Tensor._make(reduce.Max, self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return -((-self).max(axis, keepdims, dim=dim, keepdim=keepdim))

    def argmax(self, axis=None, *, dim=None):
        return Tensor(np.argmax(self.data, axis=dim if dim is not None else axis))

    # ----- movement -------------------------------------------------------------------------
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape
        return Tensor._make(movement.Reshape, self, shape=tuple(shape))

    view = reshape

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and not isinstance(dims[0], int) else dims
        return Tensor._make(movement.Permute, self, dims=tuple(d % self.ndim for d in dims))

    def transpose(self, *dims):
        """transpose(dim0, dim1) swaps two axes, as torch; transpose() reverses all axes;
        transpose(d0, d1, d2, ...) listing every axis permutes them, as NumPy."""
        if not dims:
            return self.T
        if len(dims) == 2:
            order = list(range(self.ndim))
            first, second = dims[0] % self.ndim, dims[1] % self.ndim
            order[first], order[second] = order[second], order[first]
            return self.permute(order)
        return self.permute(*dims)

    @property
    def T(self):
        return self.permute(tuple(reversed(range(self.ndim))))

    def flatten(self, start_dim=0, end_dim=-1):
        """Merge axes start_dim..end_dim into one, as torch.flatten."""
        if self.ndim == 0:
            return self.reshape(1)
        start, end = start_dim % self.ndim, end_dim % self.ndim
        shape = self.shape[:start] + (int(np.prod(self.shape[start : end + 1])),)
        return self.reshape(shape + self.shape[end + 1 :])

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(item.data if isinstance(item, Tensor) else item for item in index)
        return Tensor._make(movement.GetItem, self, index=index)

    # ----- softmax family ---------------------------------------------------------------------
    def log_softmax(self, dim=-1):
        return Tensor._make(loss.LogSoftmax, self, dim=dim)

    def softmax(self, dim=-1):
        return self.log_softmax(dim).exp()


def _data(value):
    return value.data if isinstance(value, Tensor) else value


def _axis_args(axis, keepdims, dim, keepdim):
    """Accept NumPy's (axis, keepdims) and PyTorch's (dim, keepdim) spellings."""
    axis = dim if dim is not None else axis
    keepdims = keepdim if keepdim is not None else keepdims
    if isinstance(axis, list):
        axis = tuple(axis)
    return axis, bool(keepdims)


def tensor(data, requires_grad=False, dtype=None):
    """Build a Tensor (as torch.tensor)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


# ----- for transformers: concatenation, and a parameter broadcast over the batch ------------
def cat(tensors, dim=0):
    """Join tensors along `dim`, as torch.cat; every other axis must agree.

    tensors: a sequence of (..., L_i, ...) tensors -> (..., sum of L_i, ...).
    """
    tensors = [item if isinstance(item, Tensor) else Tensor(item) for item in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    first = tensors[0]
    if not -first.ndim <= dim < first.ndim:
        raise ValueError(f"cat: dim {dim} out of range for tensors of shape {first.shape}")
    dim %= first.ndim
    others = [shape[:dim] + shape[dim + 1 :] for shape in (t.shape for t in tensors)]
    for item, other in zip(tensors, others, strict=True):
        if item.ndim != first.ndim or other != others[0]:
            raise ValueError(
                f"cat: tensors must agree on every axis but dim {dim}, got shapes "
                f"{[t.shape for t in tensors]}"
            )
    return Tensor._make(movement.Concatenate, *tensors, dim=dim)


def _expand(self, *sizes):
    """This tensor broadcast to `sizes` without copying, as torch.expand: -1 keeps an axis,
    new axes go in front. A class token (1, 1, D) expanded to (N, 1, D) gets, in backward, the
    sum of the N gradients."""
    sizes = sizes[0] if len(sizes) == 1 and not isinstance(sizes[0], int) else sizes
    extra = len(sizes) - self.ndim
    if extra < 0:
        raise ValueError(f"expand: {len(sizes)} sizes for a tensor of shape {self.shape}")
    shape = tuple(
        self.shape[axis - extra] if size == -1 and axis >= extra else size
        for axis, size in enumerate(sizes)
    )
    for axis, size in enumerate(self.shape):
        if size != 1 and shape[axis + extra] != size:
            raise ValueError(f"expand: cannot expand shape {self.shape} to {tuple(sizes)}")
    if any(size < 0 for size in shape):
        raise ValueError(f"expand: -1 is only allowed for existing axes, got {tuple(sizes)}")
    return Tensor._make(movement.Expand, self, shape=shape)


Tensor.expand = _expand  # kept beside cat, apart from the class body being edited elsewhere
