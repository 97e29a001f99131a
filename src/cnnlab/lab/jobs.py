"""Training from the page: the same `cnnlab train` as the command line, in a subprocess, one
at a time.

    job = TrainingJob(catalogue)
    job.start({"model": "cnn", "epochs": 3, "limit_train": 2000})   # runs/cnn-fashion-mnist
    job.stop()                          # SIGINT, what Ctrl-C sends: the run stays resumable
    job.resume("cnn-fashion-mnist", {"epochs": 5})
    job.status()                        # state, run, command, return code, last log lines

The options are checked by cnnlab.training's TrainConfig before anything starts; the run's
folder is RUNS_DIR/NAME for a NAME checked against the listing (a new name must be a plain
name that no entry of RUNS_DIR has). The subprocess has its own session, so a Ctrl-C in the
lab's terminal reaches it once, from the lab, on the lab's way out.
"""

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time

from cnnlab.checks import check_number
from cnnlab.data import DATASETS
from cnnlab.lab.errors import BadRequest, Conflict
from cnnlab.training.config import TrainConfig, dataset_name, free_run_dir

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OPTIONS = {  # the page's form: option -> flag of cnnlab train
    "model": "--model", "dataset": "--dataset", "epochs": "--epochs", "lr": "--lr",
    "batch_size": "--batch-size", "limit_train": "--limit-train", "val_size": "--val-size",
    "augment": "--augment",
}  # fmt: skip
LOG_LINES = 200
INTERRUPTED = 130  # cnnlab train's exit status after Ctrl-C (the run saved, resumable)


class TrainingJob:
    """The lab's one training subprocess over a RunCatalogue's RUNS_DIR."""

    def __init__(self, catalogue, python=sys.executable):
        self.catalogue, self.python = catalogue, python
        self.lock = threading.Lock()
        self.process, self.path, self.name, self.command = None, None, None, None
        self.action, self.started, self.stopping = None, None, False
        self.log = collections.deque(maxlen=LOG_LINES)

    # ----- what the page asks -----------------------------------------------------------------
    def start(self, options) -> dict:
        """Train a new run with `options` (OPTIONS' keys, plus "name"; the model's defaults
        for the rest) in RUNS_DIR/name, by default RUNS_DIR/<model>-<dataset>[-2, -3, ...]."""
        if not isinstance(options, dict):
            raise BadRequest(f"expected a JSON object of options, got {type(options).__name__}")
        unknown = sorted(set(options) - set(OPTIONS) - {"name"})
        if unknown:
            raise BadRequest(f"unknown options {', '.join(unknown)}; the options are "
                             f"{', '.join([*OPTIONS, 'name'])}")
        given = {key: value for key, value in options.items() if value is not None}
        dataset = given.get("dataset", "fashion-mnist")
        if dataset not in DATASETS:  # never a folder: no path from a request
            raise BadRequest(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
        name = given.pop("name", None)
        if name is None:
            model = given.get("model", "cnn")
            name = free_run_dir(self.catalogue.runs_dir / f"{model}-{dataset_name(dataset)}").name
        self._check_new_name(name)
        path = self.catalogue.runs_dir / name
        try:
            TrainConfig(**given, out=str(path)).resolve()
        except (TypeError, ValueError) as error:
            raise BadRequest(str(error)) from None
        flags = []
        for key, value in given.items():
            if key == "augment":
                flags.append("--augment" if value else "--no-augment")
            else:
                flags += [OPTIONS[key], str(value)]
        return self._launch("start", name, path, [*flags, "--out", str(path)])

    def resume(self, name: str, options) -> dict:
        """Continue run `name` (a run of RUNS_DIR) up to options["epochs"] in total (default:
        its own)."""
        entry = self.catalogue.entry(name)
        if not entry.editable:
            raise BadRequest(f"{name} is a {entry.source} run: it cannot be trained further")
        options = {} if options is None else options
        if not isinstance(options, dict) or set(options) - {"epochs"}:
            raise BadRequest(f"resume takes a JSON object with at most epochs, got {options!r}")
        flags = []
        if options.get("epochs") is not None:
            try:
                check_number("epochs", options["epochs"], integer=True, minimum=1)
            except ValueError as error:
                raise BadRequest(str(error)) from None
            flags = ["--epochs", str(options["epochs"])]
        return self._launch("resume", name, entry.path,
                            ["--out", str(entry.path), "--resume", *flags])

    def stop(self) -> dict:
        """Send the training process SIGINT, once: it finishes its step, saves the run and
        exits (the run stays resumable)."""
        with self.lock:
            if not self._running():
                raise Conflict("no training is running")
            if self.stopping:
                raise Conflict(f"{self.name} is already stopping")
            self.stopping = True
            self.process.send_signal(signal.SIGINT)
        return self.status()

    def status(self) -> dict:
        """state ("idle", "running", "stopping", "finished", "stopped" (after Stop, resumable)
        or "failed"), run, action ("start" or "resume"), command, returncode, started (Unix
        seconds) and the last lines of its output."""
        with self.lock:
            if self.process is None:
                state, returncode = "idle", None
            else:
                returncode = self.process.poll()
                if returncode is None:
                    state = "stopping" if self.stopping else "running"
                else:
                    state = {0: "finished", INTERRUPTED: "stopped"}.get(returncode, "failed")
            return {"state": state, "run": self.name, "action": self.action,
                    "command": self.command, "returncode": returncode,
                    "started": self.started, "log": list(self.log)}

    def training_now(self):
        """The folder being trained in while the process runs, else None."""
        with self.lock:
            return self.path if self._running() else None

    def close(self, timeout=60.0) -> None:
        """On the lab's way out: stop a running process (SIGINT) and wait for it to save."""
        with self.lock:
            process = self.process if self._running() else None
            if process is not None and not self.stopping:
                self.stopping = True
                process.send_signal(signal.SIGINT)
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # ----- the subprocess ---------------------------------------------------------------------
    def _check_new_name(self, name) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise BadRequest(f"name must be 1 to 64 letters, digits, '.', '_' or '-', starting "
                             f"with a letter or digit, got {name!r}")
        try:
            taken = set(os.listdir(self.catalogue.runs_dir))
        except OSError:
            taken = set()
        if name in taken or name in self.catalogue.entries():
            raise Conflict(f"{name} exists in {self.catalogue.runs_dir}: choose another name, "
                           f"or resume it")

    def _running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _launch(self, action, name, path, flags) -> dict:
        command = [self.python, "-m", "cnnlab", "train", *flags]
        with self.lock:
            if self._running():
                raise Conflict(f"{self.name} is training: stop it first (one run at a time)")
            self.log.clear()
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
            self.path, self.name, self.action = path, name, action
            self.command = " ".join(["cnnlab", "train", *flags])
            self.started, self.stopping = time.time(), False
            threading.Thread(target=self._read_output, args=(self.process,), daemon=True).start()
        return self.status()

    def _read_output(self, process) -> None:
        for line in process.stdout:
            self.log.append(line.rstrip("\n"))
        process.stdout.close()
        process.wait()
