"""Explanations of a trained model on real Fashion-MNIST images (from the Debian package's
folder, /usr/share/datasets/fashion-mnist): the sanity check of Adebayo et al. 2018, and
feature visualisation beating the test set.

The model is the default CNN shipped with cnnlab (`cnnlab.pretrained`, "cnn-fashion-mnist":
10 epochs of `cnnlab train`, test accuracy 0.9253), so nothing is trained here.
"""

import numpy as np
import pytest

import cnnlab
from cnnlab import pretrained
from cnnlab.data import load_dataset
from cnnlab.explain import feature_visualisation, grad_cam, layer_activations, saliency
from cnnlab.models import build_model

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def trained():
    """(model in eval mode, normalised test images, test labels, (low, high) pixel range)."""
    model, metadata = pretrained.load("cnn-fashion-mnist")
    prep = metadata["preprocessing"]
    mean, std = np.float32(prep["mean"][0]), np.float32(prep["std"][0])
    _, test = load_dataset("fashion-mnist", data_dir=FASHION_MNIST)
    images = (test.images.astype(np.float32) / np.float32(255) - mean) / std
    bounds = (float((0 - mean) / std), float((1 - mean) / std))
    return model, images, test.labels, bounds


def _ranks(values):
    """Ranks 0..n-1 of a 1-D array, tied values sharing their mean rank (as Spearman's)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts
    return (first + (counts - 1) / 2)[inverse]


def _rank_correlations(maps, others):
    """Spearman's rank correlation of each pair of maps, for the pairs where neither map is
    constant (a Grad-CAM map can be all zeros after its ReLU; the correlation is undefined)."""
    found = []
    for first, second in zip(maps, others, strict=True):
        if np.ptp(first) > 0 and np.ptp(second) > 0:
            found.append(np.corrcoef(_ranks(first.ravel()), _ranks(second.ravel()))[0, 1])
    return np.array(found)


def test_maps_of_the_trained_model_differ_from_those_of_random_weights(trained):
    """Adebayo et al. 2018, "Sanity Checks for Saliency Maps": a method that explains the
    model must give different maps when the learned weights are replaced by fresh random ones
    (same architecture). Rank correlation of the absolute maps, 64 real test images, each
    explained for its true class: measured 0.06 (saliency) and 0.07 (Grad-CAM on relu2,
    62 of the 64 pairs not constant), far below the issue's 0.5."""
    model, images, labels, _ = trained
    with cnnlab.no_grad():
        predictions = model(cnnlab.Tensor(images[:2000])).data.argmax(axis=1)
    assert np.mean(predictions == labels[:2000]) > 0.9  # the shipped weights, not random ones
    random = build_model("cnn", generator=np.random.default_rng(12345)).eval()
    images, labels = images[:64], labels[:64]
    for method in (lambda m: saliency(m, images, labels),
                   lambda m: grad_cam(m, images, "relu2", labels)):
        correlations = _rank_correlations(method(model), method(random))
        assert len(correlations) >= 48
        assert correlations.mean() < 0.5, correlations.mean()


def test_feature_visualisation_beats_every_test_image_for_most_conv2_channels(trained):
    """For each of the 64 channels of conv2 (the default CNN's last convolution), the image
    synthesised for it has a higher mean activation of that channel (the objective it climbs,
    Olah et al.'s channel objective) than any of the 10,000 test images, for at least 54 of
    the 64 channels (84%; 56 measured, the margin for other BLAS libraries' rounding).

    Why conv2, before its ReLU: after the ReLU a channel that the start image does not
    activate anywhere has no gradient. Why pixels bounded to [0, 255]: without bounds,
    contrast alone would win. Why not all 64: the 8 channels missed (1, 5, 29, 31, 34, 36,
    62, 63) respond to the black background, with thin strokes: their best test image is a
    nearly black picture of a sandal or a sneaker (mean pixel 0.03 to 0.06, against a median
    of 0.22 for the other channels' best images), and the ascent, starting from mid-grey
    noise and blurred as it goes, stops at a local maximum short of such an image."""
    model, images, _, bounds = trained
    best = np.full(64, -np.inf)
    for start in range(0, len(images), 1000):
        means = layer_activations(model, images[start : start + 1000], "conv2").mean(axis=(2, 3))
        best = np.maximum(best, means.max(axis=0))
    channels = np.arange(64)
    synthesised = feature_visualisation(model, "conv2", channels, (1, 28, 28),
                                        np.random.default_rng(0), bounds=bounds)
    assert synthesised.min() >= bounds[0] and synthesised.max() <= bounds[1]
    reached = layer_activations(model, synthesised, "conv2")[channels, channels].mean(axis=(1, 2))
    assert np.sum(reached > best) >= 54, np.flatnonzero(reached <= best)
