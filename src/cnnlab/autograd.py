"""Grad mode and the backward pass: the graph bookkeeping that every Tensor shares, once.

A tensor made by an op on tensors that require grad is a node of the graph: `_function`, the
primitive that made it (a `Function` from `cnnlab.ops`, holding what its backward needs), and
`_parents`, its input tensors. `backward(root, grad)` orders the graph once (each node after
every node that uses it), asks each node's primitive for its input gradients, undoes
broadcasting, checks shapes and accumulates into the `.grad` of the leaves (and of the tensors
that asked to `retain_grad`).

After backward each node drops its primitive and parents (the arrays they saved go with them,
so memory does not grow step by step) and is marked freed, unless `retain_graph=True`. A later
backward that reaches a freed node raises, as PyTorch's does, before accumulating anything:
without its primitive the node would pass for a leaf, and the gradient would stop there
silently. (PyTorch goes on through a freed node that saved nothing, such as an addition; here
every freed node stops, since its parents are gone.)
"""

import threading

import numpy as np


class _GradMode(threading.local):
    """Whether ops record a graph, per thread as PyTorch's: every thread starts with it on,
    and a no_grad() in one thread leaves the others alone."""

    enabled = True


_grad_mode = _GradMode()

FREED = (
    "Trying to backward through the graph a second time: an earlier backward freed the "
    "values this part of the graph saved. Specify retain_graph=True in the earlier backward "
    "if you need to backward through the graph a second time."
)


class no_grad:
    """Context manager (and decorator) in which ops on this thread record no graph, as
    torch.no_grad."""

    def __enter__(self):
        self.previous, _grad_mode.enabled = _grad_mode.enabled, False

    def __exit__(self, *exc_info):
        _grad_mode.enabled = self.previous

    def __call__(self, function):
        def wrapper(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
        return wrapper


def is_grad_enabled():
    """Whether ops on this thread record a graph (False inside no_grad)."""
    return _grad_mode.enabled


def backward(root, grad, retain_graph=False):
    """Accumulate d(root)/d(node) into every leaf (and retained node) that requires grad.

    Args:
        root: the tensor backward was called on. grad: ndarray of root's shape and dtype.
        retain_graph: keep the nodes' primitives (and the arrays they saved) for another
            backward. Default: False.
    """
    grads = {id(root): grad}
    for node in _topological_order(root):
        node_grad = grads.pop(id(node), None)
        if node_grad is None:
            continue
        if node._function is None or node._retains_grad:
            _accumulate(node, node_grad)
        if node._function is None:
            continue
        input_grads = node._function.backward(node_grad)
        for parent, parent_grad in zip(node._parents, input_grads, strict=True):
            if parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = _unbroadcast(np.asarray(parent_grad), parent.shape, node._function)
            key = id(parent)
            grads[key] = parent_grad if key not in grads else grads[key] + parent_grad
        if not retain_graph:
            node._function, node._parents, node._released = None, (), True


def _topological_order(root):
    """Nodes from root back to the leaves, each after every node that uses it. Raises if a
    node on the way was freed by an earlier backward."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        if node._released:
            raise RuntimeError(FREED)
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    return reversed(order)


def _accumulate(node, grad):
    grad = grad.astype(node.data.dtype, copy=False)
    if node.grad is None:
        node.grad = np.array(grad, copy=True)  # own it: grad may alias another array
    else:
        node.grad += grad


def _unbroadcast(grad, shape, function):
    """Sum a gradient of the broadcast shape back down to an input's `shape`."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        raise RuntimeError(f"{function!r}: gradient shape {grad.shape} for input of {shape}")
    axes = tuple(range(extra)) + tuple(
        extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] != 1
    )
    grad = grad.sum(axis=axes, keepdims=True) if axes else grad
    grad = grad.reshape(shape)
    return grad
