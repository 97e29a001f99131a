"""cnnlab modules as PyTorch modules and back: `to_torch`, `from_torch`, `torch_source`.

    module = to_torch(model)          # a torch.nn.Module computing the same function
    model = from_torch(module)        # and back; same state-dict keys both ways
    print(torch_source(model))        # the PyTorch lines that build `module`'s structure

One table, CONVERTERS, maps each cnnlab layer type to its torch.nn twin and the constructor
arguments both keep as attributes of the same names; Sequential containers are walked, and
the weights cross once, as a state dict (the keys are PyTorch's on both sides). A layer type
is one entry in the table. PyTorch is imported only when these functions are called.

The vision transformer's two small layers that torch.nn lacks, PatchTokens (class token and
positions) and SelectToken, have twins written here as PyTorch source (TORCH_CLASSES); the
same text defines the classes `to_torch` uses and goes into the script `torch_source` writes.
"""

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnnlab import nn
from cnnlab.interop.optional import require
from cnnlab.models import model_from_config
from cnnlab.shapes import pair

INSTALL_TORCH = "pip install torch"


@dataclass(frozen=True)
class Converter:
    """How one cnnlab layer type and its torch.nn twin map onto each other.

    Attributes:
        torch_name: the class's name in torch.nn.
        arguments: constructor arguments both classes take and keep as attributes of the same
            names; `read` gives them in one canonical form (sizes as (h, w) pairs, a pool's
            stride spelled out, bias as True or False).
        torch_defaults: arguments only PyTorch has, with the value the cnnlab layer implies;
            `from_torch` refuses a module where one differs (it would compute something else).
        reader: module -> constructor arguments, for a layer whose attributes are not its
            arguments (the same function reads the cnnlab layer and its twin); replaces
            `arguments`.
        defined_here: the twin is a class of TORCH_CLASSES, not of torch.nn.
    """

    torch_name: str
    arguments: tuple = ()
    torch_defaults: dict = field(default_factory=dict)
    reader: Callable | None = None
    defined_here: bool = False

    def read(self, module) -> dict:
        """The constructor arguments of `module` (a cnnlab layer or its torch twin)."""
        if self.reader is not None:
            return self.reader(module)
        return {name: _argument(module, name) for name in self.arguments}


def _argument(module, name):
    value, label = getattr(module, name), f"{type(module).__name__}: {name}"
    if name == "bias":
        return value is not None
    if name == "stride":
        return pair(module.kernel_size if value is None else value, label)
    if name in ("kernel_size", "padding"):
        return pair(value, label)
    return value


def _attention_arguments(module) -> dict:
    """MultiheadAttention's arguments; its bias lives in in_proj_bias on both sides."""
    return {"embed_dim": module.embed_dim, "num_heads": module.num_heads,
            "dropout": module.dropout, "bias": module.in_proj_bias is not None,
            "batch_first": module.batch_first}


def _encoder_layer_arguments(module) -> dict:
    """TransformerEncoderLayer's arguments, read from its sublayers (torch keeps few)."""
    activation = module.activation
    if not isinstance(activation, str):  # torch: a function or module, and a code for it
        activation = {1: "relu", 2: "gelu"}.get(getattr(module, "activation_relu_or_gelu", 0))
    if activation is None:
        raise ValueError(f"from_torch: TransformerEncoderLayer with activation "
                         f"{module.activation!r} is not supported (cnnlab's has relu or gelu)")
    attention = module.self_attn
    return {"d_model": attention.embed_dim, "nhead": attention.num_heads,
            "dim_feedforward": module.linear1.out_features, "dropout": module.dropout.p,
            "activation": activation, "layer_norm_eps": module.norm1.eps,
            "batch_first": attention.batch_first, "norm_first": module.norm_first,
            "bias": module.linear1.bias is not None}


_POOL = ("kernel_size", "stride", "padding")
_BATCH_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")

CONVERTERS = {
    nn.Linear: Converter("Linear", ("in_features", "out_features", "bias")),
    nn.Conv2d: Converter(
        "Conv2d", ("in_channels", "out_channels", "kernel_size", "stride", "padding", "bias"),
        {"dilation": 1, "groups": 1, "padding_mode": "zeros"},
    ),
    nn.MaxPool2d: Converter(
        "MaxPool2d", _POOL, {"dilation": 1, "ceil_mode": False, "return_indices": False}
    ),
    nn.AvgPool2d: Converter(
        "AvgPool2d", _POOL,
        {"ceil_mode": False, "count_include_pad": True, "divisor_override": None},
    ),
    nn.ReLU: Converter("ReLU"),
    nn.LeakyReLU: Converter("LeakyReLU", ("negative_slope",)),
    nn.Tanh: Converter("Tanh"),
    nn.Sigmoid: Converter("Sigmoid"),
    nn.Identity: Converter("Identity"),
    nn.Flatten: Converter("Flatten", ("start_dim", "end_dim")),
    nn.Dropout: Converter("Dropout", ("p",)),
    nn.BatchNorm1d: Converter("BatchNorm1d", _BATCH_NORM),
    nn.BatchNorm2d: Converter("BatchNorm2d", _BATCH_NORM),
    nn.LayerNorm: Converter("LayerNorm", ("normalized_shape", "eps", "elementwise_affine", "bias")),
    nn.GELU: Converter("GELU", ("approximate",)),
    nn.MultiheadAttention: Converter(
        "MultiheadAttention", reader=_attention_arguments,
        torch_defaults={"_qkv_same_embed_dim": True, "bias_k": None, "add_zero_attn": False},
    ),
    nn.TransformerEncoderLayer: Converter("TransformerEncoderLayer",
                                          reader=_encoder_layer_arguments),
    nn.PatchTokens: Converter("PatchTokens", ("num_patches", "embed_dim"), defined_here=True),
    nn.SelectToken: Converter("SelectToken", ("index",), defined_here=True),
}

