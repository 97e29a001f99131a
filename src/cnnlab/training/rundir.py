"""The files of a run directory, RUN_DIR; the one module that spells their names.

    model.safetensors, model.json   final weights; architecture, classes, preprocessing
                                    (input size, channels, mean and std, or the feature
                                    pipeline), epoch, metrics
    best.safetensors, best.json     the weights of the epoch with the best validation accuracy
    features.safetensors, .json     a run on hand-made features: the statistics that
                                    standardise them ("features.mean", "features.std"), for
                                    model and best alike, apart from the weights (so PyTorch
                                    loads model.safetensors with strict=True; runs saved
                                    before kept them inside model.safetensors, still read)
    last.safetensors, last.json     everything needed to resume: model, optimiser, schedule,
                                    loader position, random generator, history
    metrics.jsonl                   one JSON object per finished epoch
    progress.jsonl                  a few points per epoch while it trains (for watching it)
    first_layer.safetensors, .json  the first layer's weights after each epoch
    curves.png, confusion.png       loss/accuracy curves and the test confusion matrix
    export/                         `cnnlab export`'s files (model.onnx, model.safetensors, ...)
    .lock                           locked by the process training the run, which wrote its
                                    PID there (an OS lock: it dies with its process); a
                                    RUN_DIR holding nothing else holds no run

Other modules ask for a path (`model_path(run_dir)`, ...) or a fact (`holds_run`); a
checkpoint's two suffixes are cnnlab.checkpoint's (`checkpoint_paths`). A whole run holds
`locked(run_dir)`, so two trainings never write one RUN_DIR.
"""

import contextlib
import fcntl
import json
import os
from pathlib import Path

from cnnlab.checkpoint import checkpoint_paths, load_checkpoint
from cnnlab.errors import CheckpointError
from cnnlab.files import atomic_write

STATE_FORMAT = "cnnlab-train-state/1"
MODEL_FORMAT = "cnnlab-model/1"
FEATURES_FORMAT = "cnnlab-features/1"
MODEL, BEST, LAST = "model", "best", "last"  # checkpoints, each .safetensors and .json
FEATURES = "features"  # a checkpoint too
EXPORT = "export"
METRICS = "metrics.jsonl"
LOCK = ".lock"
PROGRESS = "progress.jsonl"
FIRST_LAYER = "first_layer"  # a checkpoint: one array per finished epoch
CURVES, CONFUSION = "curves.png", "confusion.png"


def model_path(run_dir) -> Path:
    """RUN_DIR/model: the final model's checkpoint (written when the run finishes)."""
    return Path(run_dir) / MODEL


def best_path(run_dir) -> Path:
    """RUN_DIR/best: the model of the epoch with the best validation accuracy."""
    return Path(run_dir) / BEST


def state_path(run_dir) -> Path:
    """RUN_DIR/last: the training state, everything `--resume` continues from."""
    return Path(run_dir) / LAST


def features_path(run_dir) -> Path:
    """RUN_DIR/features: a features run's input statistics, beside its model checkpoints."""
    return Path(run_dir) / FEATURES


def export_dir(run_dir) -> Path:
    """RUN_DIR/export: where `cnnlab export` writes unless told otherwise."""
    return Path(run_dir) / EXPORT


def metrics_path(run_dir) -> Path:
    return Path(run_dir) / METRICS


def progress_path(run_dir) -> Path:
    """RUN_DIR/progress.jsonl: the points recorded during the epochs (see training.progress)."""
    return Path(run_dir) / PROGRESS


def first_layer_path(run_dir) -> Path:
    """RUN_DIR/first_layer: the first layer's weights after each epoch (a checkpoint)."""
    return Path(run_dir) / FIRST_LAYER


def plot_paths(run_dir) -> tuple[Path, Path]:
    """(curves, confusion): the run's two plots."""
    return Path(run_dir) / CURVES, Path(run_dir) / CONFUSION


def _metadata_file(path) -> Path:
    return Path(checkpoint_paths(path)[1])


def holds_run(run_dir) -> bool:
    """Whether RUN_DIR holds a run (finished or not): it has a training state."""
    return _metadata_file(state_path(run_dir)).exists()


def is_finished(run_dir) -> bool:
    """Whether RUN_DIR's run has written its final model."""
    return _metadata_file(model_path(run_dir)).exists()


def changing_files(run_dir) -> dict[str, Path]:
    """The files a run rewrites as it moves on, by role: "progress" (its points), "metrics"
    (its epochs), "state" and "model" (the metadata of RUN_DIR/last and RUN_DIR/model); a
    watcher compares their modification times."""
    return {"progress": progress_path(run_dir), "metrics": metrics_path(run_dir),
            "state": _metadata_file(state_path(run_dir)),
            "model": _metadata_file(model_path(run_dir))}


