"""Training you can run and trust: configuration, the Trainer, resume, and the run directory.

A run lives in one directory, RUN_DIR:

    model.safetensors, model.json   final weights; architecture, classes, preprocessing
                                    (input size, channels, mean, std), epoch, metrics
    best.safetensors, best.json     the weights of the epoch with the best validation accuracy
    last.safetensors, last.json     everything needed to resume: model, optimiser, schedule,
                                    loader position, random generator, history
    metrics.jsonl                   one JSON object per finished epoch
    curves.png, confusion.png       loss/accuracy curves and the test confusion matrix

Reproducibility: every random choice comes from `config.seed`. The validation split, the
weight initialisation, dropout (cnnlab's default generator, reseeded) and the loader's
per-epoch order and augmentation each use their own seed derived from it. The dropout
generator's state and the loader's position are checkpointed, so a run interrupted (at an epoch
boundary or in the middle of one) and resumed ends with the same weights, bit for bit, as one
left alone.

Data: the validation set is a seeded random `val_size` images of the training set; then
`limit_train` keeps the first N of the remaining training images (for quick runs). The test set
is the dataset's own, used once at the end.
"""

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
import tomllib
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from cnnlab import rng, viz
from cnnlab.checkpoint import (
    flatten_state,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
    unflatten_state,
)
from cnnlab.data import (
    Compose,
    DataLoader,
    RandomCrop,
    RandomHorizontalFlip,
    RandomTranslate,
    channel_stats,
    load_dataset,
    load_image,
    train_val_split,
)
from cnnlab.errors import CheckpointError
from cnnlab.models import MODELS, build_model
from cnnlab.nn import functional as F
from cnnlab.optim import SGD, Adam, AdamW, RMSprop, lr_scheduler
from cnnlab.tensor import Tensor, no_grad


class ModelDefaults(NamedTuple):
    optimizer: str
    lr: float
    momentum: float  # SGD and RMSprop only
    weight_decay: float
    schedule: str
    epochs: int
    batch_size: int


# The defaults of `cnnlab train --model NAME` (each overridable by its flag), chosen for the
# lecture's accuracy ladder, test accuracy on Fashion-MNIST: linear softmax >= 0.84, linear SVM
# >= 0.83, mlp >= 0.885, cnn >= 0.915 in under ten minutes on two cores, cnn-bn with --augment
# >= 0.93. The architectures and their losses are cnnlab.models.MODELS. On two cores the cnn
# trains at about 1,900 images/s (10 epochs of 55,000: about 5 minutes), the cnn-bn at about
# 550 (20 epochs: about 35 minutes).
MODEL_DEFAULTS = {
    #                       optimizer lr     momentum weight_decay schedule epochs batch_size
    "linear": ModelDefaults("adam",   0.001, 0.0,     0.0,         "cosine", 20,    128),
    "svm":    ModelDefaults("sgd",    0.001, 0.9,     1e-3,        "cosine", 20,    128),
    "mlp":    ModelDefaults("sgd",    0.05,  0.9,     5e-4,        "cosine", 20,    128),
    "cnn":    ModelDefaults("sgd",    0.05,  0.9,     5e-4,        "cosine", 10,    128),
    "cnn-bn": ModelDefaults("sgd",    0.05,  0.9,     5e-4,        "cosine", 20,    128),
}  # fmt: skip

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "step", "linear", "constant")
VAL_SIZE = {"fashion-mnist": 5000, "mnist": 5000, "cifar10": 5000}  # folders: 10%
FOLDER_VAL_FRACTION = 0.1
EVAL_BATCH_SIZE = 500

