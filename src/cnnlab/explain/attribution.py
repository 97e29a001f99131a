"""Which pixels made this prediction: saliency, Grad-CAM and occlusion maps.

All three take a model in eval mode and images (N, C, H, W) as the model takes them
(normalised), and explain one class per image: `target` None (the predicted class), an int, or
(N,) class ids. The score is the target's logit (before softmax), except for occlusion, which
reads the softmax probability. The model is not changed: its parameters' `.grad` stay as
they were (see `split.frozen`).

- saliency (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks"):
      M[n, y, x] = max over c of |d score_n / d images[n, c, y, x]|
- Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via
  Gradient-based Localization"), on a layer's output A (N, K, H_l, W_l):
      alpha[n, k] = mean over (i, j) of d score_n / d A[n, k, i, j]
      L[n] = ReLU(sum over k of alpha[n, k] * A[n, k])
  optionally resized to (H, W) bilinearly, as torch's interpolate(align_corners=False).
- occlusion (Zeiler & Fergus 2014, "Visualizing and Understanding Convolutional Networks"):
      O[n, i, j] = p(target | image) - p(target | image with the patch at
                   (i * stride, j * stride) set to fill),
  H_o = (H - patch) // stride + 1 positions per axis, every position of every image in
  forward passes of `batch_size` images.
"""

import numpy as np

from cnnlab.explain.split import (
    check_images,
    check_model,
    check_targets,
    frozen,
    layer_gradient,
    one_hot,
)
from cnnlab.nn import functional as F
from cnnlab.shapes import output_hw, pair
from cnnlab.tensor import Tensor, no_grad


def saliency(model, images, target=None):
    """The gradient saliency map: max over channels of |d score / d images|.

    Args:
        model: a Module in eval mode.
        images: (N, C, H, W) float array.
        target: None (the predicted class), an int, or (N,) int class ids.

    Returns:
        (N, H, W) ndarray of the images' dtype.
    """
    check_model("saliency", model)
    images = check_images("saliency", images)
    x = Tensor(images, requires_grad=True)
    with frozen(model):
        logits = model(x)
        target = check_targets("saliency", target, logits.data)
        logits.backward(one_hot(target, logits.shape, logits.dtype))
    return np.abs(x.grad).max(axis=1)


def grad_cam(model, images, layer, target=None, upsample=True):
    """Grad-CAM: the layer's channels weighted by their mean gradient, summed, then ReLU.

    Args:
        model: a Module in eval mode, made of nn.Sequential containers.
        images: (N, C, H, W) float array.
        layer: a spatial layer's name as `cnnlab summary` gives it ("conv2", "relu2", ...).
        target: None (the predicted class), an int, or (N,) int class ids.
        upsample: resize the map to (H, W) with `resize_bilinear`. Default: True.

    Returns:
        (N, H, W) with upsample, else (N, H_l, W_l): ReLU(sum_k alpha_k A_k), raw values (not
        rescaled to [0, 1]).
    """
    images = check_images("grad_cam", images)
    activation, gradient, _, _ = layer_gradient(model, images, layer, target)
    if activation.ndim != 4:
        raise ValueError(
            f"grad_cam: layer {layer!r} must have a spatial output (N, K, H_l, W_l), found "
            f"shape {activation.shape}; pick a conv, relu or pool layer"
        )
    weights = gradient.mean(axis=(2, 3))  # alpha: (N, K)
    cam = np.maximum(np.einsum("nk,nkij->nij", weights, activation), 0)
    return resize_bilinear(cam, images.shape[2:]) if upsample else cam


def _bilinear_matrix(size_in, size_out, dtype):
    """(size_out, size_in) interpolation weights along one axis, align_corners=False:
    source = (out + 0.5) * size_in / size_out - 0.5, clamped at 0; the two neighbours
    floor(source) and the next (clamped to the last index) weighted by 1 - frac and frac."""
    source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    source = np.maximum(source, 0)
    lower = np.floor(source).astype(np.int64)
    upper = np.minimum(lower + 1, size_in - 1)
    fraction = (source - lower).astype(dtype)
    matrix = np.zeros((size_out, size_in), dtype=dtype)
    rows = np.arange(size_out)
    np.add.at(matrix, (rows, lower), 1 - fraction)
    np.add.at(matrix, (rows, upper), fraction)
    return matrix


