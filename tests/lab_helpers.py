"""What the lab's tests share: small real runs, a folder dataset, the lab as a subprocess, and
`cnnlab predict`'s answer for a file."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.cli import main
from cnnlab.training import TrainConfig, TrainingInterrupted, train

SOURCE = Path(__file__).resolve().parent.parent / "src"


def train_run(runs_dir, name, model="cnn", dataset="fashion-mnist", epochs=1, limit_train=500,
              **options):
    """A real run in runs_dir/name, trained here (quick: few images, a small validation set).
    With interrupt_after_steps it stops there, as after Ctrl-C, and is left unfinished."""
    interrupt = options.pop("interrupt_after_steps", None)
    options.setdefault("val_size", 200 if dataset == "fashion-mnist" else 0.2)
    config = TrainConfig(model=model, dataset=dataset, epochs=epochs, limit_train=limit_train,
                         out=str(Path(runs_dir) / name), **options).resolve()
    try:
        return train(config, interrupt_after_steps=interrupt)
    except TrainingInterrupted:
        return None


def shapes_folder(root, per_class=20, size=16):
    """root/<class>/<i>.png: grey images of three classes (a bright band at rows of each
    class's own), a dataset whose test split is small."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("top", "middle", "bottom")):
        (Path(root) / name).mkdir(parents=True)
        for index in range(per_class):
            pixels = rng.integers(0, 70, (size, size))
            band = size // 3
            pixels[label * band:(label + 1) * band] += 150
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(
                Path(root) / name / f"{index:02d}.png")
    return Path(root)


def folder_runs(root):
    """root/runs with two runs on a folder of 16 x 16 images (root/shapes, a test split of 12
    images): "shapes", a cnn of 2 epochs, and "stopped", an mlp stopped after 2 steps."""
    runs = Path(root) / "runs"
    spec = f"folder:{shapes_folder(Path(root) / 'shapes')}"
    train_run(runs, "shapes", dataset=spec, epochs=2, limit_train=None, batch_size=16)
    train_run(runs, "stopped", model="mlp", dataset=spec, epochs=2, limit_train=None,
              batch_size=16, interrupt_after_steps=2)
    return runs


def error_of(response, status) -> str:
    """The message of a JSON error answer with `status`."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert isinstance(message, str) and message
    return message


def png_bytes(array, mode=None) -> bytes:
    """An array (H, W) or (H, W, 3) uint8 as the bytes of a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def cnnlab_predict(run_dir, image_path) -> list[dict]:
    """`cnnlab predict RUN IMAGE --json --top-k 1000`'s predictions for the one image."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        status = main(["predict", str(run_dir), str(image_path), "--json", "--top-k", "1000"])
    assert status == 0
    return json.loads(output.getvalue())["predictions"][0]["predictions"]


def start_lab(runs_dir, *flags):
    """`cnnlab lab RUNS_DIR --port 0` in a subprocess: (process, url from its first line)."""
    env = {**os.environ, "PYTHONPATH": f"{SOURCE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OPENBLAS_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "lab", str(runs_dir), "--port",
                                "0", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    line = process.stdout.readline()
    if not line.startswith("cnnlab lab: http://"):
        process.kill()
        raise AssertionError(f"unexpected first line {line!r}: {process.stderr.read()}")
    return process, line.split(": ", 1)[1].strip()


def stop_lab(process, timeout=60) -> int:
    """Ctrl-C (SIGINT) to the lab; its exit status."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.stderr.close()