# Options that decide the weights: a run can be resumed only with the same values.
FINGERPRINT = (
    "model", "dataset", "seed", "batch_size", "optimizer", "lr", "momentum", "weight_decay",
    "schedule", "val_size", "limit_train", "augment", "margin", "image_size", "channels",
)  # fmt: skip


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the message names the epoch and step."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after saving a resumable checkpoint.

    Attributes:
        checkpoint: path (without suffix) of the saved training state.
        epoch, step: where it stopped (1-based epoch; step 0 at an epoch boundary).
    """

    def __init__(self, message, checkpoint, epoch, step):
        super().__init__(message)
        self.checkpoint, self.epoch, self.step = checkpoint, epoch, step


# ----- configuration ------------------------------------------------------------------------
@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run. None means "the model's default" (see
    MODEL_DEFAULTS and `resolve`); `resolve()` returns a copy with those filled in and checks
    every value.

    Attributes:
        model: "linear", "svm", "mlp", "cnn" or "cnn-bn". Default: "cnn".
        dataset: "fashion-mnist", "mnist", "cifar10" or "folder:PATH".
        data_dir: the only place to look for the dataset (see cnnlab.data.load_dataset).
        download: fetch a built-in dataset's official files if they are not found.
        epochs, batch_size, optimizer, lr, momentum, weight_decay, schedule: the optimisation.
        seed: the seed every random choice derives from. Default: 0.
        val_size: validation images carved out of the training set: a count, or a fraction.
            Default: 5000 for the built-in datasets, 10% for folders.
        limit_train: use only the first N training images (after the validation split).
        augment: random flips/crops/shifts of the training images (per dataset).
        patience: stop early after this many epochs without a better validation accuracy.
        margin: the hinge loss's margin (model "svm").
        image_size, channels: for folders, the size (H, W) and channel count to convert to.
        out: the run directory. Default: runs/<model>-<dataset>.
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
    seed: int = 0
    val_size: int | float | None = None
    limit_train: int | None = None
    augment: bool = False
    patience: int | None = None
    margin: float = 1.0
    image_size: list[int] | None = None
    channels: int | None = None
    out: str | None = None

    @property
    def defaults(self) -> ModelDefaults:
        return MODEL_DEFAULTS[self.model]

    def resolve(self) -> "TrainConfig":
        """A copy with every None that has a default filled in, validated."""
        _check_choice("--model", self.model, MODEL_DEFAULTS)
        filled = {name: getattr(self.defaults, name) for name in ModelDefaults._fields
                  if name in FIELDS and getattr(self, name) is None}
        config = dataclasses.replace(self, **filled)
        if config.val_size is None:
            config.val_size = VAL_SIZE.get(config.dataset, FOLDER_VAL_FRACTION)
        if config.out is None:
            config.out = str(Path("runs") / f"{config.model}-{dataset_name(config.dataset)}")
        if isinstance(config.image_size, int):
            config.image_size = [config.image_size, config.image_size]
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ValueError naming the flag of the first bad value."""
        _check_choice("--model", self.model, MODEL_DEFAULTS)
        if not isinstance(self.dataset, str) or not (
            self.dataset in VAL_SIZE or self.dataset.startswith("folder:")
        ):
            raise ValueError(f"--dataset must be one of {', '.join(VAL_SIZE)} or folder:PATH, "
                             f"got {self.dataset!r}")
        _check_number("--epochs", self.epochs, integer=True, minimum=1)
        _check_number("--batch-size", self.batch_size, integer=True, minimum=1)
        _check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        _check_number("--lr", self.lr, positive=True)
        _check_number("--momentum", self.momentum, minimum=0)
        _check_number("--weight-decay", self.weight_decay, minimum=0)
        _check_choice("--schedule", self.schedule, SCHEDULES)
        _check_number("--seed", self.seed, integer=True, minimum=0)
        if isinstance(self.val_size, float) and not 0 < self.val_size < 1:
            raise ValueError(f"--val-size as a fraction must lie between 0 and 1, "
                             f"got {self.val_size}")
        if not isinstance(self.val_size, float):
            _check_number("--val-size", self.val_size, integer=True, minimum=1)
        _check_number("--limit-train", self.limit_train, integer=True, minimum=1, optional=True)
        _check_number("--patience", self.patience, integer=True, minimum=1, optional=True)
        _check_number("--margin", self.margin, positive=True)
        _check_number("--channels", self.channels, integer=True, minimum=1, optional=True)
        if self.channels is not None and self.channels not in (1, 3):
            raise ValueError(f"--channels must be 1 or 3, got {self.channels}")
        if self.image_size is not None and (
            len(self.image_size) != 2 or any(not isinstance(v, int) or isinstance(v, bool)
                                             or v < 1 for v in self.image_size)):
            raise ValueError(f"--image-size must be a positive int or two, got {self.image_size}")
        if not self.dataset.startswith("folder:") and (self.image_size or self.channels):
            raise ValueError("--image-size and --channels apply to folder datasets only")
        for flag, value in (("--augment", self.augment), ("--download", self.download)):
            if not isinstance(value, bool):
                raise ValueError(f"{flag} must be true or false, got {value!r}")
        for flag, value in (("--data-dir", self.data_dir), ("--out", self.out)):
            if value is not None and not isinstance(value, str | os.PathLike):
                raise ValueError(f"{flag} must be a path, got {value!r}")


FIELDS = {field.name for field in dataclasses.fields(TrainConfig)}


