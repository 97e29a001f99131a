"""cnnlab.explain against PyTorch on the same weights, and top patches against brute force.

The PyTorch side is written the way its users write these methods (autograd on the input, a
forward hook on the layer for Grad-CAM, F.interpolate, one forward pass per occluded image),
on the torch twin of the cnnlab model (tests/torch_mirror.py). float32 throughout for the
oracle comparisons, relative error <= 1e-4 (max |ours - theirs| / max |theirs|).
"""

import importlib
import pathlib

import numpy as np
import pytest
import scipy.ndimage
import torch

import cnnlab
from cnnlab import nn
from cnnlab.analysis import summary
from cnnlab.explain import (
    feature_visualisation,
    gaussian_blur,
    grad_cam,
    layer_activations,
    layer_gradient,
    occlusion,
    resize_bilinear,
    saliency,
    split_at,
    top_patches,
)
from cnnlab.models import build_model
from torch_mirror import torch_twin

from helpers import relative_error

TOLERANCE = 1e-4
BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """PyTorch's small forward passes are several times slower on two busy cores than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name="cnn", seed=0, **options):
    """A model of the family with random weights (and random BatchNorm statistics), in eval."""
    rng = np.random.default_rng(seed)
    model = build_model(name, generator=rng, **options)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean = rng.normal(0, 0.2, module.num_features).astype(np.float32)
            module.running_var = rng.uniform(0.5, 2, module.num_features).astype(np.float32)
    return model.eval()


def _images(count=4, seed=1, shape=(1, 28, 28)):
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def _torch_target(logits, target):
    if target is None:
        return logits.argmax(dim=1)
    return torch.as_tensor(np.broadcast_to(target, (logits.shape[0],)).copy())


def torch_saliency(twin, images, target):
    x = torch.tensor(images, requires_grad=True)
    logits = twin(x)
    chosen = _torch_target(logits, target)
    logits[torch.arange(len(images)), chosen].sum().backward()
    return x.grad.abs().amax(dim=1).numpy()


def torch_grad_cam(twin, images, path, target, upsample):
    kept = {}

    def hook(module, inputs, output):
        output.retain_grad()
        kept["A"] = output

    handle = twin.get_submodule(path).register_forward_hook(hook)
    logits = twin(torch.tensor(images))
    handle.remove()
    chosen = _torch_target(logits, target)
    logits[torch.arange(len(images)), chosen].sum().backward()
    activation, gradient = kept["A"], kept["A"].grad
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1))
    if upsample:
        cam = torch.nn.functional.interpolate(cam[:, None], size=images.shape[2:],
                                              mode="bilinear", align_corners=False)[:, 0]
    return cam.detach().numpy()


def torch_occlusion(twin, images, target, patch, stride, fill):
    with torch.no_grad():
        x = torch.tensor(images)
        probabilities = torch.softmax(twin(x), dim=1)
        chosen = _torch_target(probabilities, target)
        rows = torch.arange(len(images))
        base = probabilities[rows, chosen]
        out_h = (images.shape[2] - patch) // stride + 1
        out_w = (images.shape[3] - patch) // stride + 1
        drop = np.zeros((len(images), out_h, out_w), dtype=np.float32)
        for i in range(out_h):
            for j in range(out_w):
                occluded = x.clone()
                rows_hidden = slice(i * stride, i * stride + patch)
                occluded[:, :, rows_hidden, j * stride : j * stride + patch] = fill
                drop[:, i, j] = (base - torch.softmax(twin(occluded), dim=1)[rows, chosen]).numpy()
    return drop


@pytest.mark.parametrize("target", [None, 3, np.array([0, 9, 2, 2])])
@pytest.mark.parametrize("name", ["cnn", "cnn-bn"])
def test_saliency_matches_torch(name, target):
    model, images = _model(name), _images()
    ours = saliency(model, images, target)
    assert ours.shape == (4, 28, 28) and ours.dtype == np.float32
    assert relative_error(ours, torch_saliency(torch_twin(model, torch.float32), images,
                                               target)) <= TOLERANCE


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("layer", ["conv1", "relu1", "maxpool1", "conv2", "relu2", "maxpool2"])
def test_grad_cam_matches_torch_raw_and_upsampled(layer, upsample):
    model, images = _model(), _images()
    record = next(r for r in summary(model, images.shape[1:]) if r.name == layer)
    ours = grad_cam(model, images, layer, target=np.array([1, 5, 7, 0]), upsample=upsample)
    theirs = torch_grad_cam(torch_twin(model, torch.float32), images, record.path,
                            np.array([1, 5, 7, 0]), upsample)
    assert ours.shape == ((4, 28, 28) if upsample else (4, *record.output_shape[1:]))
    assert theirs.max() > 0  # the comparison is not between two maps of zeros
    assert relative_error(ours, theirs) <= TOLERANCE


def test_grad_cam_on_a_batch_norm_model_with_the_predicted_class():
    model, images = _model("cnn-bn"), _images(seed=3)
    record = next(r for r in summary(model, images.shape[1:]) if r.name == "relu4")
    theirs = torch_grad_cam(torch_twin(model, torch.float32), images, record.path, None, True)
    assert relative_error(grad_cam(model, images, "relu4"), theirs) <= TOLERANCE


@pytest.mark.parametrize(("size_in", "size_out"),
                         [((7, 7), (28, 28)), ((5, 3), (13, 8)), ((14, 14), (28, 28)),
                          ((9, 6), (4, 5)), ((1, 1), (3, 2)), ((6, 6), (6, 6))])
def test_resize_bilinear_is_torch_interpolate_without_aligned_corners(size_in, size_out):
    maps = np.random.default_rng(0).standard_normal((3, *size_in)).astype(np.float32)
    theirs = torch.nn.functional.interpolate(torch.tensor(maps)[:, None], size=size_out,
                                             mode="bilinear", align_corners=False)[:, 0]
    ours = resize_bilinear(maps, size_out)
    assert ours.dtype == np.float32
    assert relative_error(ours, theirs.numpy()) <= 1e-6


@pytest.mark.parametrize(("patch", "stride", "fill", "target", "batch_size"),
                         [(4, 2, 0.0, None, 256), (3, 3, -1.5, 4, 7), (5, 3, 0.5, None, 100)])
def test_occlusion_matches_one_torch_pass_per_patch_position(patch, stride, fill, target,
                                                             batch_size):
    model, images = _model(), _images(count=3) * 2
    ours = occlusion(model, images, target, patch=patch, stride=stride, fill=fill,
                     batch_size=batch_size)
    theirs = torch_occlusion(torch_twin(model, torch.float32), images, target, patch, stride,
                             fill)
    assert ours.shape == theirs.shape == (3, (28 - patch) // stride + 1, (28 - patch) // stride + 1)
    assert np.abs(theirs).max() > 1e-3
    assert relative_error(ours, theirs) <= TOLERANCE


# ----- the two halves ---------------------------------------------------------------------------
def test_the_halves_compose_to_the_model_at_every_layer_and_share_its_weights():
    model, images = _model("cnn-bn"), _images(count=2)
    with cnnlab.no_grad():
        full = model(cnnlab.Tensor(images)).data
        for record in summary(model, images.shape[1:]):
            split = split_at(model, record.name, images.shape[1:])
            assert split.record.name == record.name
            middle = split.head(cnnlab.Tensor(images))
            assert middle.shape[1:] == record.output_shape
            np.testing.assert_array_equal(split.tail(middle).data, full)
    first_conv = split_at(model, "conv1", images.shape[1:]).head[0]
    assert first_conv is model[0]


def test_layer_gradient_is_the_gradient_of_the_chosen_scores():
    """d score / d A checked by central differences in float64 on a few elements of A (a
    conv output: values away from the kinks of ReLU and max pooling)."""
    model, images = _model().double(), _images(count=2).astype(np.float64)
    activation, gradient, logits, target = layer_gradient(model, images, "conv2", target=[4, 6])
    assert activation.shape == gradient.shape == (2, 64, 14, 14)
    np.testing.assert_array_equal(target, [4, 6])
    tail = split_at(model, "conv2", images.shape[1:]).tail
    rng = np.random.default_rng(0)
    for _ in range(5):
        index = tuple(rng.integers(0, size) for size in activation.shape)
        step = np.zeros_like(activation)
        step[index] = 1e-6
        with cnnlab.no_grad():
            up = tail(cnnlab.Tensor(activation + step)).data[index[0], target[index[0]]]
            down = tail(cnnlab.Tensor(activation - step)).data[index[0], target[index[0]]]
        assert abs((up - down) / 2e-6 - gradient[index]) <= 1e-6 * max(1, abs(gradient[index]))


def test_the_model_is_left_as_it_was():
    model, images = _model(), _images()
    model[0].weight.grad = np.full(model[0].weight.shape, 7.0, dtype=np.float32)
    before = {key: value.copy() for key, value in model.state_dict().items()}
    saliency(model, images)
    grad_cam(model, images, "conv2")
    occlusion(model, images)
    assert all(parameter.requires_grad for parameter in model.parameters())
    assert np.all(model[0].weight.grad == 7.0)
    assert all(parameter.grad is None for parameter in list(model.parameters())[1:])
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_bad_input_is_a_value_error_naming_the_op_and_the_values():
    model, images = _model(), _images()
    with pytest.raises(ValueError, match=r"split_at: no layer 'conv9'.*conv1, relu1, maxpool1"):
        grad_cam(model, images, "conv9")
    with pytest.raises(ValueError, match=r"grad_cam: layer 'linear1' must have a spatial"):
        grad_cam(model, images, "linear1")
    with pytest.raises(ValueError, match=r"saliency: target class ids must lie in \[0, 10\)"):
        saliency(model, images, target=10)
    with pytest.raises(ValueError, match=r"occlusion: expected target None, an int or an int "
                                         r"array of shape \(4,\)"):
        occlusion(model, images, target=np.array([1, 2]))
    with pytest.raises(ValueError, match=r"saliency: expected images as a float array of shape "
                                         r"\(N, C, H, W\), got float32 of shape \(28, 28\)"):
        saliency(model, images[0, 0])
    with pytest.raises(ValueError, match=r"occlusion: output height .* = \(28 - 30 \+ 0\)/2"):
        occlusion(model, images, patch=30)
    with pytest.raises(ValueError, match=r"top_patches: channel must be an int in \[0, 32\)"):
        top_patches(model, images, "conv1", 32)
    with pytest.raises(ValueError, match=r"saliency: expected a model in eval mode, found "
                                         r"Sequential in training mode; call model.eval\(\)"):
        saliency(model.train(), images)


def test_a_container_with_its_own_forward_cannot_be_split():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    model = nn.Sequential(Residual(), nn.Flatten(), nn.Linear(784, 10)).eval()
    with pytest.raises(ValueError, match=r"split_at: 0 \(Residual\) has its own forward"):
        grad_cam(model, _images(), "conv1")


# ----- top patches ------------------------------------------------------------------------------
def _brute_force_top(activations, channel, k):
    """Every (value, n, i, j) of the channel, sorted by value (ties: n, i, j), the first k."""
    entries = []
    count, _, height, width = activations.shape
    for n in range(count):
        for i in range(height):
            for j in range(width):
                entries.append((-activations[n, channel, i, j], n, i, j))
    entries.sort()
    return [(n, i, j, -value) for value, n, i, j in entries[:k]]


@pytest.mark.parametrize(("layer", "channel", "k"),
                         [("conv1", 3, 9), ("relu1", 0, 5), ("maxpool1", 31, 9),
                          ("conv2", 10, 12), ("relu2", 63, 9), ("maxpool2", 7, 1)])
def test_top_patches_are_the_largest_activations_found_by_brute_force(layer, channel, k):
    model, images = _model().double(), _images(count=20).astype(np.float64)
    record = next(r for r in summary(model, images.shape[1:]) if r.name == layer)
    twin, kept = torch_twin(model), {}

    def hook(module, inputs, output):
        kept["A"] = output.detach().numpy()

    twin.get_submodule(record.path).register_forward_hook(hook)
    with torch.no_grad():
        twin(torch.tensor(images))
    expected = _brute_force_top(kept["A"], channel, k)
    found = top_patches(model, images, layer, channel, k=k, batch_size=6)
    assert [n for n, *_ in found] == [n for n, *_ in expected]
    assert [value for *_, value in found] == pytest.approx([v for *_, v in expected], rel=1e-12)
    boxes = _boxes_by_perturbation(layer, channel)
    for (_, i, j, _), (_, y0, x0, y1, x1, _) in zip(expected, found, strict=True):
        assert (y0, x0, y1, x1) == boxes[(i, j)]


def _positive_model():
    """The default CNN with every weight positive and every bias zero, in float64: a large
    value at one input pixel of a black image raises exactly the outputs that see that pixel
    (each conv adds a positive multiple of it, ReLU passes it, max pooling picks it, and every
    other output stays 0)."""
    model = _model().double()
    model.load_state_dict({key: np.abs(value) + 0.01 if key.endswith("weight") else 0 * value
                           for key, value in model.state_dict().items()})
    return model


def _boxes_by_perturbation(layer, channel, image_shape=(1, 28, 28)):
    """Each output's receptive field found by brute force, one image per input pixel.
    Returns {(i, j): (y0, x0, y1, x1)}, y1 and x1 exclusive, after checking that the pixels
    output (i, j) depends on fill that box."""
    _, height, width = image_shape
    pixels = np.zeros((height * width + 1, *image_shape))  # the last one stays black
    pixels[np.arange(height * width), 0, *np.divmod(np.arange(height * width), width)] = 1e3
    outputs = layer_activations(_positive_model(), pixels, layer)[:, channel]
    assert np.all(outputs[-1] == 0)
    seen = (outputs[:-1] > 0).reshape(height, width, *outputs.shape[1:])
    boxes = {}
    for i in range(seen.shape[2]):
        for j in range(seen.shape[3]):
            rows, columns = np.nonzero(seen[:, :, i, j])
            box = (rows.min(), columns.min(), rows.max() + 1, columns.max() + 1)
            assert seen[box[0] : box[2], box[1] : box[3], i, j].all()
            boxes[(i, j)] = tuple(int(v) for v in box)
    return boxes


@pytest.mark.parametrize("layer", ["conv1", "relu1", "maxpool1", "conv2", "relu2", "maxpool2"])
def test_every_patch_box_is_the_receptive_field_found_by_perturbation(layer):
    """All outputs of one image with distinct values (positive weights, a positive image):
    the box top_patches gives each (clipped to the image) is exactly the pixels it sees."""
    model = _positive_model()
    image = np.random.default_rng(0).uniform(0.5, 1, (1, 1, 28, 28))
    activations = layer_activations(model, image, layer)[0, 0]
    assert len(np.unique(activations)) == activations.size
    found = top_patches(model, image, layer, 0, k=activations.size)
    expected = _boxes_by_perturbation(layer, 0)
    assert len(found) == len(expected)
    for _, y0, x0, y1, x1, value in found:
        (i,), (j,) = np.nonzero(activations == value)
        assert (y0, x0, y1, x1) == expected[(i, j)]


def test_top_patches_break_ties_by_image_index_and_stop_at_every_position():
    model = _model().double()
    images = np.repeat(_images(count=1), 3, axis=0).astype(np.float64)  # every value tied x3
    found = top_patches(model, images, "maxpool2", 0, k=1000, batch_size=3)
    assert len(found) == 3 * 7 * 7
    for first in range(0, 30, 3):
        same = found[first : first + 3]
        assert [n for n, *_ in same] == [0, 1, 2]
        assert len({tuple(patch[1:]) for patch in same}) == 1
    values = [value for *_, value in found]
    assert values[0] > 0 and values == sorted(values, reverse=True)


# ----- feature visualisation ------------------------------------------------------------------
def test_feature_visualisation_climbs_its_objective_reproducibly_within_bounds():
    model = _model()

    def visualise(seed, steps):
        return feature_visualisation(model, "conv2", [0, 5, 5], (1, 28, 28),
                                     np.random.default_rng(seed), steps=steps, bounds=(-1, 2))

    first, again, other = visualise(7, 16), visualise(7, 16), visualise(8, 16)
    assert first.shape == (3, 1, 28, 28) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= -1 and first.max() <= 2

    def objective(images):
        return layer_activations(model, images, "conv2")[[0, 1, 2], [0, 5, 5]].mean(axis=(1, 2))

    assert np.all(objective(first) > objective(visualise(7, 0)) + 0.1)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.6])
def test_gaussian_blur_is_scipy_gaussian_filter_with_repeated_edges(sigma):
    images = np.random.default_rng(0).standard_normal((2, 3, 9, 12))
    expected = scipy.ndimage.gaussian_filter(images, (0, 0, sigma, sigma), mode="nearest",
                                             truncate=np.ceil(2 * sigma) / sigma)
    np.testing.assert_allclose(gaussian_blur(images, sigma), expected, rtol=1e-12, atol=1e-12)


def test_feature_visualisation_refuses_bad_channels_and_a_missing_generator():
    model = _model()
    with pytest.raises(ValueError, match=r"feature_visualisation: channels must be ints in "
                                         r"\[0, 64\) for layer 'relu2'"):
        feature_visualisation(model, "relu2", [64], (1, 28, 28), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"generator must be a numpy.random.Generator, got int"):
        feature_visualisation(model, "relu2", [0], (1, 28, 28), 0)


def test_the_explain_benchmark_prints_one_row_per_method(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    importlib.import_module("bench_explain").main(["--rounds", "1"])
    out = capsys.readouterr().out
    rows = [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| ")][1:]
    assert rows == ["| saliency", "| grad_cam relu2", "| occlusion 4/2"]
    assert "cores; Python" in out
