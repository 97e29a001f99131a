"""cnnlab.optim against torch.optim: identical parameter trajectories over 25 steps in float64
for every option, the same state entries, resuming from state_dict, the bookkeeping of groups
and states, hyperparameters checked by name, and a real learning test (100% training accuracy
on a small non-linear problem) per optimiser. Learning-rate schedules: test_lr_scheduler.py."""

import json

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab import nn, optim

STEPS = 25

CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.01, "momentum": 0.5, "nesterov": True}),
    ("SGD", {"lr": 0.01, "momentum": 1.0, "weight_decay": 1.0}),  # ones: no special case
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-4}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 1.0}),
    ("Adam", {"lr": 0.02, "betas": (0.3, 0.9), "weight_decay": 0.05, "amsgrad": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "betas": (0.5, 0.9)}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.001, "alpha": 0.9, "eps": 1e-6}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.7}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.001, "weight_decay": 1.0, "momentum": 1.0}),
    ("RMSprop", {"lr": 0.005, "centered": True, "momentum": 0.5, "weight_decay": 0.1}),
]


def fake_gradient(value, step):
    """A deterministic, non-linear gradient of the current value (the same for both sides)."""
    return np.sin(3 * value + step) + 0.1 * value**3


def initial_values(dtype=np.float64):
    generator = np.random.default_rng(0)
    return [generator.standard_normal(shape).astype(dtype) for shape in [(5, 4), (4,), (3,)]]


def run_cnnlab(name, options, values, steps, optimizer_state=None, start=0):
    params = [nn.Parameter(value.copy()) for value in values]
    optimizer = getattr(optim, name)(params, **options)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    trajectory = []
    for step in range(start, start + steps):
        optimizer.zero_grad()
        for index, param in enumerate(params):
            if not (index == 2 and step % 3 == 1):  # sometimes a parameter has no gradient
                param.grad = fake_gradient(param.data, step)
        optimizer.step()
        trajectory.append([param.data.copy() for param in params])
    return trajectory, optimizer


def run_torch(name, options, values, steps):
    params = [torch.tensor(value.copy(), requires_grad=True) for value in values]
    optimizer = getattr(torch.optim, name)(params, foreach=False, **options)
    trajectory = []
    for step in range(steps):
        optimizer.zero_grad()
        for index, param in enumerate(params):
            if not (index == 2 and step % 3 == 1):
                param.grad = torch.from_numpy(fake_gradient(param.detach().numpy(), step))
        optimizer.step()
        trajectory.append([param.detach().numpy().copy() for param in params])
    return trajectory, optimizer


@pytest.mark.parametrize("name, options", CONFIGS, ids=lambda c: str(c))
def test_trajectory_matches_torch(name, options):
    values = initial_values()
    ours, _ = run_cnnlab(name, options, values, STEPS)
    theirs, _ = run_torch(name, options, values, STEPS)
    for step, (mine, reference) in enumerate(zip(ours, theirs, strict=True)):
        for a, b in zip(mine, reference, strict=True):
            assert np.allclose(a, b, rtol=1e-13, atol=1e-14), f"step {step}: {np.abs(a - b).max()}"
    assert not np.allclose(ours[-1][0], values[0])  # it moved


@pytest.mark.parametrize("name, options", CONFIGS, ids=lambda c: str(c))
def test_state_holds_what_torchs_holds(name, options):
    """The same entries per parameter (step counts included, buffers only where torch keeps
    them) with the same values, after steps in which one parameter sometimes has no gradient."""
    values = initial_values()
    _, ours = run_cnnlab(name, options, values, 4)
    _, theirs = run_torch(name, options, values, 4)
    ours, theirs = ours.state_dict()["state"], theirs.state_dict()["state"]
    assert sorted(ours) == sorted(theirs)
    for index, entry in theirs.items():
        expected = {field: value for field, value in entry.items() if value is not None}
        assert sorted(ours[index]) == sorted(expected), index
        for field, value in expected.items():
            np.testing.assert_allclose(ours[index][field], np.asarray(value), rtol=1e-12)


