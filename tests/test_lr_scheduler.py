"""cnnlab.optim.lr_scheduler against torch.optim.lr_scheduler: the same learning rates epoch by
epoch (the very floats), the same state dict entries, resuming from a state dict through JSON,
and arguments refused with messages that name them."""

import json

import numpy as np
import pytest
import torch

from cnnlab import nn, optim
from cnnlab.optim import lr_scheduler


def schedules(make_ours, make_theirs, epochs=30, lr=0.1):
    ours_optimizer = optim.SGD([nn.Parameter(np.ones(1))], lr=lr)
    theirs_optimizer = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=lr)
    ours, theirs = make_ours(ours_optimizer), make_theirs(theirs_optimizer)
    ours_lrs, theirs_lrs = [ours.get_last_lr()], [theirs.get_last_lr()]
    for _ in range(epochs):
        ours_optimizer.step(), theirs_optimizer.step()
        ours.step(), theirs.step()
        ours_lrs.append(ours.get_last_lr())
        theirs_lrs.append(theirs.get_last_lr())
        assert ours_optimizer.param_groups[0]["lr"] == theirs_optimizer.param_groups[0]["lr"]
    return ours_lrs, theirs_lrs


SCHEDULES = {
    "step": (lambda o: lr_scheduler.StepLR(o, 7, gamma=0.5),
             lambda o: torch.optim.lr_scheduler.StepLR(o, 7, gamma=0.5)),
    "cosine": (lambda o: lr_scheduler.CosineAnnealingLR(o, 10, eta_min=0.001),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, eta_min=0.001)),
    "step-1": (lambda o: lr_scheduler.StepLR(o, 1, gamma=0.9),
               lambda o: torch.optim.lr_scheduler.StepLR(o, 1, gamma=0.9)),
    # A short period: the schedule climbs back and restarts (epochs 5, 13, 21, 29: a period
    # plus one, then every two periods) within the 30 epochs.
    "cosine-restarts": (lambda o: lr_scheduler.CosineAnnealingLR(o, 4, eta_min=0.01),
                        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 4, eta_min=0.01)),
    "linear": (lambda o: lr_scheduler.LinearLR(o, 0.1, total_iters=6),
               lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=6)),
    "decay": (lambda o: lr_scheduler.LinearLR(o, 1.0, 0.2, total_iters=4),
              lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.2, total_iters=4)),
    "warmup-cosine": (
        lambda o: lr_scheduler.SequentialLR(
            o, [lr_scheduler.LinearLR(o, 0.01, total_iters=5),
                lr_scheduler.CosineAnnealingLR(o, 20, eta_min=1e-3)], milestones=[5]),
        lambda o: torch.optim.lr_scheduler.SequentialLR(
            o, [torch.optim.lr_scheduler.LinearLR(o, 0.01, total_iters=5),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, 20, eta_min=1e-3)], milestones=[5]),
    ),
}


SCHEDULES["linear-defaults"] = (lr_scheduler.LinearLR, torch.optim.lr_scheduler.LinearLR)
SCHEDULES["linear-to-zero"] = (lambda o: lr_scheduler.LinearLR(o, 1.0, 0.0, total_iters=4),
                               lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.0, 4))
# Three schedules, the last two entered at milestones through their closed forms (LinearLR's
# at its start factor, CosineAnnealingLR's at its base); built after StepLR, LinearLR has
# already lowered the lr, which SequentialLR must undo.
SCHEDULES["warmup-three-phases"] = (
    lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.StepLR(o, 2, 0.5), lr_scheduler.LinearLR(o, 0.5, total_iters=3),
            lr_scheduler.CosineAnnealingLR(o, 5, eta_min=0.01)], milestones=[4, 9]),
    lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.StepLR(o, 2, 0.5),
            torch.optim.lr_scheduler.LinearLR(o, 0.5, total_iters=3),
            torch.optim.lr_scheduler.CosineAnnealingLR(o, 5, eta_min=0.01)], milestones=[4, 9]),
)
SCHEDULES["warmup-step"] = (  # StepLR taking over at a milestone: from its closed form
    lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.LinearLR(o, 0.1, total_iters=3), lr_scheduler.StepLR(o, 4, 0.5)],
        milestones=[3]),
    lambda o: torch.optim.lr_scheduler.SequentialLR(
        o, [torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=3),
            torch.optim.lr_scheduler.StepLR(o, 4, 0.5)], milestones=[3]),
)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedules_give_torchs_lrs_exactly(kind):
    ours, theirs = schedules(*SCHEDULES[kind])
    assert ours == theirs
    assert len(set(map(tuple, ours))) > 3  # the lr really changes