def _check_choice(flag, value, choices):
    if value not in choices:
        raise ValueError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def _check_number(flag, value, integer=False, minimum=None, positive=False, optional=False):
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or (integer and not isinstance(value, int)) or not math.isfinite(value):
        raise ValueError(f"{flag} must be {kind}, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{flag} must be positive, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{flag} must be at least {minimum}, got {value}")


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
        return TrainConfig(**given).resolve()
    out = given.get("out") or TrainConfig(**given).resolve().out
    state = read_train_state(out)[1]
    saved = TrainConfig(**state["config"])
    mismatched = [
        f"--{name.replace('_', '-')} {given[name]} (the run has {getattr(saved, name)})"
        for name in FINGERPRINT if name in given and _differs(given[name], getattr(saved, name))
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


# ----- data and the pieces of a run ---------------------------------------------------------
def prepare_data(config: TrainConfig):
    """(train, val, test) ImageDatasets for a resolved config; see the module docstring."""
    image_size = tuple(config.image_size) if config.image_size else None
    full, test = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                              image_size=image_size, channels=config.channels)
    try:
        train, val = train_val_split(full, config.val_size, derived_seed(config.seed, "split"))
    except ValueError as error:
        raise ValueError(f"--val-size {config.val_size}: {error}") from error
    if config.limit_train is not None and config.limit_train < len(train):
        train = train.subset(np.arange(config.limit_train))
    return train, val, test


def augmentation(dataset: str, image_shape):
    """The training augmentation for a dataset: random shifts for digits (a flipped digit is
    another shape), flips and padded crops (2 pixels at 28, 4 at 32) for clothes and objects."""
    height = image_shape[1]
    if dataset == "mnist":
        return RandomTranslate(2)
    return Compose([RandomHorizontalFlip(), RandomCrop(padding=max(1, height // 8))])


def make_optimizer(config: TrainConfig, parameters):
    """The optimiser named by `config.optimizer`; SGD uses Nesterov momentum when momentum > 0,
    Adam and AdamW ignore `momentum` (their betas are PyTorch's defaults)."""
    parameters = list(parameters)
    if config.optimizer == "sgd":
        return SGD(parameters, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                   weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return RMSprop(parameters, lr=config.lr, momentum=config.momentum,
                       weight_decay=config.weight_decay)
    optimizer = Adam if config.optimizer == "adam" else AdamW
    return optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: TrainConfig, optimizer):
    """The learning-rate schedule, stepped once per epoch: cosine to zero over the run, a tenth
    every third of the run, linear down to 1%, or constant."""
    if config.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    end = 0.01 if config.schedule == "linear" else 1.0
    return lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=end,
                                 total_iters=config.epochs)


def loss_function(name: str, margin: float = 1.0):
    """loss(scores (N, K) Tensor, labels (N,), reduction) -> Tensor, by name."""
    if name == "hinge":
        return lambda scores, labels, reduction="mean": F.multiclass_hinge_loss(
            scores, labels, margin=margin, reduction=reduction)
    return lambda scores, labels, reduction="mean": F.cross_entropy(scores, labels, reduction)


def evaluate(model, loader: DataLoader, loss, classes, progress=False, description="eval"):
    """Loss and accuracy of `model` on every batch of `loader` (in order, no augmentation).

    Returns:
        dict with loss (mean per image), accuracy, per_class_accuracy (class name -> accuracy,
        None for a class with no images), confusion_matrix (K x K lists, rows true classes,
        columns predictions) and count.
    """
    count = len(classes)
    confusion = np.zeros((count, count), dtype=np.int64)
    loss_sum, was_training = 0.0, model.training
    model.eval()
    try:
        with no_grad():
            for index in tqdm(range(len(loader)), desc=description, leave=False,
                              disable=not progress):
                x, y = loader.batch(0, index)
                scores = model(Tensor(x))
                loss_sum += float(loss(scores, y, reduction="sum").data)
                np.add.at(confusion, (y, scores.data.argmax(axis=1)), 1)
    finally:
        model.train(was_training)
    return metrics_from_confusion(confusion, loss_sum, classes)


def metrics_from_confusion(confusion: np.ndarray, loss_sum: float, classes) -> dict:
    total = int(confusion.sum())
    support = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[k, k] / support[k]) if support[k] else None)
        for k, name in enumerate(classes)
    }
    return {
        "loss": loss_sum / max(total, 1),
        "accuracy": float(np.trace(confusion) / max(total, 1)),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "count": total,
    }


# ----- the trainer --------------------------------------------------------------------------
STATE_FORMAT = "cnnlab-train-state/1"
MODEL_FORMAT = "cnnlab-model/1"