@pytest.mark.parametrize("name, options", CONFIGS[1::3], ids=lambda c: str(c))
def test_resuming_from_state_dict_is_exact_even_through_json(name, options):
    values = initial_values()
    uninterrupted, _ = run_cnnlab(name, options, values, 12)
    first, optimizer = run_cnnlab(name, options, values, 5)
    state = optimizer.state_dict()
    # the checkpoint stores arrays as arrays and the rest as JSON: int keys become strings
    arrays = {(k, f): v for k, entry in state["state"].items() for f, v in entry.items()}
    revived = {"state": {str(k): {} for k in state["state"]},
               "param_groups": json.loads(json.dumps(state["param_groups"]))}
    for (key, field), value in arrays.items():
        revived["state"][str(key)][field] = value
    second, _ = run_cnnlab(name, options, first[-1], 7, optimizer_state=revived, start=5)
    for a, b in zip(uninterrupted[-1], second[-1], strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_float32_parameters_stay_float32(name):
    params = [nn.Parameter(value) for value in initial_values(np.float32)]
    optimizer = getattr(optim, name)(params, lr=0.01, weight_decay=0.1)
    for step in range(3):
        for param in params:
            param.grad = fake_gradient(param.data, step)
        optimizer.step()
    assert all(param.dtype == np.float32 for param in params)
    assert all(value.dtype == np.float32 for entry in optimizer.state
               for value in entry.values() if isinstance(value, np.ndarray))


def test_zero_grad_sets_grads_to_none_and_groups_keep_their_own_lr():
    first, second = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = optim.SGD([{"params": [first]}, {"params": [second], "lr": 1.0}], lr=0.1)
    first.grad, second.grad = np.ones(2), np.ones(2)
    optimizer.step()
    assert np.allclose(first.data, 0.9) and np.allclose(second.data, 0.0)
    optimizer.zero_grad()
    assert first.grad is None and second.grad is None
    assert [len(group["params"]) for group in optimizer.state_dict()["param_groups"]] == [1, 1]


def test_hyperparameters_are_validated_by_name():
    params = [nn.Parameter(np.ones(2))]
    with pytest.raises(ValueError, match="SGD: invalid lr -1"):
        optim.SGD(params, lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(params, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta2"):
        optim.Adam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="RMSprop: invalid alpha"):
        optim.RMSprop(params, alpha=-0.5)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="appears twice"):
        optim.Adam(params + params)
    optimizer = optim.Adam(params)
    with pytest.raises(ValueError, match="group sizes"):
        optimizer.load_state_dict({"state": {}, "param_groups": [{"params": [0, 1]}]})


def test_coupled_weight_decay_is_l2_penalty_with_half_the_strength():
    """SGD(weight_decay = 2 * reg) takes the same step as SGD on loss + reg * sum(W^2)."""
    generator = np.random.default_rng(2)
    x, target = generator.standard_normal((8, 3)), generator.integers(0, 2, 8)
    reg, steps = 0.05, 5
    weights = []
    for use_penalty in (True, False):
        model = nn.Linear(3, 2, bias=False, generator=np.random.default_rng(9)).double()
        optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9,
                              weight_decay=0.0 if use_penalty else 2 * reg)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.CrossEntropyLoss()(model(cnnlab.Tensor(x)), target)
            if use_penalty:
                loss = loss + nn.l2_penalty(model, reg)
            loss.backward()
            optimizer.step()
        weights.append(model.weight.data)
    assert np.allclose(weights[0], weights[1], rtol=1e-12, atol=1e-14)


# ----- learning -------------------------------------------------------------------------------
def xor_blobs(count=120, seed=0):
    """Four clusters at the corners of a square; opposite corners share a class (XOR), so no
    linear classifier separates them and the hidden layer has to learn."""
    generator = np.random.default_rng(seed)
    corners = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    which = generator.integers(0, 4, count)
    points = corners[which] + 0.25 * generator.standard_normal((count, 2)).astype(np.float32)
    return points, labels[which]


@pytest.mark.parametrize(
    "name, options",
    [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.02}),
     ("AdamW", {"lr": 0.02}), ("RMSprop", {"lr": 0.01})],
)
def test_each_optimiser_learns_xor_to_full_training_accuracy(name, options):
    cnnlab.manual_seed(0)
    points, labels = xor_blobs()
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    optimizer = getattr(optim, name)(model.parameters(), **options)
    criterion = nn.CrossEntropyLoss()

    def accuracy():
        with cnnlab.no_grad():
            return float((model(cnnlab.Tensor(points)).data.argmax(axis=1) == labels).mean())

    assert accuracy() < 0.9
    for _ in range(150):
        optimizer.zero_grad()
        loss = criterion(model(cnnlab.Tensor(points)), labels)
        loss.backward()
        optimizer.step()
    assert accuracy() == 1.0
    assert loss.item() < 0.2


