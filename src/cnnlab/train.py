"""Training you can run and trust: the Trainer, its loop, resume, and `train`, a whole run.

    summary = train(TrainConfig(model="cnn", epochs=10).resolve())

A run lives in one directory, RUN_DIR (see cnnlab.rundir for its files). The configuration is
cnnlab.config's TrainConfig; how images become the model's input (normalised pixels, or
hand-designed features with --features) is cnnlab.inputs; using a finished run (evaluate,
predict, plots) is cnnlab.runs. This module re-exports their public names, so
`from cnnlab.train import ...` reaches everything about training.

Reproducibility: every random choice comes from `config.seed`. The validation split, the
weight initialisation, dropout (cnnlab's default generator, reseeded) and the loader's
per-epoch order and augmentation each use their own seed derived from it. The dropout
generator's state and the loader's position are checkpointed, so a run interrupted (at an epoch
boundary or in the middle of one) and resumed ends with the same weights, bit for bit, as one
left alone.

Data: the validation set is a seeded random `val_size` images of the training set; then
`limit_train` keeps the first N of the remaining training images (for quick runs). The test set
is the dataset's own, used once at the end. Input statistics (channel mean and std, or the
features' per-dimension mean and std) come from the training images alone.
"""

import contextlib
import dataclasses
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cnnlab import rng
from cnnlab.checkpoint import flatten_state, save_checkpoint, save_model, unflatten_state
from cnnlab.config import (
    EVAL_BATCH_SIZE,
    FEATURE_MODELS,
    FEATURE_NAMES,
    FIELDS,
    FINGERPRINT,
    MODEL_DEFAULTS,
    OPTIMIZERS,
    SCHEDULES,
    ModelDefaults,
    TrainConfig,
    configure,
    dataset_name,
    derived_seed,
    read_config_file,
)
from cnnlab.data import (
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomTranslate,
    load_dataset,
    train_val_split,
)
from cnnlab.errors import CheckpointError
from cnnlab.inputs import fit_inputs
from cnnlab.models import MODELS, build_model
from cnnlab.optim import SGD, Adam, AdamW, RMSprop, lr_scheduler
from cnnlab.rundir import (
    MODEL_FORMAT,
    STATE_FORMAT,
    read_metrics,
    read_train_state,
    start_run_dir,
    write_metrics,
)
from cnnlab.runs import (
    evaluate,
    evaluate_run,
    load_trained,
    load_trained_model,
    loss_function,
    metrics_from_confusion,
    predict,
    write_plots,
)
from cnnlab.tensor import Tensor