def _fresh_partial() -> dict:
    """Running sums of the epoch in progress (checkpointed, so a resumed epoch reports the same
    loss and accuracy as an uninterrupted one)."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


class Trainer:
    """Trains a model from `config` on `train_set`, evaluating on `val_set` after every epoch.

    Each epoch: one pass over the shuffled (and, with `config.augment`, augmented) training
    set, one optimiser step per batch; then the validation loss, accuracy, per-class accuracy
    and confusion matrix; then one schedule step. After it the trainer appends a record to
    `history` and metrics.jsonl, saves RUN_DIR/last (resumable state) and, when the validation
    accuracy improved, RUN_DIR/best. With `config.patience`, it stops after that many epochs
    without improvement.

    Stopping:
        A NaN or infinite loss raises TrainingDiverged before the step is taken; RUN_DIR/last
        keeps the last good state. Ctrl-C (SIGINT, or a KeyboardInterrupt raised by `on_step`)
        finishes the current step, saves RUN_DIR/last and raises TrainingInterrupted; a second
        Ctrl-C aborts at once, without saving.

    Args:
        config: a resolved TrainConfig.
        train_set, val_set: ImageDatasets of the same image shape and classes.
        run_dir: where the run's files go. Default: config.out.
        progress: show a tqdm progress bar on stderr. Default: False.
        log: callable(str) receiving one line per epoch. Default: silent.
        on_step: callable(trainer, epoch, step) after each optimiser step (epoch 0-based,
            step 1-based within the epoch).
        interrupt_after_steps: act as if Ctrl-C came after this many steps in this process
            (for tests of resume).
    """

    def __init__(self, config: TrainConfig, train_set, val_set, run_dir=None, progress=False,
                 log=None, on_step=None, interrupt_after_steps=None):
        self.config = config
        self.run_dir = Path(run_dir if run_dir is not None else config.out)
        self.classes = list(train_set.classes)
        self.image_shape = tuple(train_set.image_shape)  # (C, H, W)
        self.mean, self.std = channel_stats(train_set)
        channels, height, width = self.image_shape
        self.model = build_model(
            config.model, in_channels=channels, num_classes=len(self.classes),
            input_size=(height, width),
            generator=np.random.default_rng(derived_seed(config.seed, "init")))
        rng.manual_seed(derived_seed(config.seed, "dropout"))  # the default generator's state
        self.loss = loss_function(MODELS[config.model].loss, config.margin)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.scheduler = make_scheduler(config, self.optimizer)
        augment = augmentation(config.dataset, self.image_shape) if config.augment else None
        self.train_loader = DataLoader(
            train_set, config.batch_size, shuffle=True, seed=derived_seed(config.seed, "loader"),
            mean=self.mean, std=self.std, augment=augment)
        self.val_loader = DataLoader(val_set, EVAL_BATCH_SIZE, seed=0, mean=self.mean,
                                     std=self.std)
        self.progress, self.log = progress, log or (lambda line: None)
        self.on_step, self.interrupt_after_steps = on_step, interrupt_after_steps
        self.epoch = 0  # epochs finished
        self.history = []  # one record per finished epoch, as in metrics.jsonl
        self.best = {"epoch": None, "val_accuracy": None}
        self.stopped_early = False
        self.partial = _fresh_partial()
        self.steps_taken = 0  # optimiser steps taken by this process
        self._stop_requested = False

    # ----- the loop -------------------------------------------------------------------------
    def fit(self) -> list[dict]:
        """Train until `config.epochs` epochs are done in total (or an early stop); returns the
        history. Continues from wherever the trainer stands (after `load_state`)."""
        # Overflow is caught as a non-finite loss (TrainingDiverged), not warned about.
        with self._deferred_interrupts(), np.errstate(over="ignore", invalid="ignore"):
            try:
                while self.epoch < self.config.epochs and not self.stopped_early:
                    self._run_epoch()
            except TrainingInterrupted:
                raise
            except KeyboardInterrupt:  # a second Ctrl-C: the state on disk is the last epoch's
                path = self.run_dir / "last"
                raise TrainingInterrupted(
                    f"interrupted without saving; {path} holds the state after epoch "
                    f"{self.epoch}", path, self.epoch, 0) from None
        return self.history

    def evaluate(self, dataset, description="evaluate") -> dict:
        """`evaluate`'s metrics of the current model on `dataset`, preprocessed as in training."""
        loader = DataLoader(dataset, EVAL_BATCH_SIZE, seed=0, mean=self.mean, std=self.std)
        return evaluate(self.model, loader, self.loss, self.classes, self.progress, description)

    def _run_epoch(self) -> None:
        epoch, total = self.epoch, self.config.epochs
        lr = float(self.optimizer.param_groups[0]["lr"])
        self._train_epoch(epoch)
        started = time.perf_counter()
        val = evaluate(self.model, self.val_loader, self.loss, self.classes, self.progress,
                       "validate")
        partial = self.partial
        improved = self.best["val_accuracy"] is None or val["accuracy"] > self.best["val_accuracy"]
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": partial["loss_sum"] / partial["seen"],
            "train_accuracy": partial["correct"] / partial["seen"],
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "val_per_class_accuracy": val["per_class_accuracy"],
            "val_confusion_matrix": val["confusion_matrix"],
            "images_per_second": partial["seen"] / max(partial["seconds"], 1e-9),
            "seconds": partial["seconds"] + time.perf_counter() - started,
            "best": improved,
        }
        self.history.append(record)
        self.scheduler.step()
        self.epoch, self.partial = epoch + 1, _fresh_partial()
        if improved:
            self.best = {"epoch": epoch + 1, "val_accuracy": val["accuracy"]}
            self.save_model(self.run_dir / "best")
        patience = self.config.patience
        if patience is not None and self.epoch - self.best["epoch"] >= patience:
            self.stopped_early = True
        self.save_state()
        self.log(format_epoch(record, total))
        if self.stopped_early:
            self.log(f"early stop: no better validation accuracy for {patience} epochs "
                     f"(best {self.best['val_accuracy']:.4f} at epoch {self.best['epoch']})")
        if self._stop_requested and self.epoch < total and not self.stopped_early:
            path = self.run_dir / "last"
            raise TrainingInterrupted(f"interrupted after epoch {self.epoch}; saved {path}",
                                      path, self.epoch, 0)

    def _train_epoch(self, epoch: int) -> None:
        loader, partial = self.train_loader, self.partial
        self.model.train()
        bar = tqdm(total=len(loader), initial=loader.position, leave=False, unit="batch",
                   desc=f"epoch {epoch + 1}/{self.config.epochs}", disable=not self.progress)
        started, seconds_before = time.perf_counter(), partial["seconds"]
        try:
            for x, y in loader:
                step = loader.position
                self._step(x, y, epoch, step)
                partial["seconds"] = seconds_before + time.perf_counter() - started
                bar.update(1)
                bar.set_postfix(loss=f"{partial['loss_sum'] / partial['seen']:.4f}",
                                acc=f"{partial['correct'] / partial['seen']:.4f}",
                                img_s=f"{partial['seen'] / partial['seconds']:.0f}",
                                refresh=False)
                self._after_step(epoch, step)
        finally:
            bar.close()

    def _step(self, x: np.ndarray, y: np.ndarray, epoch: int, step: int) -> None:
        scores = self.model(Tensor(x))
        loss = self.loss(scores, y)
        value = float(loss.data)
        if not math.isfinite(value):
            raise TrainingDiverged(self._divergence_message(value, epoch, step))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.partial["loss_sum"] += value * len(y)
        self.partial["correct"] += int((scores.data.argmax(axis=1) == y).sum())
        self.partial["seen"] += len(y)
        self.steps_taken += 1

    def _divergence_message(self, value, epoch, step) -> str:
        if self.epoch > 0:
            kept = f"the last good checkpoint, {self.run_dir / 'last'}, is from epoch {self.epoch}"
        else:
            kept = f"the checkpoint {self.run_dir / 'last'} holds the initial weights"
        lr = self.optimizer.param_groups[0]["lr"]
        return (f"training diverged: the loss is {value} at epoch {epoch + 1}, step {step} of "
                f"{len(self.train_loader)}; {kept}; try a smaller --lr (it is {lr:g})")

    def _after_step(self, epoch: int, step: int) -> None:
        """Callbacks, then the Ctrl-C check: stop here mid-epoch, or after the epoch's last step
        at the end of the epoch (after validation), so a checkpoint is always whole."""
        if self.on_step is not None:
            try:
                self.on_step(self, epoch, step)
            except KeyboardInterrupt:
                self._stop_requested = True
        limit = self.interrupt_after_steps
        if limit is not None and self.steps_taken >= limit:
            self._stop_requested = True
        if self._stop_requested and step < len(self.train_loader):
            path = self.save_state()
            raise TrainingInterrupted(
                f"interrupted in epoch {epoch + 1} after step {step} of "
                f"{len(self.train_loader)}; saved {path}", path, epoch + 1, step)

    @contextlib.contextmanager
    def _deferred_interrupts(self):
        """Within it, the first Ctrl-C only asks the loop to stop after the current step."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, without saving
            self._stop_requested = True

        previous = signal.signal(signal.SIGINT, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    # ----- saving and resuming --------------------------------------------------------------
    def preprocessing(self) -> dict:
        """How an image becomes the model's input; predict repeats it for new images."""
        channels, height, width = self.image_shape
        return {"input_size": [height, width], "channels": channels,
                "mean": self.mean.tolist(), "std": self.std.tolist(),
                "resize": "bilinear", "normalise": "(pixel / 255 - mean) / std"}

    def model_metadata(self, metrics=None) -> dict:
        return {
            "format": MODEL_FORMAT,
            "loss": MODELS[self.config.model].loss,
            "classes": self.classes,
            "preprocessing": self.preprocessing(),
            "dataset": self.config.dataset,
            "epoch": self.epoch,
            "best": self.best,
            "metrics": metrics or (self.history[-1] if self.history else {}),
            "training": dataclasses.asdict(self.config),
        }

    def save_model(self, path, metrics=None) -> Path:
        """The model alone (path.safetensors + path.json), for evaluate and predict."""
        save_model(path, self.model, self.model_metadata(metrics))
        return Path(path)

    def save_state(self) -> Path:
        """Everything needed to continue, in RUN_DIR/last.*, and the history in metrics.jsonl."""
        arrays = {f"model.{key}": value for key, value in self.model.state_dict().items()}
        optimizer_arrays, optimizer_tree = flatten_state("optimizer", self.optimizer.state_dict())
        scheduler_arrays, scheduler_tree = flatten_state("scheduler", self.scheduler.state_dict())
        arrays.update(optimizer_arrays)
        arrays.update(scheduler_arrays)
        metadata = {
            "format": STATE_FORMAT,
            "config": dataclasses.asdict(self.config),
            "model": self.model.config,  # so load_model(RUN_DIR/last, prefix="model.") works
            "classes": self.classes,
            "preprocessing": self.preprocessing(),
            "epoch": self.epoch,
            "optimizer": optimizer_tree,
            "scheduler": scheduler_tree,
            "loader": self.train_loader.state_dict(),
            "rng": rng.get_rng_state(),
            "history": self.history,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "partial": self.partial,
        }
        path = self.run_dir / "last"
        save_checkpoint(path, arrays, metadata)
        write_metrics(self.run_dir, self.history)
        return path

    def load_state(self, arrays: dict, metadata: dict) -> None:
        """Continue from `save_state`'s arrays and metadata (see `read_train_state`).

        Raises:
            CheckpointError when the state does not fit this trainer (other data or options).
        """
        saved = metadata["preprocessing"]
        if saved["mean"] != self.mean.tolist() or saved["std"] != self.std.tolist():
            raise CheckpointError(f"cannot resume {self.run_dir}: the training images differ "
                                  "from the run's (their mean and std do not match)")
        try:
            self.model.load_state_dict({key[len("model."):]: value for key, value in
                                        arrays.items() if key.startswith("model.")})
            self.optimizer.load_state_dict(unflatten_state(arrays, metadata["optimizer"]))
            self.scheduler.load_state_dict(unflatten_state(arrays, metadata["scheduler"]))
            self.train_loader.load_state_dict(metadata["loader"])
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"cannot resume {self.run_dir}: {error}") from error
        _retarget_schedule(self.scheduler, self.config.epochs)
        rng.set_rng_state(metadata["rng"])
        self.epoch, self.history = metadata["epoch"], metadata["history"]
        self.best, self.stopped_early = metadata["best"], metadata["stopped_early"]
        self.partial = metadata["partial"]