# The twins of the layers torch.nn lacks, as the lines of PyTorch that define them.
TORCH_CLASSES = {
    "PatchTokens": '''\
class PatchTokens(torch.nn.Module):
    """cnnlab's PatchTokens: (N, D, H', W') patch embeddings -> (N, 1 + H'W', D) tokens,
    a learned class token in front, learned positions added."""

    def __init__(self, num_patches, embed_dim):
        super().__init__()
        self.num_patches, self.embed_dim = num_patches, embed_dim
        self.class_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embedding = torch.nn.Parameter(torch.zeros(1, 1 + num_patches, embed_dim))

    def forward(self, x):
        patches = x.flatten(2).transpose(1, 2)
        class_tokens = self.class_token.expand(x.shape[0], -1, -1)
        return torch.cat([class_tokens, patches], dim=1) + self.pos_embedding
''',
    "SelectToken": '''\
class SelectToken(torch.nn.Module):
    """cnnlab's SelectToken: (N, T, D) -> (N, D), the token at `index` (the class token)."""

    def __init__(self, index=0):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[:, self.index]
''',
}
_BY_TORCH_NAME = {converter.torch_name: (kind, converter)
                  for kind, converter in CONVERTERS.items()}


@functools.cache
def _classes_defined_here(torch) -> dict:
    """TORCH_CLASSES's source run once: their names -> the torch.nn.Module subclasses."""
    namespace = {"torch": torch, "__name__": __name__}
    for source in TORCH_CLASSES.values():
        exec(source, namespace)  # noqa: S102 - this module's own constant text
    return {name: namespace[name] for name in TORCH_CLASSES}


def _torch_class(converter, torch):
    if converter.defined_here:
        return _classes_defined_here(torch)[converter.torch_name]
    return getattr(torch.nn, converter.torch_name)


def _converter(model):
    converter = CONVERTERS.get(type(model))
    if converter is None:
        known = ", ".join(sorted(kind.__name__ for kind in CONVERTERS))
        raise ValueError(f"to_torch: no PyTorch counterpart for {type(model).__name__}; "
                         f"cnnlab converts Sequential, {known}")
    return converter


def _is_default(value, default):
    if isinstance(value, tuple | list):
        return all(item == default for item in value)
    return value == default


# ----- cnnlab -> PyTorch --------------------------------------------------------------------
def to_torch(model):
    """A torch.nn.Module computing the same function as the cnnlab `model`.

    Args:
        model: a cnnlab layer or a Sequential of them (any model of `build_model`).

    Returns the torch module, with the same state-dict keys, the same weights and buffers (in
    the model's float dtype) and the same training or eval mode. A model made by
    `build_model` keeps its recipe as the module's `cnnlab_config`, so `from_torch` gives
    back a model that `checkpoint.save_model` can save.

    Raises:
        MissingDependencyError (an ImportError) when PyTorch is not installed;
        ValueError naming a layer type that has no PyTorch counterpart here.
    """
    torch = require("torch", "to_torch", INSTALL_TORCH)
    module = _torch_structure(model, torch)
    module.to(getattr(torch, _float_dtype(model.parameters()).name))
    state = {key: torch.from_numpy(np.array(value)) for key, value in model.state_dict().items()}
    module.load_state_dict(state, strict=True)
    module.train(model.training)
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        module.cnnlab_config = config
    return module


def _torch_structure(model, torch):
    if isinstance(model, nn.Sequential):
        return torch.nn.Sequential(OrderedDict(
            (name, _torch_structure(child, torch)) for name, child in model.named_children()))
    converter = _converter(model)
    return _torch_class(converter, torch)(**converter.read(model))


def _float_dtype(parameters):
    """The numpy dtype of the first floating parameter (numpy arrays or torch tensors)."""
    for parameter in parameters:
        dtype = np.dtype(str(parameter.dtype).removeprefix("torch."))
        if dtype.kind == "f":
            return dtype
    return np.dtype(np.float32)