@pytest.mark.parametrize("kind", SCHEDULES)
def test_schedules_resume_from_state_dict(kind):
    make = SCHEDULES[kind][0]

    def build():
        optimizer = optim.SGD([nn.Parameter(np.ones(1))], lr=0.1)
        return optimizer, make(optimizer)

    optimizer, scheduler = build()
    lrs = []
    for epoch in range(20):
        if epoch == 8:
            saved = (json.loads(json.dumps(optimizer.state_dict()["param_groups"])),
                     json.loads(json.dumps(scheduler.state_dict())))
            optimizer, scheduler = build()
            optimizer.load_state_dict({"state": {}, "param_groups": saved[0]})
            scheduler.load_state_dict(saved[1])
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr())
    _, reference_scheduler = build()
    reference = []
    for _ in range(20):
        reference_scheduler.optimizer.step()
        reference_scheduler.step()
        reference.append(reference_scheduler.get_last_lr())
    assert lrs == reference


def assert_entries_equal_torchs(ours, theirs, where="state"):
    """The entries both state dicts have hold the same values, down into nested schedulers
    (each side keeps a few of its own: torch _get_lr_called_within_step, cnnlab SequentialLR's
    base_lrs)."""
    if isinstance(ours, dict):
        common = set(ours) & set(theirs)
        assert {"last_epoch", "_last_lr"} <= common, where
        for key in common:
            assert_entries_equal_torchs(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(ours, list) and ours and isinstance(ours[0], dict):
        assert len(ours) == len(theirs), where
        for index, (mine, their) in enumerate(zip(ours, theirs, strict=True)):
            assert_entries_equal_torchs(mine, their, f"{where}[{index}]")
    else:
        assert ours == theirs, f"{where}: {ours} != {theirs}"


@pytest.mark.parametrize("kind", SCHEDULES)
def test_scheduler_state_holds_what_torchs_holds(kind):
    make_ours, make_theirs = SCHEDULES[kind]
    ours_optimizer = optim.SGD([nn.Parameter(np.ones(1))], lr=0.1)
    theirs_optimizer = torch.optim.SGD([torch.ones(1, requires_grad=True)], lr=0.1)
    ours, theirs = make_ours(ours_optimizer), make_theirs(theirs_optimizer)
    for _ in range(7):  # into SequentialLR's second schedule
        ours_optimizer.step(), theirs_optimizer.step()
        ours.step(), theirs.step()
    state = ours.state_dict()
    if not kind.startswith("warmup-"):  # SequentialLR counts no steps, its schedules do
        assert state["_step_count"] == 8  # the construction's step and seven more
    assert_entries_equal_torchs(state, theirs.state_dict())


def test_a_scheduler_without_a_schedule_raises():
    with pytest.raises(NotImplementedError):
        lr_scheduler.LRScheduler(optim.SGD([nn.Parameter(np.ones(1))], lr=0.1))


def test_scheduler_arguments_are_validated():
    optimizer = optim.SGD([nn.Parameter(np.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="step_size must be a positive int"):
        lr_scheduler.StepLR(optimizer, 0)
    with pytest.raises(ValueError, match="^StepLR: step_size must be a positive int, got True$"):
        lr_scheduler.StepLR(optimizer, True)
    with pytest.raises(ValueError, match="^CosineAnnealingLR: T_max must be a positive int, got 0"):
        lr_scheduler.CosineAnnealingLR(optimizer, 0)
    with pytest.raises(ValueError, match="^LinearLR: total_iters must be a positive int, got 2.0"):
        lr_scheduler.LinearLR(optimizer, total_iters=2.0)
    for bad in ({"start_factor": 1.5}, {"end_factor": 1.5}, {"end_factor": -0.1}):
        with pytest.raises(ValueError, match=f"^LinearLR: {next(iter(bad))} must be in "):
            lr_scheduler.LinearLR(optimizer, **bad)
    cosine = lr_scheduler.CosineAnnealingLR(optimizer, 4)
    with pytest.raises(ValueError, match="^SequentialLR: expected one milestone fewer than "
                                         "schedulers, got 0 schedulers and 0 milestones$"):
        lr_scheduler.SequentialLR(optimizer, [], [])
    with pytest.raises(ValueError, match="got 1 schedulers and 1 milestones"):
        lr_scheduler.SequentialLR(optimizer, [cosine], [3])
    other = lr_scheduler.StepLR(optim.SGD([nn.Parameter(np.ones(1))], lr=0.1), 2)
    with pytest.raises(ValueError, match="every scheduler must belong to the same optimizer"):
        lr_scheduler.SequentialLR(optimizer, [cosine, other], [3])
    scheduler = lr_scheduler.StepLR(optimizer, 1)  # the smallest period
    with pytest.raises(ValueError, match=r"^StepLR.load_state_dict: unknown keys \['gama'\]$"):
        scheduler.load_state_dict({**scheduler.state_dict(), "gama": 0.5})
    with pytest.raises(ValueError, match="start_factor"):
        lr_scheduler.LinearLR(optimizer, start_factor=0)
    with pytest.raises(TypeError, match="expected an Optimizer"):
        lr_scheduler.CosineAnnealingLR(object(), 5)
