"""The runs the lab shows: those of RUNS_DIR (read afresh on every request, so runs made after
the lab started appear) and any extra runs given by name (the package's pretrained runs, say).

    catalogue = RunCatalogue("runs")
    catalogue.runs()                 # one dict per run, for GET /api/runs
    catalogue.curves("cnn-fashion-mnist")

A name from a request is only ever a key of the listing (`entry`): no path from a request
reaches the file system. Every file is read through cnnlab.training (rundir, progress).
"""

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.analysis.pictures import filter_images, template_images
from cnnlab.errors import CheckpointError
from cnnlab.lab.encoding import encode_unit
from cnnlab.lab.errors import NotFound
from cnnlab.models import model_from_config
from cnnlab.training.progress import read_first_layer
from cnnlab.training.rundir import (
    STATE_FORMAT,
    changing_files,
    holds_run,
    is_finished,
    read_metrics,
    read_progress,
    read_run_metadata,
)

STALE_SECONDS = 3600  # a run whose last point is older is not training, whatever its pid
QUIET_SECONDS = 60  # nor one saved after its last point and untouched for longer
EPOCH_FIELDS = ("epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "images_per_second", "seconds")
HOST = socket.gethostname()


@dataclass(frozen=True)
class RunEntry:
    """A run the lab may show: its name (the key requests use), its folder, where it comes
    from ("runs" for RUNS_DIR, or an extra source's label) and whether it may be trained on."""

    name: str
    path: Path
    source: str = "runs"
    editable: bool = True


class RunCatalogue:
    """The runs of `runs_dir` (its sub-folders that hold a run) and `extra` ones.

    Args:
        runs_dir: RUNS_DIR; it need not exist yet.
        extra: {name: run folder} shown beside RUNS_DIR's runs, read-only, with source
            `extra_source` (a RUNS_DIR run of the same name wins). Default: none.
        training_now: callable() -> the folder the lab's own job trains in, or None.
    """

    def __init__(self, runs_dir, extra=None, extra_source="pretrained", training_now=None):
        self.runs_dir = Path(runs_dir)
        self.extra = {name: Path(path) for name, path in (extra or {}).items()}
        self.extra_source = extra_source
        self.training_now = training_now or (lambda: None)
        self._cache, self._lock = {}, threading.Lock()

    # ----- the listing ----------------------------------------------------------------------
    def entries(self) -> dict[str, RunEntry]:
        """name -> RunEntry for every run now: RUNS_DIR's sub-folders holding a run, sorted,
        after the extra runs."""
        found = {name: RunEntry(name, path, self.extra_source, False)
                 for name, path in self.extra.items() if holds_run(path) or is_finished(path)}
        try:
            folders = sorted((entry for entry in os.scandir(self.runs_dir) if entry.is_dir()),
                             key=lambda entry: entry.name)
        except OSError:  # no RUNS_DIR yet: no runs
            folders = []
        for folder in folders:
            path = Path(folder.path)
            if holds_run(path) or is_finished(path):
                found[folder.name] = RunEntry(folder.name, path)
        return found

    def entry(self, name: str) -> RunEntry:
        """The run called `name`; NotFound unless it is in the listing."""
        entry = self.entries().get(name)
        if entry is None:
            raise NotFound(f"no run named {name!r} in {self.runs_dir}")
        return entry

    def signature(self) -> dict[str, tuple]:
        """name -> modification times of the run's changing files, and its status: what a
        watcher compares to learn that a run moved on."""
        signature = {}
        for name, entry in self.entries().items():
            try:
                status = self._status(entry, self._facts(entry)["_points"])
            except (CheckpointError, OSError) as error:
                status = str(error)
            signature[name] = (*_mtimes(entry.path), status)
        return signature

    # ----- one record per run ---------------------------------------------------------------
    def runs(self) -> list[dict]:
        """GET /api/runs: one dict per run (see `run`)."""
        return [self.run(entry) for entry in self.entries().values()]

    def run(self, entry: RunEntry) -> dict:
        """name, source, editable, model, dataset, features, status ("training", "finished"
        or "stopped"), epochs (finished), epochs_total, position (epochs done, fractional),
        test_accuracy (or None), val_accuracy, best_val_accuracy, best_epoch, seconds
        (training time), params, images_per_second, eta_seconds (the training steps left, at
        the last point's speed), and the options lr, batch_size, augment, limit_train."""
        try:
            record = dict(self._facts(entry))
        except (CheckpointError, OSError) as error:  # listed, with what is wrong with it
            return {"name": entry.name, "source": entry.source, "editable": False,
                    "model": None, "dataset": None, "epochs": 0, "status": "stopped",
                    "test_accuracy": None, "error": str(error)}
        points = record.pop("_points")
        record["status"] = self._status(entry, points)
        record.update(_live(points, record["epochs"], record["epochs_total"],
                            record["status"] == "training"))
        return record

    def _facts(self, entry: RunEntry) -> dict:
        """What the run's files say, cached until one of them changes."""
        key = (entry.path, _mtimes(entry.path))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        metadata, _ = read_run_metadata(entry.path)
        finished = metadata.get("format") != STATE_FORMAT
        training = metadata.get("training") or metadata.get("config") or {}
        metrics = _read_or_empty(read_metrics, entry.path)
        last = metrics[-1] if metrics else {}
        best = metadata.get("best") or {}
        facts = {
            "name": entry.name, "source": entry.source, "editable": entry.editable,
            "model": training.get("model"), "dataset": training.get("dataset"),
            "features": training.get("features"),
            "epochs": len(metrics) if metrics else int(metadata.get("epoch", 0)),
            "epochs_total": training.get("epochs"),
            "test_accuracy": (metadata.get("metrics") or {}).get("test_accuracy") if finished
            else None,
            "val_accuracy": last.get("val_accuracy"),
            "best_val_accuracy": best.get("val_accuracy"), "best_epoch": best.get("epoch"),
            "seconds": sum(record.get("seconds", 0.0) for record in metrics),
            "params": _parameter_count(metadata.get("model")),
            **{option: training.get(option) for option in ("lr", "batch_size", "augment",
                                                            "limit_train")},
            "_points": _read_or_empty(read_progress, entry.path),
        }
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] != entry.path}
            self._cache[key] = facts
        return facts

    def _status(self, entry: RunEntry, points) -> str:
        """"training" while the lab's job trains the run, or while the process that recorded
        its last point runs and has neither finished the run since nor saved it and gone
        quiet (stopped by Ctrl-C in a process that lives on, a notebook's, say); else
        "finished" or "stopped"."""
        files = changing_files(entry.path)
        finished_at, saved_at = _mtime(files["model"]), _mtime(files["state"])
        if self.training_now() == entry.path:
            return "training"
        last = points[-1] if points else None
        if last is not None and _process_alive(last):
            went_quiet = (saved_at is not None and saved_at > last["time"]
                          and time.time() - saved_at > QUIET_SECONDS)
            if (finished_at is None or last["time"] > finished_at) and not went_quiet:
                return "training"
        return "finished" if finished_at is not None else "stopped"

    # ----- curves and first-layer weights ---------------------------------------------------
    def metrics(self, name: str) -> list[dict]:
        """GET /api/runs/{name}/metrics: the records of the run's metrics.jsonl."""
        return _read_or_empty(read_metrics, self.entry(name).path)

    def curves(self, name: str) -> dict:
        """Per epoch (EPOCH_FIELDS of each record) and per point (its fields, with position:
        the epochs done at that point, (epoch - 1) + step / steps)."""
        path = self.entry(name).path
        epochs = [{key: record.get(key) for key in EPOCH_FIELDS}
                  for record in _read_or_empty(read_metrics, path)]
        points = [{**point, "position": point["epoch"] - 1 + point["step"] / point["steps"]}
                  for point in _read_or_empty(read_progress, path)]
        return {"name": name, "epochs": epochs, "points": points}

    def first_layer(self, name: str) -> dict:
        """The first layer after each epoch, as display images in [0, 1] (uint8 bytes):
        kind "filters" (analysis.pictures.filter_images) or "templates" (template_images,
        with the class names as titles), or None when the run records none."""
        path = self.entry(name).path
        try:
            kind, epochs, weights = read_first_layer(path)
            metadata, _ = read_run_metadata(path)
        except CheckpointError as error:
            raise NotFound(f"{name}: {error}") from None
        prep = metadata["preprocessing"]
        image_shape = (prep["channels"], *prep["input_size"])
        if kind == "templates":
            images = [template_images(weight, image_shape) for weight in weights]
        else:
            images = [filter_images(weight) for weight in weights]
        return {"name": name, "kind": kind, "epochs": epochs,
                "titles": metadata["classes"] if kind == "templates" else None,
                "snapshots": [encode_unit(image) for image in images]}