def torch_source(model, weights_file=None) -> str:
    """Python lines that build the PyTorch twin of `model` as `model` (and, given the name of
    a .safetensors file of its state dict beside the script, load it with strict=True)."""
    named = any(not _indexed(module) for module in model.modules()
                if isinstance(module, nn.Sequential))
    imports = ["from collections import OrderedDict"] * named
    if weights_file is not None:
        imports += ["from pathlib import Path", "", "import torch",
                    "from safetensors.torch import load_file"]
    else:
        imports += [""] * named + ["import torch"]
    defined = sorted({_converter(module).torch_name for module in model.modules()
                      if not isinstance(module, nn.Sequential)
                      and _converter(module).defined_here})
    classes = ["", "", *"\n\n".join(TORCH_CLASSES[name] for name in defined).splitlines(), ""]
    lines = [*imports, *(classes if defined else []), "", f"model = {_expression(model, '')}"]
    if weights_file is not None:
        lines += [f"weights = load_file(Path(__file__).with_name({str(weights_file)!r}))",
                  "model.load_state_dict(weights, strict=True)"]
    lines.append("model.eval()")
    return "\n".join(lines) + "\n"


def _expression(model, indent):
    if not isinstance(model, nn.Sequential):
        converter = _converter(model)
        arguments = ", ".join(f"{name}={value!r}" for name, value in _non_defaults(model).items())
        prefix = "" if converter.defined_here else "torch.nn."
        return f"{prefix}{converter.torch_name}({arguments})"
    inner = indent + "    "
    children = list(model.named_children())
    if _indexed(model):
        items = [f"{inner}{_expression(child, inner)}," for _, child in children]
        return "torch.nn.Sequential(\n" + "\n".join(items) + f"\n{indent})"
    items = [f"{inner}({name!r}, {_expression(child, inner)})," for name, child in children]
    return "torch.nn.Sequential(OrderedDict([\n" + "\n".join(items) + f"\n{indent}]))"


def _non_defaults(model) -> dict:
    """The layer's constructor arguments that differ from their defaults (cnnlab's defaults
    are PyTorch's), in `Converter.read`'s canonical form."""
    parameters = inspect.signature(type(model).__init__).parameters
    arguments = {}
    for name, value in _converter(model).read(model).items():
        default = parameters[name].default
        if default is not inspect.Parameter.empty and name in ("kernel_size", "stride", "padding"):
            default = pair(model.kernel_size if default is None else default)
        if value != default:
            arguments[name] = value
    return arguments


def _indexed(sequential):
    """True when a Sequential's children are named 0, 1, 2, ... (PyTorch's positional form)."""
    names = [name for name, _ in sequential.named_children()]
    return names == [str(index) for index in range(len(names))]


# ----- PyTorch -> cnnlab --------------------------------------------------------------------
def from_torch(module):
    """The cnnlab module computing the same function as the torch.nn `module`.

    Args:
        module: a torch.nn layer cnnlab has (see CONVERTERS), or a torch.nn.Sequential of them.

    Returns the cnnlab module with the same state-dict keys, weights and buffers, dtype and
    mode. When `module` came from `to_torch` of a `build_model` model and still has that
    model's structure, the result gets its recipe back as `.config`.

    Raises:
        MissingDependencyError (an ImportError) when PyTorch is not installed;
        ValueError naming a layer cnnlab does not have, or a setting it does not support.
    """
    torch = require("torch", "from_torch", INSTALL_TORCH)
    model = _cnnlab_structure(module, torch)
    model.to(_float_dtype(module.parameters()))
    model.load_state_dict({key: value.detach().cpu().numpy()
                           for key, value in module.state_dict().items()})
    model.train(module.training)
    _restore_config(model, getattr(module, "cnnlab_config", None))
    return model


def _cnnlab_structure(module, torch):
    if isinstance(module, torch.nn.Sequential):
        return nn.Sequential(OrderedDict(
            (name, _cnnlab_structure(child, torch)) for name, child in module.named_children()))
    name = type(module).__name__
    kind, converter = _BY_TORCH_NAME.get(name, (None, None))
    # a twin defined here is recognised by its name, so the exported script's classes pass
    if converter is None or not converter.defined_here and (
            type(module) is not getattr(torch.nn, name, None)):
        known = ", ".join(sorted(_BY_TORCH_NAME))
        raise ValueError(f"from_torch: cnnlab has no counterpart for {type(module).__qualname__}; "
                         f"it converts torch.nn Sequential, {known}")
    for argument, default in converter.torch_defaults.items():
        value = getattr(module, argument)
        if not _is_default(value, default):
            value = "a tensor" if isinstance(value, torch.Tensor) else repr(value)
            raise ValueError(f"from_torch: {name} with {argument}={value} is not supported "
                             f"(cnnlab's {kind.__name__} computes {argument}={default!r})")
    return kind(**converter.read(module))


def _describe(model):
    """The structure of a cnnlab module: names, types and constructor arguments, nested."""
    if isinstance(model, nn.Sequential):
        return ("Sequential", [(name, _describe(child)) for name, child in model.named_children()])
    return (type(model).__name__, _converter(model).read(model))


def _restore_config(model, config):
    """Give `model` the recipe `config` when that recipe builds exactly its structure."""
    if not isinstance(config, dict):
        return
    try:
        reference = model_from_config(config, generator=np.random.default_rng(0))
    except (ValueError, TypeError, KeyError):
        return
    if _describe(reference) == _describe(model):
        model.config = config
