"""The model family, from the linear classifier to a CNN with batch norm and a vision
transformer, built by name.

    model = build_model("cnn", in_channels=1, num_classes=10, input_size=(28, 28), dropout=0.5)

Every model is an `nn.Sequential`, so its state-dict keys ("0.weight", "3.bias", ...) are those
of the same `torch.nn.Sequential` in PyTorch, and `model.config` (also `model_config(model)`)
is the JSON-ready recipe that rebuilds it: {"name", "options", "in_channels", "num_classes",
"input_size"}. `MODELS` maps each name to its builder, its documented default options and the
loss it is meant to be trained with.

Layer stacks (C_in input channels, H x W input, K classes):

- linear: Flatten -> Linear(C_in * H * W, K). scores = Wx + b on the flattened pixels; trained
  with softmax cross-entropy.
- svm: the same stack, meant for the multiclass hinge (SVM) loss.
- mlp: Flatten -> [Linear -> activation -> Dropout(dropout)] per hidden size -> Linear(., K).
- cnn: per entry c of `channels`, a block of `convs_per_block` x [Conv2d(c, kernel_size,
  padding kernel_size // 2) -> BatchNorm2d (if batch_norm) -> activation], then
  MaxPool2d(2) -> Dropout(conv_dropout); then Flatten -> [Linear -> activation ->
  Dropout(dropout)] per hidden size -> Linear(., K). The default is the lecture's
  conv-ReLU-pool twice: Conv(32, 3x3) ReLU Pool Conv(64, 3x3) ReLU Pool FC(128) ReLU
  Dropout(0.25) FC(K); 91-92% test accuracy on Fashion-MNIST after about 8 epochs of Adam.
- cnn-bn: the same builder, deeper: two Conv-BN-ReLU per block, blocks of 32 and 64 channels,
  Dropout(0.1) after each pool, FC(256) and Dropout(0.3); aimed at 93%+ on Fashion-MNIST
  with augmentation. (Beside flips and crops, heavier dropout, 0.25 and 0.5, under-fits in 20
  epochs: 0.927 test.)

- vit: a vision transformer. Conv2d(C_in, hidden_dim, patch_size, stride=patch_size) cuts
  the image into (H / p) x (W / p) patches and embeds each (a linear map of its pixels) ->
  PatchTokens (the patches as tokens, a class token in front, learned positions added) ->
  num_layers x pre-norm TransformerEncoderLayer(hidden_dim, num_heads, mlp_dim, GELU) ->
  LayerNorm -> SelectToken (the class token) -> Linear(hidden_dim, K). The default, patches
  of 4 x 4 (49 tokens and the class token at 28 x 28), 6 layers of width 64, 4 heads and an
  MLP of 128, has about 206k parameters.

A conv before BatchNorm has no bias (BatchNorm's shift replaces it), as is usual.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from cnnlab import nn
from cnnlab.shapes import output_hw, pair

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh,
               "sigmoid": nn.Sigmoid}


@dataclass(frozen=True)
class ModelSpec:
    """One member of the family.

    Attributes:
        name: the name given to `build_model` and `--model`.
        build: builder(in_channels, num_classes, input_size, generator, **options) -> Module.
        defaults: the options and their default values (every option is listed here).
        loss: "cross_entropy" or "hinge", the loss the model is meant to be trained with.
        summary: one line for help texts.
    """

    name: str
    build: Callable
    defaults: dict = field(default_factory=dict)
    loss: str = "cross_entropy"
    summary: str = ""


# ----- option checks ----------------------------------------------------------------------------
def _check_sizes(model, name, value, allow_empty=True):
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    sizes = tuple(value) if isinstance(value, list | tuple) else None
    if sizes is None or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                for s in sizes) or (not sizes and not allow_empty):
        raise ValueError(
            f"{model}: option {name} must be a list of positive ints, got {value!r}"
        )
    return sizes


def _check_probability(model, name, value):
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{model}: option {name} must be a probability in [0, 1), got {value!r}")
    return float(value)


def _check_activation(model, value):
    if value not in ACTIVATIONS:
        raise ValueError(
            f"{model}: option activation must be one of {', '.join(ACTIVATIONS)}, got {value!r}"
        )
    return value


def _check_positive_int(model, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{model}: option {name} must be a positive int, got {value!r}")
    return value


# ----- builders -----------------------------------------------------------------------------
def _head(layers, in_features, hidden_sizes, activation, dropout, num_classes, generator):
    """[Linear -> activation -> Dropout] per hidden size, then Linear(., num_classes)."""
    for size in hidden_sizes:
        layers += [nn.Linear(in_features, size, generator=generator), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_features = size
    layers.append(nn.Linear(in_features, num_classes, generator=generator))
    return nn.Sequential(*layers)


def _linear(in_channels, num_classes, input_size, generator):
    features = in_channels * input_size[0] * input_size[1]
    return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes, generator=generator))


def _mlp(in_channels, num_classes, input_size, generator, hidden_sizes, activation, dropout):
    hidden_sizes = _check_sizes("mlp", "hidden_sizes", hidden_sizes)
    activation = _check_activation("mlp", activation)
    dropout = _check_probability("mlp", "dropout", dropout)
    features = in_channels * input_size[0] * input_size[1]
    return _head([nn.Flatten()], features, hidden_sizes, activation, dropout, num_classes,
                 generator)


def _cnn(in_channels, num_classes, input_size, generator, channels, kernel_size,
         convs_per_block, hidden_sizes, activation, batch_norm, conv_dropout, dropout,
         name="cnn"):
    channels = _check_sizes(name, "channels", channels, allow_empty=False)
    _check_positive_int(name, "kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"{name}: option kernel_size must be odd (padding keeps the size), "
                         f"got {kernel_size}")
    _check_positive_int(name, "convs_per_block", convs_per_block)
    hidden_sizes = _check_sizes(name, "hidden_sizes", hidden_sizes)
    activation = _check_activation(name, activation)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"{name}: option batch_norm must be true or false, got {batch_norm!r}")
    conv_dropout = _check_probability(name, "conv_dropout", conv_dropout)
    dropout = _check_probability(name, "dropout", dropout)
    layers, height, width, previous = [], input_size[0], input_size[1], in_channels
    for block, width_out in enumerate(channels):
        for _ in range(convs_per_block):
            layers.append(nn.Conv2d(previous, width_out, kernel_size, padding=kernel_size // 2,
                                    bias=not batch_norm, generator=generator))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width_out))
            layers.append(ACTIVATIONS[activation]())
            previous = width_out
        try:
            height, width = output_hw(height, width, (2, 2), (2, 2), (0, 0), op="max_pool2d")
        except ValueError as error:
            raise ValueError(
                f"{name}: input_size {tuple(input_size)} is too small for {len(channels)} "
                f"blocks of 2x2 pooling (block {block + 1}): {error}"
            ) from None
        layers.append(nn.MaxPool2d(2))
        if conv_dropout > 0:
            layers.append(nn.Dropout(conv_dropout))
    layers.append(nn.Flatten())
    return _head(layers, previous * height * width, hidden_sizes, activation, dropout,
                 num_classes, generator)


def _cnn_bn(in_channels, num_classes, input_size, generator, **options):
    return _cnn(in_channels, num_classes, input_size, generator, name="cnn-bn", **options)


def _vit(in_channels, num_classes, input_size, generator, patch_size, hidden_dim, num_layers,
         num_heads, mlp_dim, dropout):
    for option, value in (("patch_size", patch_size), ("hidden_dim", hidden_dim),
                          ("num_layers", num_layers), ("num_heads", num_heads),
                          ("mlp_dim", mlp_dim)):
        _check_positive_int("vit", option, value)
    dropout = _check_probability("vit", "dropout", dropout)
    if input_size[0] % patch_size or input_size[1] % patch_size:
        raise ValueError(f"vit: input_size {tuple(input_size)} must be a multiple of "
                         f"patch_size {patch_size} on both sides")
    if hidden_dim % num_heads:
        raise ValueError(f"vit: hidden_dim {hidden_dim} must be divisible by num_heads "
                         f"{num_heads}")
    patches = (input_size[0] // patch_size) * (input_size[1] // patch_size)
    layers = [nn.Conv2d(in_channels, hidden_dim, patch_size, stride=patch_size,
                        generator=generator),
              nn.PatchTokens(patches, hidden_dim, generator=generator)]
    layers += [nn.TransformerEncoderLayer(hidden_dim, num_heads, mlp_dim, dropout, "gelu",
                                          batch_first=True, norm_first=True, generator=generator)
               for _ in range(num_layers)]
    layers += [nn.LayerNorm(hidden_dim), nn.SelectToken(0),
               nn.Linear(hidden_dim, num_classes, generator=generator)]
    return nn.Sequential(*layers)


_CNN_OPTIONS = ("channels", "kernel_size", "convs_per_block", "hidden_sizes", "activation",
                "batch_norm", "conv_dropout", "dropout")

MODELS = {
    "linear": ModelSpec(
        "linear", _linear, {}, "cross_entropy",
        "linear classifier, scores = Wx + b on the pixels, softmax loss",
    ),
    "svm": ModelSpec(
        "svm", _linear, {}, "hinge",
        "linear classifier trained with the multiclass SVM (hinge) loss",
    ),
    "mlp": ModelSpec(
        "mlp", _mlp, {"hidden_sizes": (512, 256), "activation": "relu", "dropout": 0.2},
        "cross_entropy", "fully connected network on the pixels",
    ),
    "cnn": ModelSpec(
        "cnn", _cnn,
        dict(zip(_CNN_OPTIONS, ((32, 64), 3, 1, (128,), "relu", False, 0.0, 0.25), strict=True)),
        "cross_entropy", "conv-ReLU-pool blocks then an MLP head",
    ),
    "cnn-bn": ModelSpec(
        "cnn-bn", _cnn_bn,
        dict(zip(_CNN_OPTIONS, ((32, 64), 3, 2, (256,), "relu", True, 0.1, 0.3), strict=True)),
        "cross_entropy", "deeper CNN: two conv-BN-ReLU per block, dropout",
    ),
    "vit": ModelSpec(
        "vit", _vit,
        {"patch_size": 4, "hidden_dim": 64, "num_layers": 6, "num_heads": 4, "mlp_dim": 128,
         "dropout": 0.0},
        "cross_entropy", "vision transformer: 4x4 patches as tokens, 6 pre-norm encoder layers",
    ),
}


def model_names():
    """The names build_model accepts, in the order of the family."""
    return list(MODELS)


def _jsonable(value):
    return [_jsonable(item) for item in value] if isinstance(value, list | tuple) else value


def build_model(name, in_channels=1, num_classes=10, input_size=(28, 28), generator=None,
                **options):
    """Build a member of the family by name.

    Args:
        name: one of `model_names()`: "linear", "svm", "mlp", "cnn", "cnn-bn", "vit".
        in_channels: C of the input images (1 for grey, 3 for colour). Default: 1.
        num_classes: K, the number of class scores. Default: 10.
        input_size: (H, W) of the input images. Default: (28, 28).
        generator: numpy.random.Generator for the initial weights. Default: cnnlab's.
        **options: the model's options (see `MODELS[name].defaults`); lists or tuples alike.

    Returns an `nn.Sequential` with `.config`, the JSON-ready recipe for `model_from_config`.
    Raises ValueError for an unknown name (listing the known ones), an unknown option
    (listing the model's options) or a bad value (naming it).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    spec = MODELS[name]
    unknown = sorted(set(options) - set(spec.defaults))
    if unknown:
        known = ", ".join(spec.defaults) or "none"
        raise ValueError(f"model {name!r} has no option {', '.join(unknown)}; its options: {known}")
    in_channels = _check_positive_int(name, "in_channels", in_channels)
    num_classes = _check_positive_int(name, "num_classes", num_classes)
    input_size = pair(input_size, f"{name}: input_size")
    if min(input_size) < 1:
        raise ValueError(f"{name}: input_size must be positive, got {input_size}")
    merged = {**spec.defaults, **options}
    merged = {key: tuple(value) if isinstance(value, list) else value
              for key, value in merged.items()}
    model = spec.build(in_channels, num_classes, input_size, generator, **merged)
    model.config = {
        "name": name,
        "options": {key: _jsonable(value) for key, value in merged.items()},
        "in_channels": in_channels,
        "num_classes": num_classes,
        "input_size": list(input_size),
    }
    return model


def model_config(model):
    """The JSON-ready recipe of a model made by `build_model`."""
    config = getattr(model, "config", None)
    if not isinstance(config, dict):
        raise ValueError(
            f"model_config: this {type(model).__name__} was not made by build_model, so it has "
            "no config to rebuild it from"
        )
    return config


def model_from_config(config, generator=None):
    """Rebuild a model from `model_config(model)` (as read back from JSON)."""
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"model_from_config: expected a dict with a 'name', got {config!r}")
    return build_model(
        config["name"],
        in_channels=config.get("in_channels", 1),
        num_classes=config.get("num_classes", 10),
        input_size=tuple(config.get("input_size", (28, 28))),
        generator=generator,
        **config.get("options", {}),
    )