def _retarget_schedule(scheduler, epochs: int) -> None:
    """Stretch a restored schedule to a new total of epochs (resuming with a larger --epochs)."""
    if hasattr(scheduler, "T_max"):
        scheduler.T_max = epochs
    elif hasattr(scheduler, "total_iters"):
        scheduler.total_iters = epochs
    elif hasattr(scheduler, "step_size"):
        scheduler.step_size = max(1, epochs // 3)


def format_epoch(record: dict, total: int) -> str:
    """One line for the log: epoch, losses, accuracies, learning rate, speed."""
    return (f"epoch {record['epoch']}/{total}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.4f}  val loss {record['val_loss']:.4f} "
            f"acc {record['val_accuracy']:.4f}  lr {record['lr']:.3g}  "
            f"{record['images_per_second']:.0f} img/s  {record['seconds']:.1f}s"
            + ("  *" if record["best"] else ""))


def write_metrics(run_dir, history: list[dict]) -> Path:
    """metrics.jsonl: one JSON object per finished epoch, rewritten whole (atomically)."""
    path = Path(run_dir) / "metrics.jsonl"
    text = "".join(json.dumps(record) + "\n" for record in history)
    return _write_text(path, text)


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON lines: {error}") from error


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def read_train_state(run_dir) -> tuple[dict, dict]:
    """(arrays, metadata) of RUN_DIR/last, the state `--resume` continues from.

    Raises:
        CheckpointError when RUN_DIR holds no resumable run, or its state is damaged.
    """
    path = Path(run_dir) / "last"
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"cannot resume {run_dir}: no such run directory")
    if not path.with_suffix(".json").exists():
        raise CheckpointError(f"cannot resume {run_dir}: it holds no training state "
                              f"({path}.json is missing)")
    arrays, metadata = load_checkpoint(path)
    if not isinstance(metadata, dict) or metadata.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab training state")
    return arrays, metadata


