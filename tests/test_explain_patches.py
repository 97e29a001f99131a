"""top_patches_per_channel (every channel of a layer ranked in one pass) against top_patches
channel by channel, and crop_patches against plain slicing."""

import numpy as np
import pytest

from cnnlab.analysis import layers, summary
from cnnlab.explain import crop_patches, top_patches, top_patches_per_channel
from cnnlab.models import build_model


def _model(seed=0):
    return build_model("cnn", generator=np.random.default_rng(seed)).eval()


def _images(count, seed=1):
    return np.random.default_rng(seed).standard_normal((count, 1, 28, 28)).astype(np.float32)


@pytest.mark.parametrize(("layer", "k", "batch_size"),
                         [("conv1", 9, 7), ("relu1", 9, 5), ("maxpool1", 4, 64),
                          ("relu2", 9, 3), ("maxpool2", 20, 4)])
def test_every_channel_ranked_in_one_pass_equals_top_patches_channel_by_channel(layer, k,
                                                                                 batch_size):
    """Same tuples, same order, for every channel; the ReLU layers hold many tied zeros, so
    the tie rule (lower image index, then row, then column) is exercised too."""
    model, images = _model(), _images(count=13)
    found = top_patches_per_channel(model, images, layer, k=k, batch_size=batch_size)
    channels = next(r for r in summary(model, (1, 28, 28)) if r.name == layer).output_shape[0]
    assert len(found) == channels
    for channel in range(channels):
        assert found[channel] == top_patches(model, images, layer, channel, k=k, batch_size=6)


def test_dead_channels_tie_everywhere_and_keep_the_first_positions():
    """A channel that is 0 everywhere (bias -100 before the ReLU): its top k are the first k
    positions of image 0, in order, as for top_patches."""
    model, images = _model(), _images(count=5)
    conv = layers(model)[0][1]
    conv.bias.data[5] = -100.0
    found = top_patches_per_channel(model, images, "relu1", k=30, batch_size=2)
    first = top_patches(model, images, "relu1", 5, k=30)
    assert found[5] == first
    assert [patch[0] for patch in first] == [0] * 30 and {p[-1] for p in first} == {0.0}


def test_fewer_positions_than_k_returns_them_all():
    model, images = _model(), _images(count=1)
    found = top_patches_per_channel(model, images, "maxpool2", k=100)
    assert all(len(patches) == 49 for patches in found)


def test_per_channel_checks_its_arguments():
    model, images = _model(), _images(count=2)
    with pytest.raises(ValueError, match="top_patches_per_channel: layer 'linear1' has no "
                                         "spatial output"):
        top_patches_per_channel(model, images, "linear1")
    with pytest.raises(ValueError, match="k must be a positive int, got 0"):
        top_patches_per_channel(model, images, "conv1", k=0)
    with pytest.raises(ValueError, match="no layer 'conv9'"):
        top_patches_per_channel(model, images, "conv9")


def test_crops_are_the_boxes_kept_in_place_in_a_receptive_field_window():
    """Every box of maxpool2 (receptive field 10): the window holds the box's pixels exactly,
    at the offset where the unclipped window would have them; the rest is the fill."""
    images = np.arange(2 * 3 * 28 * 28, dtype=np.float64).reshape(2, 3, 28, 28)
    patches = [(1, 0, 0, 6, 8, 1.0),    # clipped at the top (4 rows) and left (2 columns)
               (0, 5, 9, 15, 19, 1.0),  # inside the image
               (1, 22, 25, 28, 28, 1.0)]  # clipped at the bottom and the right
    crops = crop_patches(images, patches, (10, 10), fill=-1.0)
    assert crops.shape == (3, 3, 10, 10)
    np.testing.assert_array_equal(crops[0, :, 4:, 2:], images[1, :, 0:6, 0:8])
    assert np.all(crops[0, :, :4] == -1) and np.all(crops[0, :, :, :2] == -1)
    np.testing.assert_array_equal(crops[1], images[0, :, 5:15, 9:19])
    np.testing.assert_array_equal(crops[2, :, :6, :3], images[1, :, 22:28, 25:28])
    assert np.all(crops[2, :, 6:] == -1) and np.all(crops[2, :, :, 3:] == -1)


def test_crops_of_real_top_patches_hold_the_activating_pixels():
    """The crops of a layer's top patches: each crop's inside pixels are its box's pixels."""
    model, images = _model(), _images(count=4)
    record = next(r for r in summary(model, (1, 28, 28)) if r.name == "conv2")
    patches = top_patches_per_channel(model, images, "conv2", k=9)[3]
    crops = crop_patches(images, patches, record.receptive_field, fill=np.nan)
    for crop, (n, y0, x0, y1, x1, _) in zip(crops, patches, strict=True):
        inside = crop[~np.isnan(crop)]
        np.testing.assert_array_equal(inside, images[n, :, y0:y1, x0:x1].ravel())
