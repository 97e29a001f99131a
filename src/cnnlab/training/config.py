"""The configuration of a training run: TrainConfig, the per-model defaults, TOML files, resume.

    config = configure({"model": "mlp", "lr": 0.02}, config_file="run.toml")

`TrainConfig` holds every option; None means "the model's default" (MODEL_DEFAULTS), filled in
and checked by `resolve()`. `configure` merges the command line's options over a TOML file
over, when resuming, the run's own saved options. Every random choice of a run derives from
its seed through `derived_seed`.
"""

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab.checks import check_choice, check_number
from cnnlab.errors import CheckpointError
from cnnlab.features import FEATURES
from cnnlab.training.rundir import holds_run, read_train_state


class ModelDefaults(NamedTuple):
    optimizer: str
    lr: float
    momentum: float  # SGD and RMSprop only
    weight_decay: float
    schedule: str
    epochs: int
    batch_size: int
    warmup_epochs: int  # linear warm-up epochs before the schedule
    label_smoothing: float  # cross-entropy's, as PyTorch's


# The defaults of `cnnlab train --model NAME` (each overridable by its flag), chosen for the
# lecture's accuracy ladder, test accuracy on Fashion-MNIST: linear softmax >= 0.84, linear SVM
# >= 0.83, mlp >= 0.885, cnn >= 0.915 in under ten minutes on two cores, cnn-bn with --augment
# >= 0.93, vit >= 0.88. The architectures and their losses are cnnlab.models.MODELS. On two
# cores the cnn trains at about 3,300 images/s (10 epochs of 55,000: about 3 minutes), the
# cnn-bn with --augment at about 680 (20 epochs: about 28 minutes), the vit at about 90 under
# nice on a shared machine (9 epochs: about 90 minutes). The vit has a transformer's recipe:
# AdamW with decoupled weight decay, a linear warm-up (attention is unstable under a full
# learning rate from random weights) then cosine, label smoothing; no augmentation (in 9
# epochs a small ViT under-fits rather than over-fits).
MODEL_DEFAULTS = {
    #                       optimizer lr     momentum weight_decay schedule epochs batch_size
    #                       warmup_epochs label_smoothing
    "linear": ModelDefaults("adam",   0.001, 0.0,     0.0,         "cosine", 20,    128, 0, 0.0),
    "svm":    ModelDefaults("sgd",    0.001, 0.9,     1e-3,        "cosine", 20,    128, 0, 0.0),
    "mlp":    ModelDefaults("sgd",    0.05,  0.9,     5e-4,        "cosine", 20,    128, 0, 0.0),
    "cnn":    ModelDefaults("sgd",    0.05,  0.9,     5e-4,        "cosine", 10,    128, 0, 0.0),
    "cnn-bn": ModelDefaults("sgd",    0.05,  0.9,     5e-4,        "cosine", 20,    128, 0, 0.0),
    "vit":    ModelDefaults("adamw",  0.001, 0.0,     0.05,        "cosine", 9,     128, 2, 0.1),
}  # fmt: skip

# The models that take a flat input, and so can train on hand-designed features (--features).
FEATURE_MODELS = ("linear", "svm", "mlp")
FEATURE_NAMES = tuple(FEATURES)  # pixels, hog, color, polar
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "step", "linear", "constant")
VAL_SIZE = {"fashion-mnist": 5000, "mnist": 5000, "cifar10": 5000}  # folders: 10%
FOLDER_VAL_FRACTION = 0.1
EVAL_BATCH_SIZE = 500

# Options that decide the weights: a run can be resumed only with the same values.
FINGERPRINT = (
    "model", "dataset", "seed", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "schedule", "val_size", "limit_train", "augment", "margin", "image_size", "channels",
    "features", "warmup_epochs", "label_smoothing",
)  # fmt: skip