def resize_bilinear(maps, size):
    """Resize maps bilinearly, as torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False) with `size` (pixel centres aligned, edges clamped).

    Args:
        maps: (N, H_in, W_in) array.
        size: (H, W), or an int for both.

    Returns:
        (N, H, W) array of maps' floating dtype: R_h @ maps[n] @ R_w^T, with R the
        interpolation matrices of `_bilinear_matrix`.
    """
    maps = np.asarray(maps)
    height, width = pair(size, "resize_bilinear: size")
    if maps.ndim != 3 or min(maps.shape) < 1 or min(height, width) < 1:
        raise ValueError(
            f"resize_bilinear: expected maps of shape (N, H_in, W_in) and a positive size, "
            f"got maps {maps.shape} and size {(height, width)}"
        )
    dtype = maps.dtype if maps.dtype.kind == "f" else np.float64
    rows = _bilinear_matrix(maps.shape[1], height, dtype)
    columns = _bilinear_matrix(maps.shape[2], width, dtype)
    return np.einsum("yi,nij,xj->nyx", rows, maps.astype(dtype, copy=False), columns,
                     optimize=True)


def occlusion_masks(image_hw, patch=4, stride=2):
    """Where each occluding patch lies: (H_o, W_o, H, W) bool, True inside the patch at
    (i * stride, j * stride); H_o = (H - patch) // stride + 1, W_o likewise."""
    patch, stride = pair(patch, "occlusion: patch"), pair(stride, "occlusion: stride")
    if min(patch) < 1 or min(stride) < 1:
        raise ValueError(f"occlusion: patch and stride must be >= 1, got {patch} and {stride}")
    height, width = image_hw
    out_h, out_w = output_hw(height, width, patch, stride, (0, 0), op="occlusion")
    inside = []
    for axis, (size, positions) in enumerate(((height, out_h), (width, out_w))):
        pixels, starts = np.arange(size), np.arange(positions) * stride[axis]
        inside.append((pixels >= starts[:, None]) & (pixels < starts[:, None] + patch[axis]))
    rows, columns = inside  # (H_o, H), (W_o, W)
    return rows[:, None, :, None] & columns[None, :, None, :]


def _probabilities(model, images):
    with no_grad():
        return F.softmax(model(Tensor(images)), dim=1).data


def occlusion(model, images, target=None, patch=4, stride=2, fill=0.0, batch_size=256):
    """The drop in the target's probability as a patch of `fill` slides over each image.

    Args:
        model: a Module in eval mode.
        images: (N, C, H, W) float array.
        target: None (the class predicted for the whole image), an int, or (N,) class ids.
        patch: side of the square patch (or (h, w)). Default: 4.
        stride: step between patch positions (or (h, w)). Default: 2.
        fill: the value the patch's pixels get, in the model's input units (0.0 is the mean
            pixel for inputs normalised by the dataset's mean). Default: 0.0.
        batch_size: occluded images per forward pass. Default: 256.

    Returns:
        (N, H_o, W_o) ndarray, H_o = (H - patch) // stride + 1: p(target | image) minus
        p(target | occluded image); positive where hiding the patch lowers the probability.
    """
    check_model("occlusion", model)
    images = check_images("occlusion", images)
    masks = occlusion_masks(images.shape[2:], patch, stride)
    out_hw = masks.shape[:2]
    masks = masks.reshape(-1, 1, *images.shape[2:])  # (P, 1, H, W)
    base = _probabilities(model, images)
    target = check_targets("occlusion", target, base)
    positions = len(masks)
    fill = np.asarray(fill, dtype=images.dtype)
    occluded = np.empty(len(images) * positions, dtype=images.dtype)
    for start in range(0, len(occluded), batch_size):
        flat = np.arange(start, min(start + batch_size, len(occluded)))
        image, position = flat // positions, flat % positions
        batch = np.where(masks[position], fill, images[image])
        occluded[flat] = _probabilities(model, batch)[np.arange(len(flat)), target[image]]
    drop = base[np.arange(len(images)), target][:, None] - occluded.reshape(len(images), -1)
    return drop.reshape(len(images), *out_hw)