# ----- whole runs: train, evaluate, predict, plot -------------------------------------------
RUN_FILES = ("model", "best", "last")  # each as .safetensors and .json
PLOTS = ("curves.png", "confusion.png")


def start_run_dir(run_dir) -> Path:
    """Create RUN_DIR for a fresh run, removing a previous run's files from it (only those)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir}: exists and is not a directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    stale = [f"{stem}{suffix}" for stem in RUN_FILES for suffix in (".safetensors", ".json")]
    for name in [*stale, *PLOTS, "metrics.jsonl"]:
        (run_dir / name).unlink(missing_ok=True)
    return run_dir


def train(config: TrainConfig, resume=False, progress=False, log=None,
          interrupt_after_steps=None) -> dict:
    """Run `config` from start to finish (or continue RUN_DIR's run with `resume`): train,
    evaluate the final model on the test set, save it to RUN_DIR/model.* and draw the plots.

    Returns:
        a summary: run_dir, model (path), epochs, best_epoch, best_val_accuracy,
        val_accuracy, test_accuracy, test_loss, stopped_early, plots, seconds.

    Raises:
        TrainingInterrupted (Ctrl-C, checkpoint saved), TrainingDiverged, DatasetError,
        CheckpointError, ValueError.
    """
    log = log or (lambda line: None)
    train_set, val_set, test_set = prepare_data(config)
    log(f"{config.dataset}: {len(train_set)} training, {len(val_set)} validation, "
        f"{len(test_set)} test images of shape {train_set.image_shape}")
    trainer = Trainer(config, train_set, val_set, progress=progress, log=log,
                      interrupt_after_steps=interrupt_after_steps)
    if resume:
        trainer.load_state(*read_train_state(trainer.run_dir))
        log(f"resuming {trainer.run_dir} after {trainer.epoch} epochs"
            + (f" and {trainer.train_loader.position} steps" if trainer.partial["seen"] else ""))
    else:
        if (trainer.run_dir / "last.json").exists():
            log(f"replacing the previous run in {trainer.run_dir}")
        start_run_dir(trainer.run_dir)
        trainer.save_state()  # a resumable (and "last good") state from the start
    started = time.perf_counter()
    trainer.fit()
    test = trainer.evaluate(test_set, "test")
    last = trainer.history[-1] if trainer.history else {}
    metrics = {"test_" + key: value for key, value in test.items()}
    metrics.update({key: last[key] for key in ("train_loss", "train_accuracy", "val_loss",
                                               "val_accuracy") if key in last})
    path = trainer.save_model(trainer.run_dir / "model", metrics)
    plots = write_plots(trainer.run_dir)
    return {
        "run_dir": str(trainer.run_dir),
        "model": str(path) + ".safetensors",
        "epochs": trainer.epoch,
        "best_epoch": trainer.best["epoch"],
        "best_val_accuracy": trainer.best["val_accuracy"],
        "val_accuracy": last.get("val_accuracy"),
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "stopped_early": trainer.stopped_early,
        "plots": [str(plot) for plot in plots],
        "seconds": time.perf_counter() - started,
    }


def load_trained_model(path):
    """(model, metadata) of a trained model: RUN_DIR (its model.*), or a checkpoint path with
    or without its .safetensors/.json suffix (RUN_DIR/best, say). The model is in eval mode.

    Raises:
        CheckpointError when it is missing, damaged, or not a trained cnnlab model.
    """
    path = Path(path)
    if not path.exists() and not path.with_name(path.name + ".safetensors").exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    if path.is_dir():
        if not (path / "model.json").exists() and (path / "last.json").exists():
            raise CheckpointError(f"{path}: the run has not finished (no model.json yet); "
                                  f"resume it with --resume, or use {path / 'best'}")
        path = path / "model"
    elif path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    model, metadata = load_model(path)
    if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path}: not a model trained by cnnlab train (no classes and "
                              "preprocessing in its metadata)")
    return model.eval(), metadata


def evaluate_run(path, dataset=None, data_dir=None, download=False, split="test",
                 progress=False) -> dict:
    """Loss and accuracy of a trained model on a dataset's test set (or the run's validation
    split), preprocessed as in training.

    Args:
        path: RUN_DIR or a model checkpoint (see `load_trained_model`).
        dataset: a dataset spec. Default: the one the model was trained on.
        split: "test" or "val" (the run's own seeded validation split).

    Returns:
        `evaluate`'s dict plus model, dataset and split.
    """
    model, metadata = load_trained_model(path)
    spec = dataset or metadata["dataset"]
    data = _load_matching(metadata, spec, data_dir, download, split)
    prep = metadata["preprocessing"]
    loader = DataLoader(data, EVAL_BATCH_SIZE, seed=0, mean=prep["mean"], std=prep["std"])
    loss = loss_function(metadata["loss"], metadata["training"].get("margin", 1.0))
    result = evaluate(model, loader, loss, metadata["classes"], progress, "evaluate")
    return {"model": str(path), "dataset": spec, "split": split, **result}


def _load_matching(metadata, spec, data_dir, download, split):
    """The `split` of dataset `spec`, checked against the model's input shape and classes."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    prep = metadata["preprocessing"]
    folder = spec.startswith("folder:")
    train, test = load_dataset(spec, data_dir=data_dir, download=download,
                               image_size=tuple(prep["input_size"]) if folder else None,
                               channels=prep["channels"] if folder else None)
    data = test
    if split == "val":
        training = metadata["training"]
        data = train_val_split(train, training["val_size"],
                               seed=derived_seed(training["seed"], "split"))[1]
    expected = (prep["channels"], *prep["input_size"])
    if tuple(data.image_shape) != expected:
        raise ValueError(f"{spec}: images of shape {data.image_shape}, but the model takes "
                         f"{expected}")
    if list(data.classes) != list(metadata["classes"]):
        raise ValueError(f"{spec}: classes {data.classes} differ from the model's "
                         f"{metadata['classes']}")
    return data


def predict(path, images, top_k=3) -> list[dict]:
    """The top-k classes of each image file, as the model sees it after training's
    preprocessing (resized to the input size, converted to its channels, normalised).

    Returns:
        one dict per image: {"image": path, "predictions": [{"class", "index",
        "probability"}, ...]} with probabilities in decreasing order.

    Raises:
        DatasetError naming a file that is not a readable image; CheckpointError.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"--top-k must be a positive integer, got {top_k!r}")
    model, metadata = load_trained_model(path)
    prep, classes = metadata["preprocessing"], metadata["classes"]
    pixels = np.stack([load_image(image, size=tuple(prep["input_size"]),
                                  channels=prep["channels"]) for image in images])
    mean = np.asarray(prep["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(prep["std"], dtype=np.float32).reshape(-1, 1, 1)
    x = (pixels.astype(np.float32) / 255 - mean) / std
    with no_grad():
        probabilities = F.softmax(model(Tensor(x)), dim=1).data
    results = []
    for image, row in zip(images, probabilities, strict=True):
        order = np.argsort(-row, kind="stable")[:top_k]
        results.append({"image": str(image), "predictions": [
            {"class": classes[k], "index": int(k), "probability": float(row[k])} for k in order]})
    return results


def write_plots(run_dir) -> list[Path]:
    """curves.png (loss and accuracy per epoch) and confusion.png (the test set's confusion
    matrix when the run has finished, else the last validation one) in RUN_DIR."""
    run_dir = Path(run_dir)
    history = read_metrics(run_dir)
    if not history:
        raise ValueError(f"{run_dir}: no finished epoch to plot (metrics.jsonl is empty)")
    metadata, where = _run_metadata(run_dir)
    column = {key: [record[key] for record in history] for key in history[0]}
    training = metadata.get("training") or metadata.get("config") or {}
    title = f"{training.get('model', '')} on {dataset_name(training.get('dataset', ''))}"
    curves = viz.plot_curves(column["epoch"], column["train_loss"], column["val_loss"],
                             column["train_accuracy"], column["val_accuracy"],
                             run_dir / "curves.png", title=title)
    matrix = metadata.get("metrics", {}).get("test_confusion_matrix")
    caption = f"test set, {where}" if matrix is not None else "validation set"
    if matrix is None:
        matrix = history[-1]["val_confusion_matrix"]
        caption += f", epoch {history[-1]['epoch']}"
    confusion = viz.plot_confusion_matrix(matrix, metadata["classes"],
                                          run_dir / "confusion.png",
                                          title=f"confusion matrix ({caption})")
    return [curves, confusion]


def _run_metadata(run_dir: Path) -> tuple[dict, str]:
    """The JSON metadata of RUN_DIR's final model, or else of its training state."""
    for stem in ("model", "last"):
        path = run_dir / f"{stem}.json"
        if path.exists():
            try:
                return json.loads(path.read_text()), f"{stem} weights"
            except (OSError, json.JSONDecodeError, AttributeError) as error:
                raise CheckpointError(f"{path}: cannot read: {error}") from error
    raise CheckpointError(f"{run_dir}: not a run directory (no model.json or last.json)")
