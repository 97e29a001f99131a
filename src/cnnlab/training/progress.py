"""A run's progress while it trains, for watching it live: a few points per epoch, and the
first layer's weights after each epoch.

    trainer = Trainer(config, train_set, val_set, on_step=ProgressRecorder())
    points = read_progress(run_dir)                  # (see cnnlab.training.rundir)
    kind, epochs, weights = read_first_layer(run_dir)

Each point of RUN_DIR/progress.jsonl is one JSON object: epoch (1-based, the epoch in
progress), step (optimiser steps done in it) and steps (per epoch), train_loss and
train_accuracy (running means over the epoch so far, as the epoch's record will have them),
seconds (training time in the epoch so far), images_per_second, time (Unix seconds), and pid
and host of the training process (so a reader can tell whether it still runs).

RUN_DIR/first_layer is a checkpoint with one array per finished epoch, "epoch1", "epoch2", ...:
the first convolution's weight (C_out, C_in, KH, KW), or a linear classifier's (K, C*H*W)
(its class templates); a model with neither records none.
"""

import os
import socket
import time

from cnnlab.analysis.pictures import first_conv_weight, linear_template_weight
from cnnlab.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint
from cnnlab.training.rundir import first_layer_path, read_progress, write_progress

FIRST_LAYER_FORMAT = "cnnlab-first-layer/1"


class ProgressRecorder:
    """An `on_step` callback for the Trainer that records progress points and first-layer
    weights in the trainer's RUN_DIR.

    A point is recorded after every `steps // points_per_epoch`-th step, but not sooner than
    `min_seconds` after the previous one, and always after an epoch's last step, which also
    records the first layer's weights. A resumed run keeps the points from before the step it
    resumes at and continues after them.

    Args:
        points_per_epoch: the most points per epoch. Default: 10.
        min_seconds: the least time between two points within an epoch. Default: 1.0.
    """

    def __init__(self, points_per_epoch=10, min_seconds=1.0):
        self.points_per_epoch, self.min_seconds = points_per_epoch, min_seconds
        self.points, self.weights, self.written = None, None, 0.0

    def __call__(self, trainer, epoch: int, step: int) -> None:
        steps = len(trainer.train_loader)
        if self.points is None:
            self._continue(trainer.run_dir, epoch + 1, step)
        every = max(1, steps // self.points_per_epoch)
        now = time.time()
        last = step == steps
        if not last and (step % every or now - self.written < self.min_seconds):
            return
        partial = trainer.partial
        self.points.append({
            "epoch": epoch + 1, "step": step, "steps": steps,
            "train_loss": partial["loss_sum"] / partial["seen"],
            "train_accuracy": partial["correct"] / partial["seen"],
            "seconds": partial["seconds"],
            "images_per_second": partial["seen"] / max(partial["seconds"], 1e-9),
            "time": now, "pid": os.getpid(), "host": socket.gethostname(),
        })
        write_progress(trainer.run_dir, self.points)
        self.written = now
        if last:
            self._record_first_layer(trainer, epoch + 1)

    def _continue(self, run_dir, epoch: int, step: int) -> None:
        """Keep what an earlier process recorded before (epoch, step)."""
        self.points = [point for point in read_progress(run_dir)
                       if (point["epoch"], point["step"]) < (epoch, step)]
        kind, epochs, weights = read_first_layer(run_dir)
        self.weights = {f"epoch{number}": weight for number, weight in zip(epochs, weights,
                                                                             strict=True)
                        if number < epoch}

    def _record_first_layer(self, trainer, epoch: int) -> None:
        kind, weight = first_layer_weight(trainer.model, trainer.image_shape)
        if weight is None:
            return
        self.weights[f"epoch{epoch}"] = weight
        epochs = sorted(int(key.removeprefix("epoch")) for key in self.weights)
        save_checkpoint(first_layer_path(trainer.run_dir), self.weights,
                        {"format": FIRST_LAYER_FORMAT, "kind": kind, "epochs": epochs})


def first_layer_weight(model, image_shape):
    """("filters", the first convolution's weight (C_out, C_in, KH, KW)), or ("templates", a
    linear classifier's weight (K, C*H*W)) for images of `image_shape` (C, H, W), or
    (None, None)."""
    weight = first_conv_weight(model)
    if weight is not None:
        return "filters", weight.copy()
    weight = linear_template_weight(model, image_shape)
    if weight is not None:
        return "templates", weight.copy()
    return None, None


def read_first_layer(run_dir):
    """(kind, epochs, weights): "filters" or "templates" (None when nothing is recorded), the
    epoch numbers in order, and the weight after each (see the module docstring).

    Raises:
        CheckpointError when the file is damaged.
    """
    path = first_layer_path(run_dir)
    if not os.path.exists(checkpoint_paths(path)[0]):
        return None, [], []
    arrays, metadata = load_checkpoint(path)
    epochs = [number for number in metadata.get("epochs", []) if f"epoch{number}" in arrays]
    return metadata.get("kind"), epochs, [arrays[f"epoch{number}"] for number in epochs]
