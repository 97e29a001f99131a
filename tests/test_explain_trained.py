"""Explanations of a trained model on real Fashion-MNIST images (from the Debian package's
folder, /usr/share/datasets/fashion-mnist): the sanity check of Adebayo et al. 2018, and
feature visualisation beating the test set.

No trained weights ship with cnnlab yet, so the module trains the default CNN for 300 Adam
steps of 32 images (about 7 s on one core; about 85% test accuracy) with cnnlab's own
optimiser and a fixed seed.
"""

import numpy as np
import pytest

import cnnlab
from cnnlab import optim
from cnnlab.data import channel_stats, load_dataset
from cnnlab.explain import feature_visualisation, grad_cam, layer_activations, saliency
from cnnlab.models import build_model
from cnnlab.nn import functional as F

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def trained():
    """(model in eval mode, normalised test images, test labels, (low, high) pixel range)."""
    train, test = load_dataset("fashion-mnist", data_dir=FASHION_MNIST)
    rng = np.random.default_rng(0)
    subset = train.subset(rng.permutation(len(train))[:9600])
    mean, std = channel_stats(subset)

    def normalise(images):
        return (images.astype(np.float32) / 255 - mean[:, None, None]) / std[:, None, None]

    model = build_model("cnn", generator=rng)
    optimiser = optim.Adam(model.parameters(), lr=2e-3)
    images = normalise(subset.images)
    for step in range(300):
        batch = slice(step * 32, step * 32 + 32)
        loss = F.cross_entropy(model(cnnlab.Tensor(images[batch])), subset.labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    bounds = (float((0 - mean[0]) / std[0]), float((1 - mean[0]) / std[0]))
    return model.eval(), normalise(test.images), test.labels, bounds


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
    explained for its true class."""
    model, images, labels, _ = trained
    with cnnlab.no_grad():
        predictions = model(cnnlab.Tensor(images[:2000])).data.argmax(axis=1)
    assert np.mean(predictions == labels[:2000]) > 0.75  # the weights did learn something
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
    Olah et al.'s channel objective) than any of the 10,000 test images, for at least 58 of
    the 64 channels (90%).

    Why conv2, before its ReLU: after the ReLU a channel that the start image does not
    activate anywhere has no gradient (and this briefly trained model has channels that no
    test image activates at all). Why pixels bounded to [0, 255]: without bounds, contrast
    alone would win. Why not all 64: a channel whose best test image already nearly fills
    the canvas with its preferred brightness can be matched but not always beaten by an
    image that must also survive jitter and blur."""
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
    assert np.sum(reached > best) >= 58, np.flatnonzero(reached <= best)