# ----- the bookkeeping the trajectories above do not reach (each a bug mutation.sh planted) ---
def test_parameter_groups_are_copied_and_may_be_any_iterable():
    first, second, third = (nn.Parameter(np.ones(2)) for _ in range(3))
    groups = [{"params": iter([first, second])}, {"params": (third,), "lr": 1.0}]
    optimizer = optim.SGD(groups, lr=0.5)
    assert "lr" not in groups[0]  # the caller's dicts are left as they were
    for param in (first, second, third):
        param.grad = np.ones(2)
    optimizer.step()  # the iterator was read once, into a list: every parameter steps
    stepped = [param.data for param in (first, second, third)]
    np.testing.assert_array_equal(stepped, [[0.5, 0.5], [0.5, 0.5], [0.0, 0.0]])


def test_state_dict_numbers_parameters_across_groups_as_torch():
    ours = [nn.Parameter(np.ones(2)) for _ in range(6)]
    theirs = [torch.ones(2, requires_grad=True) for _ in range(6)]
    optimizer = optim.SGD([{"params": ours[:2]}, {"params": ours[2:5]}, {"params": ours[5:]}],
                          lr=0.1, momentum=0.9)
    reference = torch.optim.SGD([{"params": theirs[:2]}, {"params": theirs[2:5]},
                                 {"params": theirs[5:]}], lr=0.1, momentum=0.9)
    for param in ours:
        param.grad = np.ones(2)
    for param in theirs:
        param.grad = torch.ones(2)
    optimizer.step()
    reference.step()
    saved, expected = optimizer.state_dict(), reference.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0, 1], [2, 3, 4], [5]]
    assert [g["params"] for g in saved["param_groups"]] == [g["params"] for g in
                                                             expected["param_groups"]]
    assert sorted(saved["state"]) == sorted(expected["state"])


def test_loading_refuses_state_for_a_parameter_it_does_not_have():
    optimizer = optim.SGD([nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))], lr=0.1)
    saved = {"state": {"2": {"momentum_buffer": np.ones(2)}},
             "param_groups": [{"params": [0, 1], "lr": 0.1}]}
    with pytest.raises(ValueError, match="SGD.load_state_dict: state for unknown parameter 2"):
        optimizer.load_state_dict(saved)


def test_loaded_state_is_a_copy_that_later_steps_leave_alone():
    param = nn.Parameter(np.ones(3))
    optimizer = optim.SGD([param], lr=0.1, momentum=0.9)
    buffer = np.full(3, 2.0)
    optimizer.load_state_dict({"state": {0: {"momentum_buffer": buffer}},
                               "param_groups": [{"params": [0], "lr": 0.1, "momentum": 0.9}]})
    param.grad = np.ones(3)
    optimizer.step()
    np.testing.assert_array_equal(buffer, np.full(3, 2.0))  # the caller's array, untouched
    np.testing.assert_allclose(param.data, 1 - 0.1 * (0.9 * 2.0 + 1.0))


def test_an_optimiser_without_an_update_rule_raises():
    param = nn.Parameter(np.ones(2))
    optimizer = optim.Optimizer([param], {})
    param.grad = np.ones(2)
    with pytest.raises(NotImplementedError):
        optimizer.step()


# Every hyperparameter each optimiser checks: (name, options with one bad value, the message).
INVALID = [
    ("SGD", {"lr": -0.1}, "SGD: invalid lr -0.1, expected >= 0.0"),
    ("SGD", {"lr": 0.1, "momentum": -0.5}, "SGD: invalid momentum -0.5, expected >= 0.0"),
    ("SGD", {"lr": 0.1, "dampening": -1}, "SGD: invalid dampening -1, expected >= 0.0"),
    ("SGD", {"lr": 0.1, "weight_decay": -1e-3},
     "SGD: invalid weight_decay -0.001, expected >= 0.0"),
    ("SGD", {"lr": True}, "SGD: invalid lr True, expected >= 0.0"),
    ("SGD", {"lr": "0.1"}, "SGD: invalid lr '0.1', expected >= 0.0"),
    ("Adam", {"lr": -1.0}, "Adam: invalid lr -1.0, expected >= 0.0"),
    ("Adam", {"eps": -1e-8}, "Adam: invalid eps -1e-08, expected >= 0.0"),
    ("Adam", {"weight_decay": -0.1}, "Adam: invalid weight_decay -0.1, expected >= 0.0"),
    ("Adam", {"betas": (0.9,)}, "Adam: betas must be a pair (beta1, beta2), got (0.9,)"),
    ("Adam", {"betas": (1.0, 0.999)}, "Adam: invalid beta1 1.0, expected >= 0.0 and < 1.0"),
    ("Adam", {"betas": (-0.1, 0.999)}, "Adam: invalid beta1 -0.1, expected >= 0.0 and < 1.0"),
    ("Adam", {"betas": (0.9, 1.0)}, "Adam: invalid beta2 1.0, expected >= 0.0 and < 1.0"),
    ("AdamW", {"betas": (0.9, 1.5)}, "AdamW: invalid beta2 1.5, expected >= 0.0 and < 1.0"),
    ("RMSprop", {"lr": -1.0}, "RMSprop: invalid lr -1.0, expected >= 0.0"),
    ("RMSprop", {"alpha": -0.5}, "RMSprop: invalid alpha -0.5, expected >= 0.0"),
    ("RMSprop", {"eps": -1.0}, "RMSprop: invalid eps -1.0, expected >= 0.0"),
    ("RMSprop", {"weight_decay": -1.0}, "RMSprop: invalid weight_decay -1.0, expected >= 0.0"),
    ("RMSprop", {"momentum": -1.0}, "RMSprop: invalid momentum -1.0, expected >= 0.0"),
]