# ----- helpers ------------------------------------------------------------------------------
def _mtime(path):
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _mtimes(run_dir) -> tuple:
    return tuple(_mtime(path) for path in changing_files(run_dir).values())


def _read_or_empty(reader, run_dir) -> list[dict]:
    """A reader's records, or [] while the file is missing or half-made."""
    try:
        return reader(run_dir)
    except ValueError:
        return []


def _process_alive(point: dict) -> bool:
    """Whether the process that recorded `point` still runs: on this host, not the lab
    itself (a run trained in the lab's own process is never "training" for it), a point less
    than STALE_SECONDS old, and the pid alive."""
    pid = point.get("pid")
    if point.get("host") != HOST or not isinstance(pid, int) or pid == os.getpid():
        return False
    if time.time() - point.get("time", 0) > STALE_SECONDS:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _live(points, epochs, epochs_total, training) -> dict:
    """position, images_per_second and eta_seconds from the last point."""
    if not points:
        return {"position": epochs, "images_per_second": None, "eta_seconds": None}
    last = points[-1]
    position = last["epoch"] - 1 + last["step"] / last["steps"]
    if position < epochs:  # the points end before the last finished epoch
        position = epochs
    eta = None
    if training and epochs_total and last["step"]:
        steps_left = (epochs_total - last["epoch"]) * last["steps"] + last["steps"] - last["step"]
        eta = max(steps_left, 0) * last["seconds"] / last["step"]
    return {"position": position, "images_per_second": last["images_per_second"],
            "eta_seconds": eta}


_PARAMETER_COUNTS = {}


def _parameter_count(config):
    """Learnable parameters of the architecture in a run's metadata (built once per
    architecture), or None."""
    if not isinstance(config, dict):
        return None
    key = json.dumps(config, sort_keys=True)
    if key not in _PARAMETER_COUNTS:
        try:
            model = model_from_config(config)
        except (ValueError, TypeError, KeyError):
            return None
        _PARAMETER_COUNTS[key] = int(sum(parameter.data.size
                                         for parameter in model.parameters()))
    return _PARAMETER_COUNTS[key]
