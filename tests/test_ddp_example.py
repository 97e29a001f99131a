"""examples/ddp_finetune.py: a cnnlab run fine-tuned by PyTorch DistributedDataParallel over two
processes (gloo, CPU, localhost), brought back as a run that `cnnlab evaluate` reads. About 20 s
on two free cores: mostly the two workers starting (PyTorch, the dataset) and two evaluations."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cnnlab.checkpoint import load_model
from interop_runs import FASHION_MNIST, fashion_mnist, make_features_run, make_run

ROOT = Path(__file__).resolve().parent.parent


def run_python(*arguments):
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *map(str, arguments)], capture_output=True,
                          text=True, env=environment, timeout=120, cwd=ROOT)


def evaluate(run_dir):
    done = run_python("-m", "cnnlab", "evaluate", run_dir, "--json", "--data-dir", FASHION_MNIST)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_two_processes_fine_tune_a_run_that_cnnlab_evaluates(tmp_path):
    original = make_run(tmp_path / "run", "cnn", fashion_mnist()[0], steps=1, channels=(8,),
                        hidden_sizes=(16,))
    done = run_python(ROOT / "examples/ddp_finetune.py", tmp_path / "run", "--out",
                      tmp_path / "ddp", "--processes", 2, "--steps", 30, "--lr", 3e-3,
                      "--limit", 2000, "--data-dir", FASHION_MNIST)
    assert done.returncode == 0, done.stderr
    assert "replicas agree: max |weight difference| between workers 0\n" in done.stdout
    tuned, metadata = load_model(tmp_path / "ddp" / "model")
    assert tuned.config == original.config
    assert metadata["fine_tuned"]["processes"] == 2 and metadata["fine_tuned"]["steps"] == 30
    assert not np.allclose(tuned.state_dict()["0.weight"], original.state_dict()["0.weight"])
    before, after = evaluate(tmp_path / "run"), evaluate(tmp_path / "ddp")
    assert after["count"] == 10000 and after["accuracy"] > before["accuracy"] + 0.2, (
        before["accuracy"], after["accuracy"])


def test_a_features_run_is_refused_before_any_worker_starts(tmp_path):
    make_features_run(tmp_path / "run", fashion_mnist()[0], count=20)
    done = run_python(ROOT / "examples/ddp_finetune.py", tmp_path / "run", "--out",
                      tmp_path / "ddp")
    assert done.returncode == 2 and done.stderr.startswith("error: ")
    assert "hand-made features (hog, color)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "ddp").exists()