def write_metrics(run_dir, history: list[dict]) -> Path:
    """metrics.jsonl: one JSON object per finished epoch, rewritten whole (atomically)."""
    text = "".join(json.dumps(record) + "\n" for record in history)
    return atomic_write(metrics_path(run_dir), text)


def read_metrics(run_dir) -> list[dict]:
    """The records of metrics.jsonl, one per finished epoch."""
    return _read_json_lines(metrics_path(run_dir))


def write_progress(run_dir, points: list[dict]) -> Path:
    """progress.jsonl: one JSON object per point, rewritten whole (atomically)."""
    text = "".join(json.dumps(point) + "\n" for point in points)
    return atomic_write(progress_path(run_dir), text)


def read_progress(run_dir) -> list[dict]:
    """The points of progress.jsonl; [] when the run has recorded none."""
    path = progress_path(run_dir)
    return _read_json_lines(path) if path.exists() else []


def _read_json_lines(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON lines: {error}") from error


def read_run_metadata(run_dir) -> tuple[dict, str]:
    """(metadata, "model weights" or "last weights"): the JSON metadata of RUN_DIR's final
    model, or else of its training state."""
    for path in (model_path(run_dir), state_path(run_dir)):
        metadata_file = _metadata_file(path)
        if metadata_file.exists():
            try:
                return json.loads(metadata_file.read_text()), f"{path.name} weights"
            except (OSError, json.JSONDecodeError, AttributeError) as error:
                raise CheckpointError(f"{metadata_file}: cannot read: {error}") from error
    raise CheckpointError(f"{run_dir}: not a run directory (no {_metadata_file(MODEL)} or "
                          f"{_metadata_file(LAST)})")


class RunDirBusy(ValueError):
    """Another process is training the run in RUN_DIR; the message names its PID."""


@contextlib.contextmanager
def locked(run_dir, create=True):
    """Hold RUN_DIR's lock (an exclusive flock on RUN_DIR/.lock) within the block, with this
    process's PID written in the file. The OS releases it when the process ends, however it
    ends, so a crash never leaves it held. The file is never removed: a process that opened
    it must lock the same file as the next one.

    Args:
        run_dir: the run directory; made (with its parents) when missing, if `create`.
        create: False to resume: a missing RUN_DIR is then a CheckpointError.

    Raises:
        RunDirBusy (a ValueError) when another process holds the lock; ValueError when RUN_DIR
        is a file; CheckpointError when it is missing and not `create`.
    """
    run_dir = _checked_dir(run_dir)
    if not create and not run_dir.exists():
        raise _no_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
            raise RunDirBusy(f"{run_dir} is being trained by "
                             + (f"process {holder}" if holder else "another process")) from None
        # Written in place, not atomically: a new file would be a new, unlocked one.
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield run_dir
        finally:
            os.ftruncate(descriptor, 0)  # no stale PID for the next one to show
    finally:
        os.close(descriptor)  # releases the lock


def _checked_dir(run_dir) -> Path:
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir}: exists and is not a directory")
    return run_dir


def _no_run_dir(run_dir) -> CheckpointError:
    return CheckpointError(f"cannot resume {run_dir}: no such run directory")


def read_train_state(run_dir) -> tuple[dict, dict]:
    """(arrays, metadata) of RUN_DIR/last, the state `--resume` continues from.

    Raises:
        CheckpointError when RUN_DIR holds no resumable run, or its state is damaged.
    """
    path = state_path(run_dir)
    if not Path(run_dir).is_dir():
        raise _no_run_dir(run_dir)
    if not holds_run(run_dir):
        raise CheckpointError(f"cannot resume {run_dir}: it holds no training state "
                              f"({_metadata_file(path)} is missing)")
    arrays, metadata = load_checkpoint(path)
    if not isinstance(metadata, dict) or metadata.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a cnnlab training state")
    return arrays, metadata


def start_run_dir(run_dir) -> Path:
    """Create RUN_DIR for a fresh run, removing a previous run's files from it (only those)."""
    run_dir = _checked_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stem in (MODEL, BEST, LAST, FEATURES, FIRST_LAYER):
        for path in checkpoint_paths(run_dir / stem):
            Path(path).unlink(missing_ok=True)
    for path in (metrics_path(run_dir), progress_path(run_dir), *plot_paths(run_dir)):
        path.unlink(missing_ok=True)
    return run_dir
