"""The model family: every member builds by name with its documented options, carries its
weights to PyTorch and back with identical outputs, rebuilds from its JSON config, rejects bad
names and options clearly, and the CNNs really learn a small image problem."""

import json

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import nn, optim
from cnnlab.models import MODELS, build_model, model_config, model_from_config, model_names
from torch_mirror import to_numpy_state, torch_twin

SHAPES = [(1, (28, 28)), (3, (32, 32))]


def batch(in_channels, input_size, count=4, seed=0):
    generator = np.random.default_rng(seed)
    return generator.standard_normal((count, in_channels, *input_size)).astype(np.float32)


def test_the_family_and_its_documented_defaults():
    assert model_names() == ["linear", "svm", "mlp", "cnn", "cnn-bn", "vit"]
    for name, spec in MODELS.items():
        assert spec.name == name and spec.summary
        assert spec.loss in ("cross_entropy", "hinge")
    assert MODELS["svm"].loss == "hinge"
    assert MODELS["cnn"].defaults["channels"] == (32, 64)
    cnn = build_model("cnn")
    kinds = [type(layer).__name__ for layer in cnn]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Flatten",
                     "Linear", "ReLU", "Dropout", "Linear"]
    assert cnn[0].padding == (1, 1) and cnn[3].out_channels == 64 and cnn[7].out_features == 128
    bn = [type(layer).__name__ for layer in build_model("cnn-bn")]
    assert bn.count("Conv2d") == 4 and bn.count("BatchNorm2d") == 4


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("in_channels, input_size", SHAPES)
def test_state_dict_round_trip_through_pytorch_gives_identical_outputs(name, in_channels,
                                                                       input_size):
    model = build_model(name, in_channels=in_channels, num_classes=7, input_size=input_size)
    x = batch(in_channels, input_size)
    if any(isinstance(layer, nn.BatchNorm2d) for layer in model):  # move the running stats
        model.train()(cnnlab.Tensor(batch(in_channels, input_size, 8, seed=1)))
    model.eval()
    expected = model(cnnlab.Tensor(x)).data
    assert expected.shape == (4, 7) and expected.dtype == np.float32

    twin = torch_twin(model, torch.float32).eval()  # cnnlab -> PyTorch
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    assert np.allclose(theirs, expected, rtol=1e-4, atol=1e-5)

    fresh = build_model(name, in_channels=in_channels, num_classes=7, input_size=input_size)
    fresh.load_state_dict(to_numpy_state(twin))  # PyTorch -> cnnlab
    assert np.array_equal(fresh.eval()(cnnlab.Tensor(x)).data, expected)


@pytest.mark.parametrize("name", list(MODELS))
def test_config_rebuilds_the_same_architecture_from_json(name):
    model = build_model(name, in_channels=3, num_classes=5, input_size=(16, 12))
    config = json.loads(json.dumps(model_config(model)))
    assert config["name"] == name and config["input_size"] == [16, 12]
    rebuilt = model_from_config(config)
    assert repr(rebuilt) == repr(model)
    shapes = {key: value.shape for key, value in model.state_dict().items()}
    assert {key: value.shape for key, value in rebuilt.state_dict().items()} == shapes
    assert rebuilt.config == model.config


def test_options_are_applied_and_recorded():
    model = build_model("cnn", channels=[8, 16, 32], kernel_size=5, batch_norm=True,
                        hidden_sizes=[64, 32], activation="leaky_relu", dropout=0.5)
    assert model.config["options"]["channels"] == [8, 16, 32]
    convs = [layer for layer in model if isinstance(layer, nn.Conv2d)]
    assert [conv.out_channels for conv in convs] == [8, 16, 32]
    assert all(conv.kernel_size == (5, 5) and conv.padding == (2, 2) for conv in convs)
    assert all(conv.bias is None for conv in convs)  # BatchNorm's shift replaces the bias
    assert sum(isinstance(layer, nn.LeakyReLU) for layer in model) == 5
    assert model(cnnlab.Tensor(batch(1, (28, 28)))).shape == (4, 10)  # 28 -> 14 -> 7 -> 3
    mlp = build_model("mlp", hidden_sizes=(), dropout=0.0)
    assert [type(layer).__name__ for layer in mlp] == ["Flatten", "Linear"]