# ----- configuration ------------------------------------------------------------------------
@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. None means "the model's default" (see
    MODEL_DEFAULTS and `resolve`); `resolve()` returns a copy with those filled in and checks
    every value.

    Attributes:
        model: "linear", "svm", "mlp", "cnn", "cnn-bn" or "vit". Default: "cnn".
        dataset: "fashion-mnist", "mnist", "cifar10" or "folder:PATH".
        data_dir: the only place to look for the dataset (see cnnlab.data.load_dataset).
        download: fetch a built-in dataset's official files if they are not found.
        epochs, batch_size, optimizer, lr, momentum, weight_decay, schedule: the optimisation.
        warmup_epochs: epochs of linear learning-rate warm-up (from lr / (N + 1) up to lr)
            before the schedule, which then spans the remaining epochs; at most epochs - 1 are
            used. 0: none.
        label_smoothing: the cross-entropy's label smoothing e in [0, 1] (PyTorch's), in
            training; validation and test losses are the plain cross-entropy.
        seed: the seed every random choice derives from. Default: 0.
        val_size: validation images carved out of the training set: a count, or a fraction.
            Default: 5000 for the built-in datasets, 10% for folders.
        limit_train: use only the first N training images (after the validation split).
        augment: random flips/crops/shifts of the training images (per dataset).
        patience: stop early after this many epochs without a better validation accuracy.
        margin: the hinge loss's margin (model "svm").
        image_size, channels: for folders, the size (H, W) and channel count to convert to.
        features: train on these hand-designed features of the images instead of their
            pixels (names of cnnlab.features.FEATURES, e.g. ["hog", "color"]; a string
            "hog,color" is split at commas); models in FEATURE_MODELS only. Default: None.
        out: the run directory. Default: runs/<model>-<dataset>, or
            runs/<model>-<features>-<dataset> (runs/linear-hog-color-mnist).
    """

    model: str = "cnn"
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup_epochs: int | None = None
    label_smoothing: float | None = None
    seed: int = 0
    val_size: int | float | None = None
    limit_train: int | None = None
    augment: bool = False
    patience: int | None = None
    margin: float = 1.0
    image_size: list[int] | None = None
    channels: int | None = None
    features: list[str] | None = None
    out: str | None = None

    @property
    def defaults(self) -> ModelDefaults:
        return MODEL_DEFAULTS[self.model]

    def resolve(self) -> "TrainConfig":
        """A copy with every None that has a default filled in, validated."""
        check_choice("--model", self.model, MODEL_DEFAULTS)
        filled = {name: getattr(self.defaults, name) for name in ModelDefaults._fields
                  if name in FIELDS and getattr(self, name) is None}
        config = dataclasses.replace(self, **filled)
        if config.val_size is None:
            config.val_size = VAL_SIZE.get(config.dataset, FOLDER_VAL_FRACTION)
        config.features = _normal_form("features", config.features)
        if config.out is None:
            parts = [config.model, *(config.features or []), dataset_name(config.dataset)]
            config.out = str(Path("runs") / "-".join(parts))
        config.image_size = _normal_form("image_size", config.image_size)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the flag of the first bad value."""
        check_choice("--model", self.model, MODEL_DEFAULTS)
        if not isinstance(self.dataset, str) or not (
            self.dataset in VAL_SIZE or self.dataset.startswith("folder:")
        ):
            raise ValueError(f"--dataset must be one of {', '.join(VAL_SIZE)} or folder:PATH, "
                             f"got {self.dataset!r}")
        check_number("--epochs", self.epochs, integer=True, minimum=1)
        check_number("--batch-size", self.batch_size, integer=True, minimum=1)
        check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        check_number("--lr", self.lr, positive=True)
        check_number("--momentum", self.momentum, minimum=0)
        check_number("--weight-decay", self.weight_decay, minimum=0)
        check_choice("--schedule", self.schedule, SCHEDULES)
        check_number("--warmup-epochs", self.warmup_epochs, integer=True, minimum=0)
        check_number("--label-smoothing", self.label_smoothing, minimum=0, maximum=1)
        check_number("--seed", self.seed, integer=True, minimum=0)
        if isinstance(self.val_size, float) and not 0 < self.val_size < 1:
            raise ValueError(f"--val-size as a fraction must lie between 0 and 1, "
                             f"got {self.val_size}")
        if not isinstance(self.val_size, float):
            check_number("--val-size", self.val_size, integer=True, minimum=1)
        check_number("--limit-train", self.limit_train, integer=True, minimum=1, optional=True)
        check_number("--patience", self.patience, integer=True, minimum=1, optional=True)
        check_number("--margin", self.margin, positive=True)
        check_number("--channels", self.channels, integer=True, minimum=1, optional=True)
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.image_size is not None and (
            len(self.image_size) != 2 or any(not isinstance(v, int) or isinstance(v, bool)
                                             or v < 1 for v in self.image_size)):
            raise ValueError(f"--image-size must be a positive int or two, got {self.image_size}")
        if not self.dataset.startswith("folder:") and (self.image_size or self.channels):
            raise ValueError("--image-size and --channels apply to folder datasets only")
        self._validate_features()
        for flag, value in (("--augment", self.augment), ("--download", self.download)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be true or false, got {value!r}")
        for flag, value in (("--data-dir", self.data_dir), ("--out", self.out)):
            if value is not None and not isinstance(value, str | os.PathLike):
                raise ValueError(f"{flag} must be a path, got {value!r}")

    def _validate_features(self) -> None:
        if self.features is None:
            return
        names = self.features
        if not isinstance(names, list | tuple) or not names or not all(
                isinstance(name, str) for name in names):
            raise ValueError(f"--features must be feature names such as hog,color, got {names!r}")
        unknown = [name for name in names if name not in FEATURES]
        if unknown:
            raise ValueError(f"--features: unknown feature {', '.join(map(repr, unknown))}; "
                             f"known features: {', '.join(FEATURE_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"--features names a feature twice: {','.join(names)}")
        if self.model not in FEATURE_MODELS:
            raise ValueError(f"--features applies to --model {', '.join(FEATURE_MODELS)}, not "
                             f"{self.model} (a CNN learns its own features from the pixels)")
        if self.augment:
            raise ValueError("--augment applies to pixels, not --features (features are "
                             "computed once per image, before training)")


FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


def dataset_name(spec: str) -> str:
    """A short name for a dataset spec: "fashion-mnist", or "flowers" for "folder:data/flowers"."""
    if spec.startswith("folder:"):
        return Path(spec[len("folder:"):].rstrip("/")).name or "folder"
    return spec


def read_config_file(path) -> dict:
    """Options from a TOML file: keys as the long flags (`batch-size` or `batch_size`), at the
    top level or in a [train] table.

    Raises:
        ValueError naming the file: unreadable, not TOML, or an unknown option.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ValueError(f"config file {path}: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config file {path}: not valid TOML: {error}") from error
    table = document.get("train", document)
    if not isinstance(table, dict):
        raise ValueError(f"config file {path}: [train] must be a table")
    options = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ValueError(f"config file {path}: unknown option {key!r}")
        options[name] = value
    return options


def configure(options: dict, config_file=None, resume=False) -> TrainConfig:
    """The run's configuration, by precedence: `options` (the command line's, None meaning not
    given) over the config file over, when resuming, the run's own saved options over the
    model's defaults.

    Resuming, an option that decides the weights (FINGERPRINT) may not differ from the run's;
    `epochs`, `patience`, `data_dir` and `download` may.

    Raises:
        ValueError on a bad value, CheckpointError when there is nothing (or nothing
        compatible) to resume.
    """
    given = read_config_file(config_file) if config_file else {}
    given.update({name: value for name, value in options.items() if value is not None})
    unknown = set(given) - FIELDS
    if unknown:
        raise ValueError(f"unknown training options: {', '.join(sorted(unknown))}")
    if not resume:
        config = TrainConfig(**given).resolve()
        if given.get("out") is None:  # the default RUN_DIR: never one that holds a run
            config.out = str(free_run_dir(config.out))
        return config
    out = given.get("out") or TrainConfig(**given).resolve().out
    state = read_train_state(out)[1]
    saved = TrainConfig(**state["config"])
    mismatched = [
        f"--{name.replace('_', '-')} {given[name]} (the run has {getattr(saved, name)})"
        for name in FINGERPRINT
        if name in given and _differs(_normal_form(name, given[name]), getattr(saved, name))
    ]
    if mismatched:
        raise CheckpointError(f"cannot resume {out}: it was made with different options: "
                              + "; ".join(mismatched))
    config = dataclasses.replace(saved, **{**given, "out": str(out)}).resolve()
    done = state["epoch"] + (state["partial"]["seen"] > 0)
    if config.epochs < done:
        raise ValueError(f"--epochs {config.epochs}: the run in {out} is already "
                         f"{'in epoch' if done > state['epoch'] else 'at'} {done}")
    return config


def free_run_dir(out) -> Path:
    """`out` if it holds no run, else the first of out-2, out-3, ... that holds none."""
    out = Path(out)
    candidate, number = out, 1
    while holds_run(candidate):
        number += 1
        candidate = out.with_name(f"{out.name}-{number}")
    return candidate


def _normal_form(name, value):
    """The form `resolve` stores: features "hog,color" -> ["hog", "color"], image_size 28 ->
    [28, 28], tuples -> lists."""
    if name == "features" and isinstance(value, str):
        return [part.strip() for part in value.split(",")]
    if name == "image_size" and isinstance(value, int) and not isinstance(value, bool):
        return [value, value]
    return list(value) if isinstance(value, tuple) else value


def _differs(given, saved) -> bool:
    if isinstance(given, list | tuple) and isinstance(saved, list | tuple):
        return list(given) != list(saved)
    return given != saved


def derived_seed(seed: int, stream: str) -> int:
    """An independent non-negative int seed for one purpose: "split", "init", "dropout" or
    "loader"."""
    words = [ord(char) for char in stream]
    state = np.random.SeedSequence([seed, *words]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1
