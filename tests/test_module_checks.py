"""Module's registry when an attribute changes kind (parameter, submodule, buffer, plain value),
compared with torch.nn.Module doing the same, and the errors of a module used wrongly."""

import numpy as np
import pytest
import torch

from cnnlab import nn


class Holder(nn.Module):
    """A module with one attribute of each kind: a parameter, a submodule, a buffer, a value."""

    def __init__(self, rng):
        super().__init__()
        self.weight = nn.Parameter(rng.standard_normal(3).astype(np.float32))
        self.inner = nn.Linear(2, 2)
        self.register_buffer("stat", np.zeros(2, dtype=np.float32))
        self.note = 5


class TorchHolder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3))
        self.inner = torch.nn.Linear(2, 2)
        self.register_buffer("stat", torch.zeros(2))
        self.note = 5


def registry(module):
    """What a module holds: its state-dict keys, named parameters and buffers, in order."""
    return (list(module.state_dict()), [name for name, _ in module.named_parameters()],
            [name for name, _ in module.named_buffers()])


def test_a_module_without_forward_says_which_class():
    class Empty(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty"):
        Empty()(np.zeros(1))


# name, and what replaces it (torch refuses a module in a parameter's slot: see below)
REPLACEMENTS = [("inner", "parameter"), ("note", "parameter"), ("note", "module"),
                ("stat", "parameter"), ("stat", "module")]


@pytest.mark.parametrize("name, kind", REPLACEMENTS)
def test_an_attribute_that_changes_kind_is_registered_once_as_torch(rng, name, kind):
    ours, theirs = Holder(rng), TorchHolder()
    if kind == "module":
        new, new_torch = nn.Linear(2, 1), torch.nn.Linear(2, 1)
    else:
        new = nn.Parameter(rng.standard_normal(4).astype(np.float32))
        new_torch = torch.nn.Parameter(torch.zeros(4))
    setattr(ours, name, new)
    setattr(theirs, name, new_torch)
    assert getattr(ours, name) is new
    assert registry(ours) == (list(theirs.state_dict()),
                              [n for n, _ in theirs.named_parameters()],
                              [n for n, _ in theirs.named_buffers()])
    assert name not in ours.__dict__


def test_a_module_assigned_over_a_parameter_replaces_it(rng):
    """torch raises TypeError here; cnnlab lets the module take the parameter's place."""
    holder = Holder(rng)
    linear = nn.Linear(2, 1)
    holder.weight = linear
    assert holder.weight is linear
    assert registry(holder) == (
        ["stat", "inner.weight", "inner.bias", "weight.weight", "weight.bias"],
        ["inner.weight", "inner.bias", "weight.weight", "weight.bias"], ["stat"])


def test_register_buffer_replaces_a_parameter_of_that_name(rng):
    holder = Holder(rng)
    holder.register_buffer("weight", np.ones(3, dtype=np.float32))
    keys, parameters, buffers = registry(holder)
    assert "weight" not in parameters
    assert buffers == ["stat", "weight"]
    assert keys.count("weight") == 1
    np.testing.assert_array_equal(holder.weight, np.ones(3))


def test_register_buffer_replaces_a_submodule_and_a_value(rng):
    holder = Holder(rng)
    holder.register_buffer("inner", np.ones(2, dtype=np.float32))
    holder.register_buffer("note", np.full(2, 7.0, dtype=np.float32))
    assert list(holder.state_dict()) == ["weight", "stat", "inner", "note"]
    assert list(holder.children()) == []
    np.testing.assert_array_equal(holder.note, [7.0, 7.0])


def test_register_parameter_replaces_a_value(rng):
    holder = Holder(rng)
    parameter = nn.Parameter(np.ones(2, dtype=np.float32))
    holder.register_parameter("note", parameter)
    assert holder.note is parameter
    assert [name for name, _ in holder.named_parameters()][:2] == ["weight", "note"]


def test_add_module_replaces_a_parameter_and_a_value(rng):
    holder = Holder(rng)
    first, second = nn.Linear(2, 1), nn.ReLU()
    holder.add_module("weight", first)
    holder.add_module("note", second)
    assert holder.weight is first and holder.note is second
    assert [name for name, _ in holder.named_parameters()] == [
        "inner.weight", "inner.bias", "weight.weight", "weight.bias"]
    assert list(holder.children()) == [holder.inner, first, second]


def test_a_submodule_slot_takes_none_as_torch(rng):
    ours, theirs = Holder(rng), TorchHolder()
    ours.inner = None
    theirs.inner = None
    assert ours.inner is None
    assert registry(ours) == (list(theirs.state_dict()),
                              [n for n, _ in theirs.named_parameters()],
                              [n for n, _ in theirs.named_buffers()])
    ours.add_module("extra", None)
    assert list(ours.children()) == []
    assert ours.extra is None


@pytest.mark.parametrize("value", [3, np.zeros(2), "text"])
def test_a_submodule_slot_refuses_what_is_not_a_module(rng, value):
    holder = Holder(rng)
    with pytest.raises(TypeError, match="inner"):
        holder.inner = value
    with pytest.raises(TypeError, match="must be a Module"):
        holder.add_module("other", value)
    with pytest.raises(TypeError):
        TorchHolder().inner = value


def test_a_missing_attribute_raises_attribute_error_naming_it(rng):
    holder = Holder(rng)
    with pytest.raises(AttributeError, match="'Holder' object has no attribute 'missing'"):
        _ = holder.missing
    assert not hasattr(holder, "missing")


def test_del_removes_a_plain_attribute_and_each_registered_kind(rng):
    holder = Holder(rng)
    for name in ("note", "weight", "inner", "stat"):
        delattr(holder, name)
        assert not hasattr(holder, name)
    assert registry(holder) == ([], [], [])
    with pytest.raises(AttributeError):
        del holder.note


def test_a_shared_module_and_a_tied_parameter_are_listed_once_as_torch():
    first, second = nn.Linear(2, 2), nn.Linear(2, 2)
    second.weight = first.weight
    ours = nn.Sequential(first, second, first)
    torch_first, torch_second = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    torch_second.weight = torch_first.weight
    theirs = torch.nn.Sequential(torch_first, torch_second, torch_first)
    assert [name for name, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert [name for name, _ in ours.named_parameters()] == [
        n for n, _ in theirs.named_parameters()]
    assert len(list(ours.parameters())) == 3


def test_named_buffers_recurse_as_torch(rng):
    ours, theirs = Holder(rng), TorchHolder()
    ours.norm, theirs.norm = nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    for recurse in (True, False):
        assert [name for name, _ in ours.named_buffers(recurse=recurse)] == [
            n for n, _ in theirs.named_buffers(recurse=recurse)]
    assert [name for name, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert len(list(ours.buffers())) == 4
    assert [name for name, _ in ours.named_buffers("top")] == [
        "top.stat", "top.norm.running_mean", "top.norm.running_var",
        "top.norm.num_batches_tracked"]


def test_apply_visits_children_first_then_self_as_torch():
    ours = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 1))
    theirs = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()),
                                 torch.nn.Linear(2, 1))
    visited, torch_visited = [], []
    assert ours.apply(lambda module: visited.append(type(module).__name__)) is ours
    theirs.apply(lambda module: torch_visited.append(type(module).__name__))
    assert visited == torch_visited == ["Linear", "ReLU", "Sequential", "Linear", "Sequential"]


def test_to_converts_gradients_with_the_parameters(rng):
    linear = nn.Linear(3, 2)
    linear.weight.grad = rng.standard_normal((2, 3)).astype(np.float32)
    expected = linear.weight.grad.astype(np.float64)
    linear.double()
    assert linear.weight.grad.dtype == np.float64 and linear.bias.grad is None
    np.testing.assert_array_equal(linear.weight.grad, expected)
    linear.float()
    assert linear.weight.grad.dtype == linear.weight.dtype == np.float32


def test_sequential_indexes_from_both_ends_and_names_an_index_out_of_range():
    layers = [nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)]
    model = nn.Sequential(*layers)
    assert [model[i] for i in range(-3, 3)] == layers + layers
    for index in (3, -4):
        with pytest.raises(IndexError, match=f"Sequential: index {index} out of range for 3"):
            model[index]
