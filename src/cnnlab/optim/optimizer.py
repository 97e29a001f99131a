"""Optimizer: the bookkeeping every optimiser shares, so that each one is only its update rule.

An optimiser holds `param_groups` (as torch: a list of dicts, each with "params" and the
hyperparameters such as "lr", which schedulers change) and per-parameter state in a list
aligned with the flat parameter list (`state[i]` belongs to the i-th parameter). `step()` calls
the subclass's `_update(param, grad, state, group)` for every parameter that has a gradient,
which changes `param.data` in place (float32 parameters stay float32).
"""

import numbers

import numpy as np

from cnnlab.tensor import Tensor


class Optimizer:
    """Base class of the optimisers.

    Args:
        params: an iterable of tensors (parameters), or of dicts {"params": [...], "lr": ...}
            for parameter groups with their own hyperparameters.
        defaults: hyperparameter name -> value for groups that do not set it.
    """

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of tensors, got one Tensor; "
                "pass model.parameters() or a list"
            )
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        self.defaults = dict(defaults)
        self.param_groups = []
        self.params = []  # the flat list that `state` is aligned with
        for group in groups:
            group = dict(group)
            group["params"] = list(group["params"])
            for parameter in group["params"]:
                if not isinstance(parameter, Tensor):
                    raise TypeError(
                        f"{type(self).__name__}: can only optimise Tensors, "
                        f"got {type(parameter).__name__}"
                    )
                if any(parameter is seen for seen in self.params):
                    raise ValueError(f"{type(self).__name__}: a parameter appears twice")
                self.params.append(parameter)
            for name, value in self.defaults.items():
                group.setdefault(name, value)
            self.param_groups.append(group)
        self.state = [{} for _ in self.params]

    def _update(self, param, grad, state, group):
        raise NotImplementedError

    def step(self):
        """Update every parameter that has a gradient, by the optimiser's rule."""
        index = 0
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, param.grad, self.state[index], group)
                index += 1

    def zero_grad(self):
        """Forget the parameters' gradients (set to None, torch's default set_to_none=True)."""
        for param in self.params:
            param.grad = None

    # ----- resuming -------------------------------------------------------------------------
    def state_dict(self):
        """{"state": {index: {name: ndarray or number}}, "param_groups": [{..., "params":
        [indices]}]}, as torch; the arrays are copies. Parameters without state are left out."""
        state = {
            index: {name: _copy(value) for name, value in entry.items()}
            for index, entry in enumerate(self.state)
            if entry
        }
        groups, start = [], 0
        for group in self.param_groups:
            saved = {name: _copy(value) for name, value in group.items() if name != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state from `state_dict()`'s value (keys may
        be strings, as after JSON). Raises ValueError if the groups or shapes do not match."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        sizes = [len(group["params"]) for group in self.param_groups]
        saved_sizes = [len(group["params"]) for group in groups]
        if sizes != saved_sizes:
            raise ValueError(
                f"{name}.load_state_dict: parameter group sizes {saved_sizes} in the state "
                f"dict do not match the optimiser's {sizes}"
            )
        new_state = [{} for _ in self.params]
        for key, entry in state_dict["state"].items():
            index = int(key)
            if not 0 <= index < len(self.params):
                raise ValueError(f"{name}.load_state_dict: state for unknown parameter {key}")
            param = self.params[index]
            for field, value in entry.items():
                if isinstance(value, numbers.Number):
                    new_state[index][field] = value
                    continue
                array = np.asarray(value)
                if array.shape != param.shape:
                    raise ValueError(
                        f"{name}.load_state_dict: state {field!r} of parameter {index} has "
                        f"shape {array.shape}, expected {param.shape}"
                    )
                new_state[index][field] = array.astype(param.dtype, copy=True)
        for group, saved in zip(self.param_groups, groups, strict=True):
            for field, value in saved.items():
                if field != "params":
                    group[field] = tuple(value) if isinstance(value, list) else value
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            for field in sorted(group):
                if field != "params":
                    lines.append(f"    {field}: {group[field]}")
        return "\n".join(lines) + "\n)"


def _copy(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list | tuple):
        return type(value)(value)
    return value


def check_hyperparameter(optimizer, name, value, low=0.0, high=None, high_open=False):
    """Raise ValueError naming the hyperparameter unless low <= value (< or <=) high."""
    too_high = high is not None and (value >= high if high_open else value > high)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < low or too_high:
        upper = "" if high is None else f" and {'<' if high_open else '<='} {high}"
        raise ValueError(f"{optimizer}: invalid {name} {value!r}, expected >= {low}{upper}")
    return value
