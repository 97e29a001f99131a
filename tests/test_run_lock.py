"""One training per RUN_DIR: a run holds an OS lock on RUN_DIR/.lock from start to end (fresh,
resumed or overwriting); another process is refused, naming the holder's PID, by the library
(RunDirBusy) and by the command line (one line, exit 2); a killed holder frees it."""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnnlab.training import TrainConfig, train
from cnnlab.training.rundir import LOCK, RunDirBusy, locked

HOLD = """
import sys
from cnnlab.training.rundir import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin or kills this process
"""


@contextlib.contextmanager
def held(run_dir):
    """Another process holding RUN_DIR's lock within the block."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "held\n"
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def holder(tmp_path):
    with held(tmp_path / "run") as process:
        yield process


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/<class>/<i>.png: 12 grey 8 x 8 images of two classes (dark and light)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, low in (("dark", 0), ("light", 150)):
        (root / name).mkdir()
        for index in range(12):
            pixels = rng.integers(low, low + 100, (8, 8)).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(root / name / f"{index}.png")
    return root


def config(out, folder="missing", **options):
    options = {"model": "linear", "dataset": f"folder:{folder}", "epochs": 1,
               "batch_size": 8, "out": str(out), **options}
    return TrainConfig(**options).resolve()


def test_another_process_holding_the_lock_refuses_every_kind_of_run(tmp_path, holder):
    """Refused before anything else happens: the dataset does not even exist (it would be a
    DatasetError), and the files in RUN_DIR stay as they were."""
    run_dir = tmp_path / "run"
    (run_dir / "metrics.jsonl").write_text("kept\n")
    message = f"^{run_dir} is being trained by process {holder.pid}$"
    with pytest.raises(RunDirBusy, match=message), locked(run_dir):
        pass
    for kind in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunDirBusy, match=message):
            train(config(run_dir), **kind)
    assert (run_dir / "metrics.jsonl").read_text() == "kept\n"
    assert sorted(path.name for path in run_dir.iterdir()) == [LOCK, "metrics.jsonl"]


def test_a_killed_holder_frees_the_lock(tmp_path, holder):
    holder.kill()
    holder.wait()
    with locked(tmp_path / "run") as run_dir:
        assert (run_dir / LOCK).read_text() == f"{os.getpid()}\n"
    assert (run_dir / LOCK).read_text() == ""  # released: no stale PID left behind


def test_the_command_line_says_who_trains_in_one_line_and_exits_2(tmp_path, folder):
    run_dir = tmp_path / "run"
    train(config(run_dir, folder))  # --resume reads the run's options before it trains
    with held(run_dir) as holder:
        for flags in (["--resume", "--epochs", "2"],
                      ["--overwrite", "--model", "linear", "--dataset", "folder:missing"]):
            done = subprocess.run(
                [sys.executable, "-m", "cnnlab", "train", "--out", str(run_dir), *flags],
                capture_output=True, text=True, timeout=120)
            assert done.returncode == 2, done.stderr
            assert done.stderr == f"error: {run_dir} is being trained by process {holder.pid}\n"
            assert done.stdout == ""


def test_a_run_holds_the_lock_from_start_to_end_fresh_resumed_and_overwriting(tmp_path,
                                                                               folder):
    """Every log line of the run (the first comes before any file is written, the last after
    the last epoch) finds the lock held; after the run, it is free."""
    run_dir, refused = tmp_path / "run", []

    def log(line):
        with pytest.raises(RunDirBusy) as caught, locked(run_dir):
            pass
        refused.append(str(caught.value))

    for kind, epochs in (({}, 1), ({"resume": True}, 2), ({"overwrite": True}, 1)):
        refused.clear()
        summary = train(config(run_dir, folder, epochs=epochs), log=log, **kind)
        assert summary["epochs"] == epochs
        assert len(refused) >= 2
        assert set(refused) == {f"{run_dir} is being trained by process {os.getpid()}"}
        with locked(run_dir):
            pass