def test_initialisation_follows_the_seed_or_the_generator():
    """manual_seed fixes every weight; a generator, given instead, fixes every weight by its own
    seed alone (each array differs for another seed) and draws nothing from the global one."""
    cnnlab.manual_seed(3)
    first = build_model("cnn").state_dict()
    cnnlab.manual_seed(3)
    second = build_model("cnn").state_dict()
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert not np.array_equal(first["0.weight"], build_model("cnn").state_dict()["0.weight"])
    same = [build_model("cnn", generator=np.random.default_rng(3)).state_dict() for _ in "ab"]
    other = build_model("cnn", generator=np.random.default_rng(4)).state_dict()
    assert list(same[0]) == list(first) and len(first) == 8  # 4 layers: weight and bias
    for key in first:
        np.testing.assert_array_equal(same[0][key], same[1][key])
        assert not np.array_equal(same[0][key], other[key]), key
    cnnlab.manual_seed(3)
    build_model("cnn", generator=np.random.default_rng(9))
    after = build_model("cnn").state_dict()
    assert all(np.array_equal(first[key], after[key]) for key in first)


def test_bad_names_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet'; known models: linear, svm, "
                                         "mlp, cnn, cnn-bn"):
        build_model("resnet")
    with pytest.raises(ValueError, match="model 'cnn' has no option width; its options: "
                                         "channels, kernel_size"):
        build_model("cnn", width=3)
    with pytest.raises(ValueError, match="model 'linear' has no option dropout; its options: none"):
        build_model("linear", dropout=0.5)
    with pytest.raises(ValueError, match="option channels must be a list of positive ints"):
        build_model("cnn", channels=[32, 0])
    with pytest.raises(ValueError, match="option activation must be one of relu"):
        build_model("mlp", activation="swish")
    with pytest.raises(ValueError, match="option dropout must be a probability"):
        build_model("cnn-bn", dropout=1.0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        build_model("cnn", kernel_size=4)
    with pytest.raises(ValueError, match=r"too small for 3 blocks of 2x2 pooling \(block 3\): "
                                         r"max_pool2d: output height \(H - K \+ 2P\)/S \+ 1 = "
                                         r"\(1 - 2 \+ 0\)/2 \+ 1 = 0 is not positive"):
        build_model("cnn", channels=(8, 8, 8), input_size=(4, 4))
    with pytest.raises(ValueError, match=r"\(block 3\): max_pool2d: output width "
                                         r"\(W - K \+ 2P\)/S \+ 1 = \(1 - 2 \+ 0\)/2"):
        build_model("cnn", channels=(8, 8, 8), input_size=(8, 4))
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        build_model("linear", num_classes=0)
    with pytest.raises(ValueError, match="was not made by build_model"):
        model_config(nn.Sequential(nn.Linear(2, 2)))


def bars(count, seed):
    """8x8 images of one bright bar on noise: class 0 horizontal, class 1 vertical, class 2 a
    diagonal; the position varies, so the network has to detect a shape, not a pixel."""
    generator = np.random.default_rng(seed)
    images = 0.3 * generator.standard_normal((count, 1, 8, 8)).astype(np.float32)
    labels = generator.integers(0, 3, count)
    for image, label, offset in zip(images, labels, generator.integers(1, 7, count),
                                    strict=True):
        if label == 0:
            image[0, offset, 1:7] += 2
        elif label == 1:
            image[0, 1:7, offset] += 2
        else:
            image[0, np.arange(8), (np.arange(8) + offset) % 8] += 2
    return images, labels


@pytest.mark.parametrize("name", ["cnn", "cnn-bn"])
def test_cnns_learn_a_small_shape_problem(name):
    cnnlab.manual_seed(0)
    images, labels = bars(96, seed=0)
    model = build_model(name, num_classes=3, input_size=(8, 8), channels=(8,),
                        hidden_sizes=(16,), dropout=0.0)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    criterion = nn.CrossEntropyLoss()
    for _ in range(60):
        optimizer.zero_grad()
        criterion(model(cnnlab.Tensor(images)), labels).backward()
        optimizer.step()
    model.eval()
    with cnnlab.no_grad():
        train_accuracy = (model(cnnlab.Tensor(images)).data.argmax(1) == labels).mean()
        test_images, test_labels = bars(96, seed=1)
        test_accuracy = (model(cnnlab.Tensor(test_images)).data.argmax(1) == test_labels).mean()
    assert train_accuracy == 1.0
    assert test_accuracy > 0.9
