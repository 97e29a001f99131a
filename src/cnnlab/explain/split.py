"""Reading and differentiating a named layer's output, without editing the model.

A model made of `nn.Sequential` containers computes the chain of its leaf layers in order
(`cnnlab.analysis.layers`). Cutting that chain after the named layer gives two halves,

    head = layers up to and including `layer`      tail = the layers after it
    model(x) = tail(head(x)),

each an `nn.Sequential` holding the model's own layer objects (shared, not copied; the model
itself is not touched). A = head(x) is the layer's output; running tail on a tensor built from
A that requires grad gives d score / d A by the ordinary backward, with no hook and no gradient
through the head. The explanation methods use these halves:
Grad-CAM (d score / d A), top patches (A alone) and feature visualisation (d A / d x).

Layers are named as `cnnlab summary` names them: the kind and its count, "conv2", "relu2",
"maxpool2", "linear1", ...
"""

from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from cnnlab import nn
from cnnlab.analysis import layers, summary
from cnnlab.tensor import Tensor, no_grad


class Split(NamedTuple):
    """A model cut after one of its layers: model(x) = tail(head(x)).

    Attributes:
        record: the layer's LayerRecord from `summary` (name, output shape, receptive field,
            jump, ...).
        head: nn.Sequential of the layers up to and including it.
        tail: nn.Sequential of the layers after it (empty for the last layer: the identity).
    """

    record: object
    head: nn.Sequential
    tail: nn.Sequential


def check_model(op, model):
    """Raise ValueError unless `model` is in eval mode (explanations of a training-mode model
    would depend on dropout's draws and on the batch, through BatchNorm)."""
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(
            f"{op}: expected a model in eval mode, found {training[0]} in training mode; "
            "call model.eval() first"
        )


@contextmanager
def frozen(model):
    """Within the block, the model's parameters are constants: backward computes no weight
    gradients (less work) and leaves every parameter's `.grad` as it was. Each parameter's
    `requires_grad` is switched off on entry and restored on exit."""
    parameters = list(model.parameters())
    previous = [parameter.requires_grad for parameter in parameters]
    try:
        for parameter in parameters:
            parameter.requires_grad = False
        yield model
    finally:
        for parameter, flag in zip(parameters, previous, strict=True):
            parameter.requires_grad = flag


def check_images(op, images):
    """images as a floating (N, C, H, W) ndarray (a Tensor's data is taken as it is)."""
    images = np.asarray(images.data if isinstance(images, Tensor) else images)
    if images.ndim != 4 or images.dtype.kind != "f":
        raise ValueError(
            f"{op}: expected images as a float array of shape (N, C, H, W), got "
            f"{images.dtype} of shape {images.shape}"
        )
    return images


def check_targets(op, target, logits):
    """(N,) int64 class ids: the predicted ones for target None, else target broadcast.

    logits: (N, K) ndarray. Raises ValueError for a class id outside [0, K) or a shape other
    than () or (N,).
    """
    count, classes = logits.shape
    if target is None:
        return logits.argmax(axis=1)
    target = np.asarray(target)
    if target.dtype.kind not in "iu" or target.shape not in ((), (count,)):
        raise ValueError(
            f"{op}: expected target None, an int or an int array of shape ({count},), got "
            f"{target.dtype} of shape {target.shape}"
        )
    if target.size and (target.min() < 0 or target.max() >= classes):
        raise ValueError(f"{op}: target class ids must lie in [0, {classes}), got {target}")
    return np.broadcast_to(target, (count,)).astype(np.int64)


def split_at(model, layer, input_shape):
    """Cut `model` after the layer named `layer`.

    Args:
        model: a Module whose containers are all nn.Sequential (every model of cnnlab.models).
        layer: a name from `summary(model, input_shape)`, e.g. "conv2" or "relu2".
        input_shape: (C, H, W) of the model's input.

    Returns:
        Split(record, head, tail) with model(x) = tail(head(x)).

    Raises:
        ValueError naming the layer and listing the model's layer names when there is no such
        layer, or naming the container whose own forward makes the cut impossible.
    """
    for path, module in model.named_modules():
        is_container = next(module.named_children(), None) is not None
        if is_container and type(module).forward is not nn.Sequential.forward:
            where = path or "the model itself"
            raise ValueError(
                f"split_at: {where} ({type(module).__name__}) has its own forward, so its "
                "layers cannot be cut in two; the explanations need a model of nn.Sequential "
                "containers"
            )
    records = summary(model, tuple(input_shape))
    names = [record.name for record in records]
    if layer not in names:
        raise ValueError(f"split_at: no layer {layer!r}; the model's layers: {', '.join(names)}")
    index = names.index(layer)
    modules = [module for _, module in layers(model)]
    return Split(records[index], nn.Sequential(*modules[: index + 1]),
                 nn.Sequential(*modules[index + 1 :]))


def layer_activations(model, images, layer, batch_size=256):
    """The named layer's output for every image, computed batch by batch without a graph.

    Args:
        model: a Module in eval mode, split as `split_at` splits it.
        images: (N, C, H, W) float array, as the model takes them.
        layer: the layer's name, e.g. "relu2".
        batch_size: images per forward pass. Default: 256.

    Returns:
        (N, K, H_l, W_l) ndarray for a spatial layer, (N, F) after Flatten or Linear.
    """
    check_model("layer_activations", model)
    images = check_images("layer_activations", images)
    split = split_at(model, layer, images.shape[1:])
    with no_grad():
        parts = [split.head(Tensor(images[start : start + batch_size])).data
                 for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, *split.record.output_shape))


def layer_gradient(model, images, layer, target=None):
    """The named layer's output A and the gradient of each image's score with respect to it.

    score_n = logits[n, target_n], the target's logit (before softmax); since the model is in
    eval mode each image's score depends on its own A only, so one backward of sum_n score_n
    gives every d score_n / d A_n at once. The head runs without a graph and the parameters
    are constants (`frozen`): no gradient is computed that is not asked for, and every
    parameter's `.grad` stays as it was.

    Args:
        model: a Module in eval mode, split as `split_at` splits it.
        images: (N, C, H, W) float array.
        layer: the layer's name, e.g. "conv2".
        target: None (each image's predicted class), an int, or (N,) int class ids.

    Returns:
        (A, dA, logits, target): A and dA of the layer's output shape, e.g. (N, K, H_l, W_l);
        logits (N, classes); target (N,) int64.
    """
    check_model("layer_gradient", model)
    images = check_images("layer_gradient", images)
    split = split_at(model, layer, images.shape[1:])
    with no_grad():
        output = split.head(Tensor(images)).data
    activation = Tensor(output, requires_grad=True)
    with frozen(model):
        logits = split.tail(activation)
        target = check_targets("layer_gradient", target, logits.data)
        logits.backward(one_hot(target, logits.shape, logits.dtype))
    return output, activation.grad, logits.data, target


def one_hot(target, shape, dtype):
    """(N, K) array with 1 at [n, target_n]: the upstream gradient that selects the scores."""
    upstream = np.zeros(shape, dtype=dtype)
    upstream[np.arange(shape[0]), target] = 1
    return upstream
