"""What a channel responds to, synthesised: feature visualisation by gradient ascent.

Olah, Mordvintsev & Schubert 2017, "Feature Visualization" (Distill): start from faint noise
and climb the gradient of one channel's mean activation with respect to the input image,

    objective(x) = mean over (i, j) of A[channel, i, j](x),   A = the layer's output,

with the regularisers that keep the result an image rather than high-frequency noise:
jitter (each step sees the image rolled by a random offset of up to `jitter` pixels, so the
pattern must work wherever it lands: "transformation robustness"), a Gaussian blur every few
steps (it damps the high frequencies that gradients amplify: Yosinski et al. 2015 use the
same), and the pixel range of real images (`bounds`), without which a ReLU network's
activation grows with the image's contrast without limit. The steps are Adam's (cnnlab.optim)
on the image. One image per requested channel, all optimised together in one batch (in eval
mode each image's objective depends on that image only).
"""

import numpy as np

from cnnlab.explain.split import check_model, frozen, split_at
from cnnlab.optim import Adam
from cnnlab.tensor import Tensor


def gaussian_blur(images, sigma):
    """Blur each image's last two axes with a Gaussian of standard deviation `sigma` pixels
    (kernel radius ceil(2 sigma), edges repeated). images: (N, C, H, W) -> same shape."""
    radius = int(np.ceil(2 * sigma))
    if sigma <= 0 or radius == 0:
        return images
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    weights = (weights / weights.sum()).astype(images.dtype)
    for axis in (2, 3):
        padding = [(0, 0)] * 4
        padding[axis] = (radius, radius)
        padded = np.pad(images, padding, mode="edge")
        size = images.shape[axis]
        images = sum(
            weight * np.take(padded, np.arange(tap, tap + size), axis=axis)
            for tap, weight in enumerate(weights)
        )
    return images


def feature_visualisation(model, layer, channels, input_shape, generator, steps=128, lr=0.1,
                          jitter=2, blur_sigma=0.5, blur_every=4, bounds=None):
    """Images that maximise the mean activation of each of `channels` of a layer.

    Args:
        model: a Module in eval mode, made of nn.Sequential containers.
        layer: the layer's name as `cnnlab summary` gives it ("conv1", "relu2", ...).
        channels: a channel id or a sequence of them (M of them, repeats allowed).
        input_shape: (C, H, W) of the model's input.
        generator: numpy.random.Generator for the initial noise and the jitter.
        steps: gradient steps. Default: 128.
        lr: Adam's learning rate, in input units per step. Default: 0.1.
        jitter: largest random roll, in pixels, per step. Default: 2.
        blur_sigma: standard deviation of the blur, in pixels (0: none). Default: 0.5.
        blur_every: blur after every this many steps. Default: 4.
        bounds: (low, high) input range to clip to after each step, e.g. the normalised
            values of pixels 0 and 255; Default: None (no clipping). The start is faint noise
            around the middle of the range (standard deviation a tenth of it; 0.01 without
            bounds).

    A channel of a layer after a ReLU that no position of the (jittered) start image
    activates has no gradient and stays where it started; visualise the convolution before
    the ReLU ("conv2" rather than "relu2") for such channels, as Lucid does.

    Returns:
        (M, C, H, W) float32 array, image m for channels[m].
    """
    check_model("feature_visualisation", model)
    if not isinstance(generator, np.random.Generator):
        raise ValueError(f"feature_visualisation: generator must be a numpy.random.Generator, "
                         f"got {type(generator).__name__}")
    split = split_at(model, layer, input_shape)
    shape = split.record.output_shape
    channels = np.atleast_1d(np.asarray(channels))
    if channels.ndim != 1 or channels.dtype.kind not in "iu" or not len(channels) or (
        channels.min() < 0 or channels.max() >= shape[0]
    ):
        raise ValueError(f"feature_visualisation: channels must be ints in [0, {shape[0]}) for "
                         f"layer {layer!r} of output shape {shape}, got {channels.tolist()}")
    low, high = (-np.inf, np.inf) if bounds is None else bounds
    centre = 0.0 if bounds is None else (low + high) / 2
    scale = 0.01 if bounds is None else 0.1 * (high - low)
    start = centre + scale * generator.standard_normal((len(channels), *input_shape))
    image = Tensor(start.astype(np.float32), requires_grad=True)
    optimiser = Adam([image], lr=lr)
    upstream = np.zeros((len(channels), *shape), dtype=np.float32)
    upstream[np.arange(len(channels)), channels] = -1 / np.prod(shape[1:])  # ascent on the mean
    with frozen(model):
        for step in range(steps):
            shift = tuple(generator.integers(-jitter, jitter + 1, size=2))
            rolled = Tensor(np.roll(image.data, shift, axis=(2, 3)), requires_grad=True)
            split.head(rolled).backward(upstream)
            image.grad = np.roll(rolled.grad, (-shift[0], -shift[1]), axis=(2, 3))
            optimiser.step()
            if blur_sigma > 0 and (step + 1) % blur_every == 0:
                image.data[...] = gaussian_blur(image.data, blur_sigma)
            np.clip(image.data, low, high, out=image.data)
    return image.data
