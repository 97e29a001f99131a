"""The files of a run directory, RUN_DIR:

    model.safetensors, model.json   final weights; architecture, classes, preprocessing
                                    (input size, channels, mean and std, or the feature
                                    pipeline), epoch, metrics
    best.safetensors, best.json     the weights of the epoch with the best validation accuracy
    last.safetensors, last.json     everything needed to resume: model, optimiser, schedule,
                                    loader position, random generator, history
    metrics.jsonl                   one JSON object per finished epoch
    curves.png, confusion.png       loss/accuracy curves and the test confusion matrix
"""

import json
import os
from pathlib import Path

from cnnlab.checkpoint import load_checkpoint
from cnnlab.errors import CheckpointError

STATE_FORMAT = "cnnlab-train-state/1"
MODEL_FORMAT = "cnnlab-model/1"
RUN_FILES = ("model", "best", "last")  # each as .safetensors and .json
PLOTS = ("curves.png", "confusion.png")


def write_metrics(run_dir, history: list[dict]) -> Path:
    """metrics.jsonl: one JSON object per finished epoch, rewritten whole (atomically)."""
    path = Path(run_dir) / "metrics.jsonl"
    text = "".join(json.dumps(record) + "\n" for record in history)
    return _write_text(path, text)


def read_metrics(run_dir) -> list[dict]:
    """The records of metrics.jsonl, one per finished epoch."""
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