__all__ = [
    # defined here
    "Trainer", "TrainingDiverged", "TrainingInterrupted", "augmentation", "format_epoch",
    "make_optimizer", "make_scheduler", "prepare_data", "train",
    # cnnlab.config
    "EVAL_BATCH_SIZE", "FEATURE_MODELS", "FEATURE_NAMES", "FIELDS", "FINGERPRINT",
    "MODEL_DEFAULTS", "OPTIMIZERS", "SCHEDULES", "ModelDefaults", "TrainConfig", "configure",
    "dataset_name", "derived_seed", "read_config_file",
    # cnnlab.rundir
    "MODEL_FORMAT", "STATE_FORMAT", "read_metrics", "read_train_state", "start_run_dir",
    "write_metrics",
    # cnnlab.runs
    "evaluate", "evaluate_run", "load_trained", "load_trained_model", "loss_function",
    "metrics_from_confusion", "predict", "write_plots",
]  # fmt: skip


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
    return Compose([RandomHorizontalFlip(), RandomCrop(padding=2 if height < 32 else height // 8)])


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


# ----- the trainer --------------------------------------------------------------------------
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
        train_set, val_set: ImageDatasets of the same image shape and classes. With
            `config.features`, their features are computed here, once (see cnnlab.inputs).
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
        self.progress, self.log = progress, log or (lambda line: None)
        self.inputs = fit_inputs(train_set, config.features)  # statistics of train_set only
        channels, height, width = self.inputs.input_shape
        if config.features:
            dims = ", ".join(f"{name} {size}" for name, size in self.inputs.pipeline.dims.items())
            self.log(f"features: {height * width} numbers per image ({dims}), standardised "
                     f"with the statistics of the {len(train_set)} training images")
        self.model = build_model(
            config.model, in_channels=channels, num_classes=len(self.classes),
            input_size=(height, width),
            generator=np.random.default_rng(derived_seed(config.seed, "init")))
        rng.manual_seed(derived_seed(config.seed, "dropout"))  # the default generator's state
        self.loss = loss_function(MODELS[config.model].loss, config.margin)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.scheduler = make_scheduler(config, self.optimizer)
        augment = augmentation(config.dataset, self.image_shape) if config.augment else None
        self.train_loader = self.inputs.loader(
            train_set, config.batch_size, shuffle=True, seed=derived_seed(config.seed, "loader"),
            augment=augment)
        self.val_loader = self.inputs.loader(val_set, EVAL_BATCH_SIZE)
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
        loader = self.inputs.loader(dataset, EVAL_BATCH_SIZE)
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
        return self.inputs.preprocessing()

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
        save_model(path, self.model, self.model_metadata(metrics), self.inputs.arrays())
        return Path(path)

    def save_state(self) -> Path:
        """Everything needed to continue, in RUN_DIR/last.*, and the history in metrics.jsonl."""
        arrays = {f"model.{key}": value for key, value in self.model.state_dict().items()}
        optimizer_arrays, optimizer_tree = flatten_state("optimizer", self.optimizer.state_dict())
        scheduler_arrays, scheduler_tree = flatten_state("scheduler", self.scheduler.state_dict())
        arrays.update(optimizer_arrays)
        arrays.update(scheduler_arrays)
        arrays.update(self.inputs.arrays())
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
        same_arrays = all(key in arrays and np.array_equal(arrays[key], value)
                          for key, value in self.inputs.arrays().items())
        if metadata["preprocessing"] != self.preprocessing() or not same_arrays:
            raise CheckpointError(f"cannot resume {self.run_dir}: the training images differ "
                                  "from the run's (their statistics do not match)")
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


def train(config: TrainConfig, resume=False, progress=False, log=None,
          interrupt_after_steps=None, overwrite=False) -> dict:
    """Run `config` from start to finish (or continue RUN_DIR's run with `resume`): train,
    evaluate the final model on the test set, save it to RUN_DIR/model.* and draw the plots.

    A RUN_DIR that already holds a run is continued with `resume`, replaced with `overwrite`,
    and otherwise refused (ValueError), so no run is lost by accident.

    Returns:
        a summary: run_dir, model (path), epochs, best_epoch, best_val_accuracy,
        val_accuracy, test_accuracy, test_loss, stopped_early, plots, seconds.

    Raises:
        TrainingInterrupted (Ctrl-C, checkpoint saved), TrainingDiverged, DatasetError,
        CheckpointError, ValueError.
    """
    log = log or (lambda line: None)
    run_dir = Path(config.out)
    if not resume and not overwrite and (run_dir / "last.json").exists():
        raise ValueError(f"--out {run_dir} already holds a run: --resume continues it, "
                         f"--overwrite replaces it, another --out keeps both")
    train_set, val_set, test_set = prepare_data(config)
    log(f"{config.dataset}: {len(train_set)} training, {len(val_set)} validation, "
        f"{len(test_set)} test images of shape {train_set.image_shape}")
    started = time.perf_counter()  # feature extraction counts as training time
    trainer = Trainer(config, train_set, val_set, progress=progress, log=log,
                      interrupt_after_steps=interrupt_after_steps)
    if resume:
        trainer.load_state(*read_train_state(trainer.run_dir))
        log(f"resuming {trainer.run_dir} after {trainer.epoch} epochs"
            + (f" and {trainer.train_loader.position} steps" if trainer.partial["seen"] else ""))
    else:
        if (trainer.run_dir / "last.json").exists():
            log(f"replacing the previous run in {trainer.run_dir} (--overwrite)")
        start_run_dir(trainer.run_dir)
        trainer.save_state()  # a resumable (and "last good") state from the start
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
