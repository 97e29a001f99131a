"""Learning-rate schedules, as torch.optim.lr_scheduler: the same lr values, step by step.

A scheduler sets `group["lr"]` of its optimiser's parameter groups. Construct it after the
optimiser (that applies the schedule's value for epoch 0), then call `optimizer.step()` during
an epoch and `scheduler.step()` once after it. Like torch, the schedules are computed
recursively from the current lr (StepLR, CosineAnnealingLR, LinearLR), so the values are the
very floats PyTorch produces; `state_dict()` / `load_state_dict()` resume them (restore the
optimiser's state too: it holds the current lr).
"""

import math
from bisect import bisect_right

from cnnlab.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: subclasses define `get_lr()` (the lrs for `last_epoch`, usually from the
    current ones) and may define `_closed_form_lr()` (from the base lrs, used by SequentialLR
    when a schedule starts)."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._initial_step()

    def _initial_step(self):
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self):
        raise NotImplementedError

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self):
        """Advance one epoch and set the optimiser's learning rates."""
        self._step_count += 1
        self._update_lr()

    def _update_lr(self, epoch=None):
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed_form = getattr(self, "_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = self._current_lrs()

    def get_last_lr(self):
        """The learning rates the last step set, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self):
        """Everything but the optimiser: numbers and lists, JSON-serialisable."""
        return {
            key: list(value) if isinstance(value, list) else value
            for key, value in self.__dict__.items()
            if key not in ("optimizer", "_is_initial")
        }

    def load_state_dict(self, state_dict):
        unknown = sorted(set(state_dict) - set(self.state_dict()))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown keys {unknown}")
        self.__dict__.update(state_dict)


def _positive_int(scheduler, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{scheduler}: {name} must be a positive int, got {value!r}")
    return value


class StepLR(LRScheduler):
    """Multiply the lr by gamma every step_size epochs: lr = base_lr * gamma^(epoch // step_size).

    Args:
        optimizer: the optimiser whose lr to set.
        step_size: period of the decay, in epochs.
        gamma: multiplicative factor. Default: 0.1.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _positive_int("StepLR", "step_size", step_size)
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]

    def _closed_form_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine decay from base_lr to eta_min over T_max epochs:
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2,
    computed recursively, as torch (the values agree with this formula up to rounding).

    Args:
        optimizer: the optimiser whose lr to set.
        T_max: number of epochs of the half cosine.
        eta_min: the final lr. Default: 0.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _positive_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self):
        epoch, period, low = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if self._step_count == 1 and epoch > 0:
            return [low + (base - low) * (1 + math.cos(epoch * math.pi / period)) / 2
                    for base in self.base_lrs]
        if (epoch - 1 - period) % (2 * period) == 0:
            return [lr + (base - low) * (1 - math.cos(math.pi / period)) / 2
                    for base, lr in zip(self.base_lrs, self._current_lrs(), strict=True)]
        ratio = (1 + math.cos(math.pi * epoch / period)) / (
            1 + math.cos(math.pi * (epoch - 1) / period))
        return [ratio * (lr - low) + low for lr in self._current_lrs()]

    def _closed_form_lr(self):
        cosine = 1 + math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (base - self.eta_min) * cosine / 2 for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear warm-up: the lr factor goes from start_factor to end_factor in total_iters
    epochs, then stays: lr = base_lr * (start + (end - start) * min(epoch, total_iters) /
    total_iters), computed recursively, as torch.

    Args:
        optimizer: the optimiser whose lr to set.
        start_factor: factor at epoch 0, in (0, 1]. Default: 1/3.
        end_factor: factor from epoch total_iters on, in [0, 1]. Default: 1.0.
        total_iters: length of the ramp, in epochs. Default: 5.
    """

    def __init__(self, optimizer, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
        if not 0 < start_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1], got {start_factor!r}")
        if not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: end_factor must be in [0, 1], got {end_factor!r}")
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = _positive_int("LinearLR", "total_iters", total_iters)
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch == 0:
            return [lr * self.start_factor for lr in self._current_lrs()]
        if self._is_initial or self.last_epoch > self.total_iters:
            return self._current_lrs()
        change = self.end_factor - self.start_factor
        factor = 1.0 + change / (self.total_iters * self.start_factor
                                 + (self.last_epoch - 1) * change)
        return [lr * factor for lr in self._current_lrs()]

    def _closed_form_lr(self):
        progress = min(self.total_iters, self.last_epoch) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return [base * factor for base in self.base_lrs]


class SequentialLR(LRScheduler):
    """Run schedules one after another: schedulers[i] from epoch milestones[i - 1] on, as torch
    (e.g. LinearLR warm-up for 5 epochs, then CosineAnnealingLR: milestones=[5]).

    Args:
        optimizer: the optimiser all the schedulers were built on.
        schedulers: list of schedulers.
        milestones: epochs at which the next scheduler takes over (one fewer than schedulers).
    """

    def __init__(self, optimizer, schedulers, milestones):
        if not schedulers or len(milestones) != len(schedulers) - 1:
            raise ValueError(
                f"SequentialLR: expected one milestone fewer than schedulers, got "
                f"{len(schedulers)} schedulers and {len(milestones)} milestones"
            )
        if any(scheduler.optimizer is not optimizer for scheduler in schedulers):
            raise ValueError("SequentialLR: every scheduler must belong to the same optimizer")
        self.optimizer = optimizer
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = 0
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        for scheduler in self._schedulers:  # undo the step each made when it was built
            scheduler.last_epoch -= 1
        self._schedulers[0]._initial_step()
        self._last_lr = self._schedulers[0].get_last_lr()

    def step(self):
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self):
        state = {key: value for key, value in super().state_dict().items()
                 if key != "_schedulers"}
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        nested = state.pop("_schedulers")
        if len(nested) != len(self._schedulers):
            raise ValueError(
                f"SequentialLR.load_state_dict: {len(nested)} schedulers in the state dict, "
                f"expected {len(self._schedulers)}"
            )
        self.__dict__.update(state)
        for scheduler, saved in zip(self._schedulers, nested, strict=True):
            scheduler.load_state_dict(saved)
