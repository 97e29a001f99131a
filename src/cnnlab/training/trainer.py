"""The Trainer: epochs of optimiser steps, validation, checkpoints, early stop, Ctrl-C, resume.

    trainer = Trainer(config, train_set, val_set)
    history = trainer.fit()

Reproducibility: every random choice comes from `config.seed`. The validation split, the
weight initialisation, dropout (cnnlab's default generator, reseeded) and the loader's
per-epoch order and augmentation each use their own seed derived from it. The dropout
generator's state and the loader's position are checkpointed, so a run interrupted (at an epoch
boundary or in the middle of one) and resumed ends with the same weights, bit for bit, as one
left alone. Input statistics (channel mean and std, or the features' per-dimension mean and
std) come from the training images alone.

Resuming with another --epochs (logged in one line): a run whose schedule has ended gets, for
the added epochs, a fresh schedule of the same kind over them, from the base learning rate (as
a new PyTorch scheduler would be made for them); a run resumed before its schedule's end
follows, from where it resumed, the schedule of a run of the new total (stretched or shortened,
bit for bit the learning rates a run started with that --epochs has there).
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
from cnnlab.checks import counted
from cnnlab.errors import CheckpointError
from cnnlab.models import MODELS, build_model
from cnnlab.tensor import Tensor
from cnnlab.training.config import EVAL_BATCH_SIZE, TrainConfig, derived_seed
from cnnlab.training.evaluation import evaluate, loss_function
from cnnlab.training.inputs import fit_inputs
from cnnlab.training.recipes import (
    augmentation,
    make_optimizer,
    make_scheduler,
    restart_schedule,
)
from cnnlab.training.rundir import (
    MODEL_FORMAT,
    STATE_FORMAT,
    best_path,
    state_path,
    write_metrics,
)


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


def _fresh_partial() -> dict:
    """Running sums of the epoch in progress (checkpointed, so a resumed epoch reports the same
    loss and accuracy as an uninterrupted one)."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


class Trainer:
    """Trains a model from `config` on `train_set`, evaluating on `val_set` after every epoch.

    Each epoch: one pass over the shuffled (and, with `config.augment`, augmented) training
    set, one optimiser step per batch (on the loss with `config.label_smoothing`, which the
    epoch's train loss reports); then the validation loss (plain), accuracy, per-class accuracy
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
            `config.features`, their features are computed here, once (see cnnlab.training.inputs).
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
        kind = MODELS[config.model].loss  # training's loss has the label smoothing
        self.loss = loss_function(kind, config.margin, config.label_smoothing or 0.0)
        self.eval_loss = loss_function(kind, config.margin)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.scheduler = make_scheduler(config, self.optimizer)
        self.schedule = [0, config.epochs]  # the epochs [start, end) the scheduler spans
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
                path = state_path(self.run_dir)
                raise TrainingInterrupted(
                    f"interrupted without saving; {path} holds the state after epoch "
                    f"{self.epoch}", path, self.epoch, 0) from None
        return self.history

    def evaluate(self, dataset, description="evaluate") -> dict:
        """`evaluate`'s metrics of the current model on `dataset`, preprocessed as in training."""
        loader = self.inputs.loader(dataset, EVAL_BATCH_SIZE)
        return evaluate(self.model, loader, self.eval_loss, self.classes, self.progress,
                        description)

    def _run_epoch(self) -> None:
        epoch, total = self.epoch, self.config.epochs
        lr = float(self.optimizer.param_groups[0]["lr"])
        self._train_epoch(epoch)
        started = time.perf_counter()
        val = evaluate(self.model, self.val_loader, self.eval_loss, self.classes, self.progress,
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
            self.save_model(best_path(self.run_dir))
        patience = self.config.patience
        if patience is not None and self.epoch - self.best["epoch"] >= patience:
            self.stopped_early = True
        self.save_state()
        self.log(format_epoch(record, total))
        if self.stopped_early:
            self.log(f"early stop: no better validation accuracy for {counted(patience, 'epoch')} "
                     f"(best {self.best['val_accuracy']:.4f} at epoch {self.best['epoch']})")
        if self._stop_requested and self.epoch < total and not self.stopped_early:
            path = state_path(self.run_dir)
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
        path = state_path(self.run_dir)
        if self.epoch > 0:
            kept = f"the last good checkpoint, {path}, is from epoch {self.epoch}"
        else:
            kept = f"the checkpoint {path} holds the initial weights"
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
        """The model (path.safetensors, .json) and any input statistics beside it (rundir)."""
        self.inputs.save_statistics(Path(path).parent)  # first: no model without them
        save_model(path, self.model, self.model_metadata(metrics))
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
            "schedule": self.schedule,
            "loader": self.train_loader.state_dict(),
            "rng": rng.get_rng_state(),
            "history": self.history,
            "best": self.best,
            "stopped_early": self.stopped_early,
            "partial": self.partial,
        }
        path = state_path(self.run_dir)
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
        rng.set_rng_state(metadata["rng"])
        self.epoch, self.history = metadata["epoch"], metadata["history"]
        self.best, self.stopped_early = metadata["best"], metadata["stopped_early"]
        self.partial = metadata["partial"]
        self.schedule = list(metadata.get("schedule", [0, metadata["config"]["epochs"]]))
        self.log(f"resuming {self.run_dir} after {counted(self.epoch, 'epoch')}"
                 + (f" and {self.train_loader.position} steps" if self.partial["seen"] else ""))
        self._fit_schedule_to_epochs()

    def _fit_schedule_to_epochs(self) -> None:
        """Resumed with another --epochs: a fresh schedule for epochs added after the schedule
        ended, else the new total's schedule from here on (see the module docstring)."""
        start, end = self.schedule
        total, kind = self.config.epochs, self.config.schedule
        if end == total or self.epoch >= total or self.stopped_early:
            return  # the same plan, or nothing left to train
        if self.epoch >= end:
            start = self.epoch
            base = self.optimizer.param_groups[0]["initial_lr"]
            message = (f"the run's {kind} schedule ended with epoch {end}; a fresh {kind} "
                       f"schedule from lr {base:g} for the added {_epochs(start, total)}")
        else:
            message = (f"the {kind} schedule of {_epochs(start, end)} now ends with epoch "
                       f"{total}: from epoch {self.epoch + 1} on, the learning rates of a "
                       f"{total - start}-epoch schedule")
        self.scheduler = restart_schedule(self.config, self.optimizer, total - start,
                                          self.epoch - start)
        self.schedule = [start, total]
        self.log(message)


def _epochs(start: int, end: int) -> str:
    """Epochs [start, end) as the log numbers them: "epoch 3" or "epochs 3-5"."""
    return f"epoch {end}" if end == start + 1 else f"epochs {start + 1}-{end}"


def format_epoch(record: dict, total: int) -> str:
    """One line for the log: epoch, losses, accuracies, learning rate, speed."""
    return (f"epoch {record['epoch']}/{total}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.4f}  val loss {record['val_loss']:.4f} "
            f"acc {record['val_accuracy']:.4f}  lr {record['lr']:.3g}  "
            f"{record['images_per_second']:.0f} img/s  {record['seconds']:.1f}s"
            + ("  *" if record["best"] else ""))
