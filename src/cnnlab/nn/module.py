"""Module, the base of every layer and model, and Sequential, the container that chains them.

A Module registers what is assigned to it as an attribute: a `Parameter` becomes a learnable
parameter, a `Module` a submodule, and arrays given to `register_buffer` become buffers (state
that is saved but not learned, such as BatchNorm's running statistics). From that registry come
`parameters()`, `train()/eval()`, `zero_grad()` and `state_dict()`, whose keys and shapes are
PyTorch's for the same architecture (`0.weight`, `features.3.running_mean`, ...), so weights move
between cnnlab and PyTorch in both directions.
"""

from collections import OrderedDict, namedtuple

import numpy as np

from cnnlab.nn.parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models: subclasses set attributes in `__init__` and define
    `forward`. Calling the module calls `forward`.

    Attributes:
        training: True in training mode (the default), False after `eval()`. Dropout and
            BatchNorm behave differently in the two modes.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ----- registration ---------------------------------------------------------------------
    def _registry(self, attribute):
        registry = self.__dict__.get(attribute)
        if registry is None:
            raise AttributeError(
                f"{type(self).__name__}: call Module.__init__() before assigning attributes"
            )
        return registry

    def register_parameter(self, name, parameter):
        """Add a parameter (a Parameter, or None for an absent one such as bias=False)."""
        if parameter is not None and not isinstance(parameter, Parameter):
            raise TypeError(
                f"{type(self).__name__}: parameter {name!r} must be a Parameter or None, "
                f"got {type(parameter).__name__}"
            )
        self._forget(name)
        self._registry("_parameters")[name] = parameter

    def register_buffer(self, name, array):
        """Add a buffer: an ndarray (or None) saved in `state_dict()` but not learned."""
        self._forget(name)
        self._registry("_buffers")[name] = None if array is None else np.asarray(array)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"{type(self).__name__}: submodule {name!r} must be a Module, "
                f"got {type(module).__name__}"
            )
        self._forget(name)
        self._registry("_modules")[name] = module

    def _forget(self, name):
        for attribute in ("_parameters", "_buffers", "_modules"):
            self.__dict__.get(attribute, {}).pop(name, None)
        self.__dict__.pop(name, None)

    def __setattr__(self, name, value):
        parameters = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.add_module(name, value)
        elif parameters is not None and name in parameters:
            self.register_parameter(name, value)  # None, or a TypeError naming the value
        elif name in self.__dict__.get("_modules", {}):
            self.add_module(name, value)
        elif name in self.__dict__.get("_buffers", {}):
            self._buffers[name] = None if value is None else np.asarray(value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):  # called only when ordinary lookup fails
        for attribute in ("_parameters", "_buffers", "_modules"):
            registry = self.__dict__.get(attribute)
            if registry is not None and name in registry:
                return registry[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for attribute in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(attribute, {}):
                del self.__dict__[attribute][name]
                return
        object.__delattr__(self, name)

    # ----- traversal ------------------------------------------------------------------------
    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix=""):
        """(name, module) for this module and every submodule, depth first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module.named_children()
            ]
            stack.extend(reversed(children))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """(name, parameter) pairs in state-dict order, each parameter once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, parameter in module._parameters.items():
                if parameter is None or id(parameter) in seen:
                    continue
                seen.add(id(parameter))
                yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self, recurse=True):
        for _, parameter in self.named_parameters(recurse=recurse):
            yield parameter

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    yield (f"{module_name}.{name}" if module_name else name), buffer

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, function):
        """Call function(module) on every submodule, then on self (as torch); returns self."""
        for module in self.children():
            module.apply(function)
        function(self)
        return self

    # ----- modes, gradients, dtype ----------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (mode=True) or evaluation mode on self and every submodule."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        """Forget every parameter's gradient (set it to None, as torch's default)."""
        for parameter in self.parameters():
            parameter.grad = None

    def to(self, dtype):
        """Convert floating parameters, their gradients and floating buffers to `dtype` in place.

        Integer buffers (BatchNorm's num_batches_tracked) keep their dtype. Returns self.
        """
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"Module.to: expected a floating dtype, got {dtype}")
        for module in self.modules():
            for parameter in module._parameters.values():
                if parameter is not None:
                    parameter.data = parameter.data.astype(dtype)
                    if parameter.grad is not None:
                        parameter.grad = parameter.grad.astype(dtype)
            for name, buffer in module._buffers.items():
                if buffer is not None and buffer.dtype.kind == "f":
                    module._buffers[name] = buffer.astype(dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # ----- state dict -----------------------------------------------------------------------
    def _state_entries(self, prefix=""):
        """(key, module, kind, name) for every parameter and buffer, in PyTorch's key order:
        a module's own parameters, then its buffers, then each child's entries."""
        for name, parameter in self._parameters.items():
            if parameter is not None:
                yield prefix + name, self, "_parameters", name
        for name, buffer in self._buffers.items():
            if buffer is not None:
                yield prefix + name, self, "_buffers", name
        for name, module in self.named_children():
            yield from module._state_entries(f"{prefix}{name}.")

    def state_dict(self):
        """OrderedDict key -> ndarray (a copy) of every parameter and buffer, PyTorch's keys."""
        state = OrderedDict()
        for key, module, kind, name in self._state_entries():
            value = getattr(module, kind)[name]
            state[key] = np.array(value.data if kind == "_parameters" else value, copy=True)
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from `state_dict` into the parameters and buffers, keeping their dtypes.

        Args:
            state_dict: mapping key -> anything numpy.asarray takes (a cnnlab state dict, or a
                PyTorch one: its CPU tensors convert).
            strict: every key of the module must be present and no other. Default: True.

        Values convert to the module's dtypes within their kind (a float64 array into a float32
        parameter, an int32 count into an int64 buffer), and integers go into floating
        parameters when they convert exactly. A value of another kind (a float into an integer
        buffer such as num_batches_tracked, a bool into a parameter) is refused: PyTorch would
        cast it, truncating silently.

        Returns (missing_keys, unexpected_keys). Raises ValueError listing the missing and
        unexpected keys (when strict), every shape mismatch and every dtype refused (always),
        before changing anything.
        """
        entries = {key: (module, kind, name) for key, module, kind, name in self._state_entries()}
        arrays = {key: np.asarray(value) for key, value in state_dict.items()}
        missing = [key for key in entries if key not in arrays]
        unexpected = [key for key in arrays if key not in entries]
        mismatched, refused = [], []
        for key, (module, kind, name) in entries.items():
            if key in arrays:
                target = getattr(module, kind)[name]
                shape = target.shape
                if arrays[key].shape != shape:
                    mismatched.append(f"{key}: got {arrays[key].shape}, expected {shape}")
                elif not _loads_into(arrays[key], target.dtype):
                    refused.append(f"{key}: expected {target.dtype}, found {arrays[key].dtype}")
        problems = []
        if strict and missing:
            problems.append(f"missing keys {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys {unexpected}")
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if refused:
            problems.append("dtype mismatch for " + "; ".join(refused))
        if problems:
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(problems))
        for key, (module, kind, name) in entries.items():
            if key in arrays:
                target = getattr(module, kind)[name]
                destination = target.data if kind == "_parameters" else target
                np.copyto(destination, arrays[key], casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # ----- printing -------------------------------------------------------------------------
    def extra_repr(self):
        """The text inside the parentheses of this module's repr; layers override it."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({name}): " + _indent(repr(module), 2) for name, module in self.named_children()
        ]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"


def _loads_into(array, dtype):
    """Whether `array` may be loaded into a value of `dtype`: floats into a float of any width,
    integers into an integer or a float that keeps their values, anything else into its own
    kind only."""
    found, expected = array.dtype.kind, dtype.kind
    if found in "iu" and expected in "iuf":
        return bool(np.array_equal(array.astype(dtype), array))
    return found == expected


def _indent(text, spaces):
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line for line in rest])


class Sequential(Module):
    """A chain of modules, each fed the previous one's output.

    Args:
        *modules: the layers, in order; their state-dict keys are "0", "1", ... as torch. A
            single OrderedDict of name -> module names them instead.

    Indexable (`model[0]`, `model[-1]`, `model[1:3]` gives a Sequential), iterable, and sized.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        if not -len(items) <= index < len(items):
            raise IndexError(f"Sequential: index {index} out of range for {len(items)} modules")
        return items[index][1]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self
