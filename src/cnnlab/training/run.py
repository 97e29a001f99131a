"""`train`: a whole run, from the configuration to the tested final model and its plots.

    summary = train(TrainConfig(model="cnn", epochs=10).resolve())

A run lives in one directory, RUN_DIR (see cnnlab.training.rundir for its files).
"""

import time
from pathlib import Path

from cnnlab.checkpoint import checkpoint_paths
from cnnlab.training.config import TrainConfig
from cnnlab.training.progress import ProgressRecorder
from cnnlab.training.recipes import prepare_data
from cnnlab.training.rundir import (
    holds_run,
    locked,
    model_path,
    read_train_state,
    start_run_dir,
)
from cnnlab.training.trained import write_plots
from cnnlab.training.trainer import Trainer


def train(config: TrainConfig, resume=False, progress=False, log=None,
          interrupt_after_steps=None, overwrite=False) -> dict:
    """Run `config` from start to finish (or continue RUN_DIR's run with `resume`): train,
    evaluate the final model on the test set, save it to RUN_DIR/model.* and draw the plots.

    A RUN_DIR that already holds a run is continued with `resume`, replaced with `overwrite`,
    and otherwise refused (ValueError), so no run is lost by accident. The whole run holds
    RUN_DIR's lock (see cnnlab.training.rundir.locked): while one process trains there, another
    is refused with RunDirBusy ("RUN_DIR is being trained by process PID").

    Returns:
        a summary: run_dir, model (path), epochs, best_epoch, best_val_accuracy,
        val_accuracy, test_accuracy, test_loss, stopped_early, plots, seconds.

    Raises:
        TrainingInterrupted (Ctrl-C, checkpoint saved), TrainingDiverged, DatasetError,
        CheckpointError, RunDirBusy, ValueError.
    """
    with locked(config.out, create=not resume):
        return _train(config, resume, progress, log or (lambda line: None),
                      interrupt_after_steps, overwrite)


def _train(config, resume, progress, log, interrupt_after_steps, overwrite) -> dict:
    run_dir = Path(config.out)
    if not resume and not overwrite and holds_run(run_dir):
        raise ValueError(f"--out {run_dir} already holds a run: --resume continues it, "
                         f"--overwrite replaces it, another --out keeps both")
    train_set, val_set, test_set = prepare_data(config)
    log(f"{config.dataset}: {len(train_set)} training, {len(val_set)} validation, "
        f"{len(test_set)} test images of shape {train_set.image_shape}")
    started = time.perf_counter()  # feature extraction counts as training time
    trainer = Trainer(config, train_set, val_set, progress=progress, log=log,
                      on_step=ProgressRecorder(), interrupt_after_steps=interrupt_after_steps)
    if resume:
        trainer.load_state(*read_train_state(trainer.run_dir))  # logs where it resumes
    else:
        if holds_run(trainer.run_dir):
            log(f"replacing the previous run in {trainer.run_dir} (--overwrite)")
        start_run_dir(trainer.run_dir)
        trainer.save_state()  # a resumable (and "last good") state from the start
    trainer.fit()
    test = trainer.evaluate(test_set, "test")
    last = trainer.history[-1] if trainer.history else {}
    metrics = {"test_" + key: value for key, value in test.items()}
    metrics.update({key: last[key] for key in ("train_loss", "train_accuracy", "val_loss",
                                               "val_accuracy") if key in last})
    path = trainer.save_model(model_path(trainer.run_dir), metrics)
    plots = write_plots(trainer.run_dir)
    return {
        "run_dir": str(trainer.run_dir),
        "model": checkpoint_paths(path)[0],
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
