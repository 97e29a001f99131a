"""Module and Sequential: registration by attribute, traversal, modes, dtype conversion, and
state dicts with PyTorch's keys and shapes, loading across in both directions."""

from collections import OrderedDict

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import nn
from torch_mirror import to_numpy_state, torch_twin


class Block(nn.Module):
    """A custom module: a submodule, a parameter, a buffer and a plain attribute."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.register_buffer("count", np.zeros(1, dtype=np.int64))
        self.note = "not registered"

    def forward(self, x):
        return self.conv(x) * self.scale.reshape(1, 2, 1, 1)


def small_model():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()), nn.Flatten(), nn.Linear(4, 3),
    )


def test_registration_by_attribute():
    block = Block()
    assert [name for name, _ in block.named_parameters()] == ["scale", "conv.weight", "conv.bias"]
    assert [name for name, _ in block.named_buffers()] == ["count"]
    assert list(block.children()) == [block.conv]
    assert [name for name, _ in block.named_modules()] == ["", "conv"]
    assert list(block.state_dict()) == ["scale", "count", "conv.weight", "conv.bias"]
    assert block.note == "not registered" and "note" not in block.state_dict()
    block.conv = nn.Conv2d(1, 2, 5)  # reassigning replaces the submodule
    assert block.conv.kernel_size == (5, 5)
    with pytest.raises(TypeError, match="parameter 'scale' must be a Parameter or None"):
        block.scale = np.ones(2)
    del block.conv
    assert [name for name, _ in block.named_parameters()] == ["scale"]


def test_module_needs_init_before_assignment():
    class Forgetful(nn.Module):
        def __init__(self):
            self.linear = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="call Module.__init__"):
        Forgetful()


def test_shared_parameters_are_listed_once():
    linear = nn.Linear(3, 3)
    model = nn.Sequential(linear, nn.ReLU(), linear)
    assert len(list(model.parameters())) == 2
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_sequential_is_indexable_iterable_and_sliceable():
    model = small_model()
    assert len(model) == 7
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Linear)
    assert [type(m).__name__ for m in model][:3] == ["Conv2d", "BatchNorm2d", "ReLU"]
    head = model[5:]
    assert isinstance(head, nn.Sequential) and list(head.state_dict()) == ["6.weight", "6.bias"]
    with pytest.raises(IndexError):
        model[7]
    named = nn.Sequential(OrderedDict(features=nn.Flatten(), classifier=nn.Linear(4, 2)))
    assert list(named.state_dict()) == ["classifier.weight", "classifier.bias"]
    grown = nn.Sequential().append(nn.Linear(2, 2))
    assert list(grown.state_dict()) == ["0.weight", "0.bias"]


def test_train_eval_reach_every_submodule_and_zero_grad_clears():
    model = small_model()
    assert all(m.training for m in model.modules())
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = cnnlab.Tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32))
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_double_and_back_converts_parameters_and_float_buffers_only():
    model = small_model().double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    state = model.state_dict()
    assert state["1.running_mean"].dtype == np.float64
    assert state["1.num_batches_tracked"].dtype == np.int64
    x = cnnlab.Tensor(np.ones((2, 1, 6, 6)))
    assert model(x).dtype == np.float64
    assert all(p.dtype == np.float32 for p in model.float().parameters())
    with pytest.raises(ValueError, match="floating dtype"):
        model.to(np.int32)


def test_state_dict_keys_and_shapes_are_pytorchs_and_load_both_ways():
    model = small_model()
    twin = torch_twin(model, torch.float32)
    ours, theirs = model.state_dict(), twin.state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == tuple(theirs[k].shape) for k in ours)
    # torch -> cnnlab, straight from torch tensors (numpy.asarray converts them)
    twin_trained = torch_twin(small_model(), torch.float32)
    for parameter in twin_trained.parameters():
        torch.nn.init.normal_(parameter)
    twin_trained.train()(torch.randn(4, 1, 6, 6))  # move the running statistics
    model.load_state_dict(twin_trained.state_dict())
    for key, value in to_numpy_state(twin_trained).items():
        assert np.array_equal(model.state_dict()[key], value), key
        assert model.state_dict()[key].dtype == value.dtype
    model.eval(), twin_trained.eval()
    x = np.random.default_rng(1).standard_normal((3, 1, 6, 6)).astype(np.float32)
    with torch.no_grad():
        expected = twin_trained(torch.from_numpy(x)).numpy()
    assert np.allclose(model(cnnlab.Tensor(x)).data, expected, rtol=1e-4, atol=1e-5)


def test_state_dict_returns_copies():
    model = nn.Linear(2, 2)
    state = model.state_dict()
    state["weight"][...] = 0
    assert not np.all(model.weight.data == 0)


def test_load_state_dict_lists_missing_unexpected_and_mismatched_keys():
    model = small_model()
    state = model.state_dict()
    del state["0.bias"]
    state["extra.weight"] = np.zeros(3)
    state["6.weight"] = np.zeros((3, 5))
    before = model.state_dict()
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing keys ['0.bias']" in message
    assert "unexpected keys ['extra.weight']" in message
    assert "6.weight: got (3, 5), expected (3, 4)" in message
    assert "\n" not in message
    for key, value in model.state_dict().items():  # nothing was changed
        assert np.array_equal(value, before[key])
    # strict=False tolerates missing and unexpected keys, never a wrong shape
    del state["6.weight"]
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ["0.bias", "6.weight"]
    assert result.unexpected_keys == ["extra.weight"]


def test_load_state_dict_keeps_the_module_dtype():
    model = nn.Linear(2, 2)
    model.load_state_dict({"weight": np.ones((2, 2)), "bias": [1, 2]})
    assert model.weight.dtype == np.float32 and model.bias.dtype == np.float32
    assert np.array_equal(model.bias.data, [1, 2])


def test_load_state_dict_refuses_a_value_of_another_kind_naming_key_and_dtypes():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    before = model.state_dict()
    # PyTorch truncates a float count silently (2.7 -> 2); cnnlab refuses, changing nothing.
    twin = torch.nn.BatchNorm1d(2)
    twin.load_state_dict({**twin.state_dict(), "num_batches_tracked": torch.tensor(2.7)})
    assert twin.num_batches_tracked.item() == 2
    bad = {
        **before,
        "1.num_batches_tracked": np.array(2.7, dtype=np.float32),
        "0.bias": np.array([True, False]),
        "0.weight": np.full((2, 3), 2**24 + 1),  # no float32 holds it exactly
    }
    with pytest.raises(ValueError) as error:
        model.load_state_dict(bad)
    message = str(error.value)
    assert "1.num_batches_tracked: expected int64, found float32" in message
    assert "0.bias: expected float32, found bool" in message
    assert "0.weight: expected float32, found int64" in message
    for key, value in model.state_dict().items():
        assert np.array_equal(value, before[key]) and value.dtype == before[key].dtype


def test_load_state_dict_converts_within_a_kind_and_exact_integers_into_floats():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    state = {key: np.asarray(value) for key, value in model.state_dict().items()}
    state["0.weight"] = np.arange(6.0).reshape(2, 3)  # float64 into float32
    state["0.bias"] = [3, -4]  # Python ints, exact in float32
    state["1.num_batches_tracked"] = np.array(7, dtype=np.int32)
    model.load_state_dict(state)
    assert model[0].weight.dtype == np.float32 and model[0].bias.data.tolist() == [3.0, -4.0]
    assert model[1].num_batches_tracked.dtype == np.int64 and model[1].num_batches_tracked == 7
    model.double().load_state_dict({**state, "0.weight": np.ones((2, 3), np.float32)})
    assert model[0].weight.dtype == np.float64


def test_parameter_is_a_leaf_tensor_that_requires_grad():
    parameter = nn.Parameter([1.0, 2.0])
    assert isinstance(parameter, cnnlab.Tensor) and parameter.requires_grad
    assert parameter.dtype == np.float32 and parameter.is_leaf
    assert repr(parameter).startswith("Parameter containing:\ntensor(")
    out = parameter * 2
    assert type(out) is cnnlab.Tensor