@pytest.mark.parametrize("name, options, message", INVALID, ids=lambda c: str(c))
def test_every_hyperparameter_is_checked_and_named(name, options, message):
    with pytest.raises(ValueError) as error:
        getattr(optim, name)([nn.Parameter(np.ones(2))], **options)
    assert str(error.value) == message


def test_hyperparameters_on_their_bounds_are_accepted():
    params = [nn.Parameter(np.ones(2))]
    optim.SGD(params, lr=0.0, momentum=0.0, dampening=0.0, weight_decay=0.0)
    optim.Adam(params, lr=0.0, betas=(0.0, 0.0), eps=0.0, weight_decay=0.0)
    optim.RMSprop(params, lr=0.0, alpha=0.0, eps=0.0, weight_decay=0.0, momentum=0.0)
    from cnnlab.optim.optimizer import check_hyperparameter

    assert check_hyperparameter("X", "p", 1.0, 0.0, 1.0) == 1.0  # a closed upper bound
    with pytest.raises(ValueError, match=r"^X: invalid p 1.5, expected >= 0.0 and <= 1.0$"):
        check_hyperparameter("X", "p", 1.5, 0.0, 1.0)


def test_repr_lists_each_group_and_its_hyperparameters_as_torch():
    first, second = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    optimizer = optim.SGD([{"params": [first]}, {"params": [second], "lr": 1.0}], lr=0.1)
    assert repr(optimizer) == (
        "SGD (\n"
        "Parameter Group 0\n    dampening: 0.0\n    lr: 0.1\n    momentum: 0.0\n"
        "    nesterov: False\n    weight_decay: 0.0\n"
        "Parameter Group 1\n    dampening: 0.0\n    lr: 1.0\n    momentum: 0.0\n"
        "    nesterov: False\n    weight_decay: 0.0\n"
        ")"
    )


def test_loading_restores_each_groups_hyperparameters_as_torch():
    """The saved groups' lr and momentum replace the optimiser's, group by group, and the
    saved dict is left as it was (torch's load_state_dict does the same)."""
    ours = [nn.Parameter(np.ones(2)) for _ in range(3)]
    theirs = [torch.ones(2, requires_grad=True) for _ in range(3)]
    source = optim.SGD([{"params": ours[:1], "lr": 0.3}, {"params": ours[1:], "momentum": 0.5}],
                       lr=0.1, momentum=0.9)
    saved = source.state_dict()
    target = optim.SGD([{"params": ours[:1]}, {"params": ours[1:]}], lr=0.7)
    target.load_state_dict(saved)
    reference = torch.optim.SGD([{"params": theirs[:1]}, {"params": theirs[1:]}], lr=0.7)
    reference.load_state_dict(torch.optim.SGD(
        [{"params": theirs[:1], "lr": 0.3}, {"params": theirs[1:], "momentum": 0.5}],
        lr=0.1, momentum=0.9).state_dict())
    for group, expected in zip(target.param_groups, reference.param_groups, strict=True):
        assert (group["lr"], group["momentum"]) == (expected["lr"], expected["momentum"])
    assert [(g["lr"], g["momentum"]) for g in target.param_groups] == [(0.3, 0.9), (0.1, 0.5)]
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1, 2]]
    assert all(isinstance(p, nn.Parameter) for g in target.param_groups for p in g["params"])
