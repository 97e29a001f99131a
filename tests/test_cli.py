"""The `cnnlab` command end to end, on a generated folder of PNGs: train, evaluate --json,
predict, plot, resume after an interruption, config files, and every bad input ending in one
line `error: ...` with exit status 2 and no traceback."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli import main
from test_train_viz import assert_png_with_content

CLASSES = ("circle", "cross", "stripes")
TRAIN = ["--model", "mlp", "--epochs", "2", "--batch-size", "16", "--quiet"]


def draw(kind, rng, size=12):
    """A grey image of one of CLASSES, with noise."""
    pixels = rng.integers(0, 60, (size, size))
    rows, columns = np.mgrid[:size, :size]
    if kind == "circle":
        pixels[(rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (size / 3) ** 2] += 180
    elif kind == "cross":
        pixels[size // 2 - 1:size // 2 + 1] += 180
        pixels[:, size // 2 - 1:size // 2 + 1] += 180
    else:
        pixels[::3] += 180
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="L")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/<class>/<i>.png, 30 grey 12 x 12 images per class (24 train, 6 test each)."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for kind in CLASSES:
        (root / kind).mkdir()
        for index in range(30):
            draw(kind, rng).save(root / kind / f"{index:02d}.png")
    return root


def run_cli(argv, capsys):
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """A finished run (mlp, 2 epochs) on the folder."""
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    status = main(["train", "--dataset", f"folder:{folder}", *TRAIN, "--out", str(run_dir)])
    assert status == 0
    return run_dir


def assert_one_line_error(status, err, *fragments):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ----- the happy paths ------------------------------------------------------------------------
def test_train_writes_the_run_and_reports_test_accuracy(folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, out, err = run_cli(["train", "--dataset", f"folder:{folder}", *TRAIN,
                                "--out", run_dir], capsys)
    assert status == 0, err
    assert out.startswith("test accuracy ") and str(run_dir) in out
    names = {path.name for path in run_dir.iterdir()}
    assert {"model.safetensors", "model.json", "metrics.jsonl", "last.safetensors",
            "last.json", "best.safetensors", "best.json", "curves.png",
            "confusion.png"} <= names
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert_png_with_content(run_dir / "curves.png")
    assert_png_with_content(run_dir / "confusion.png")
    described = json.dumps(json.loads((run_dir / "model.json").read_text()))
    for word in ('"classes"', '"mean"', '"std"', '"input_size"', '"channels"', '"epoch"',
                 '"metrics"', '"circle"'):
        assert word in described


def test_train_json_and_log_lines(folder, tmp_path, capsys):
    status, out, err = run_cli(["train", "--dataset", f"folder:{folder}", "--model", "linear",
                                "--epochs", "1", "--json", "--out", tmp_path / "run"], capsys)
    assert status == 0
    summary = json.loads(out)
    assert 0 <= summary["test_accuracy"] <= 1 and summary["epochs"] == 1
    assert "epoch 1/1" in err and "img/s" in err  # the log, on stderr


def test_evaluate_json(trained, capsys):
    status, out, err = run_cli(["evaluate", trained, "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)
    assert 0 <= result["accuracy"] <= 1 and result["loss"] >= 0
    assert result["count"] == 18 and set(result["per_class_accuracy"]) == set(CLASSES)
    status, out, _ = run_cli(["evaluate", trained / "best.safetensors"], capsys)
    assert status == 0 and out.startswith("accuracy ")


def test_predict_converts_any_image(trained, tmp_path, capsys):
    """A big RGB JPEG and a small RGBA PNG are resized and made grey as the training data."""
    rng = np.random.default_rng(1)
    big = tmp_path / "big.jpg"
    draw("stripes", rng, size=40).convert("RGB").save(big)
    small = tmp_path / "small.png"
    draw("circle", rng, size=9).convert("RGBA").save(small)
    status, out, err = run_cli(["predict", trained, big, small, "--top-k", "2", "--json"], capsys)
    assert status == 0, err
    results = json.loads(out)["predictions"]
    assert [Path(result["image"]).name for result in results] == ["big.jpg", "small.png"]
    for result in results:
        probabilities = [item["probability"] for item in result["predictions"]]
        assert len(probabilities) == 2 and probabilities[0] >= probabilities[1]
        assert {item["class"] for item in result["predictions"]} <= set(CLASSES)
    status, out, _ = run_cli(["predict", trained, big], capsys)
    assert status == 0 and out.startswith(f"{big}: ") and out.count("0.") >= 3


def test_evaluate_reads_the_training_state_too(trained, capsys):
    """RUN_DIR/last after the last epoch holds the final weights: the same numbers."""
    results = []
    for path in (trained, trained / "last"):
        status, out, err = run_cli(["evaluate", path, "--json"], capsys)
        assert status == 0, err
        results.append(json.loads(out))
    assert results[0]["accuracy"] == results[1]["accuracy"]
    assert results[0]["loss"] == results[1]["loss"]


# ----- hand-designed features -------------------------------------------------------------------
FEATURES = ["--model", "linear", "--features", "hog,color", "--epochs", "3", "--batch-size", "16",
            "--lr", "0.01", "--quiet"]


@pytest.fixture(scope="module")
def features_run(folder, tmp_path_factory):
    """A finished linear run on HOG + colour features of the folder's images."""
    run_dir = tmp_path_factory.mktemp("runs") / "features"
    assert main(["train", "--dataset", f"folder:{folder}", *FEATURES, "--out", str(run_dir)]) == 0
    return run_dir


def test_features_train_well_and_evaluate_and_predict_repeat_them(features_run, folder, capsys):
    """evaluate recomputes the test images' features from the saved pipeline; predict on a PNG
    matches evaluate's view of the same image."""
    status, out, err = run_cli(["evaluate", features_run, "--json"], capsys)
    assert status == 0, err
    assert json.loads(out)["accuracy"] >= 0.9  # 18 test images of 3 shapes
    described = json.loads((features_run / "model.json").read_text())
    assert described["preprocessing"]["features"]["names"] == ["hog", "color"]
    assert "extra_arrays" not in described  # the statistics are in features.safetensors
    assert (features_run / "features.safetensors").exists()
    assert described["model"]["input_size"] == [1, sum(
        described["preprocessing"]["features"]["dims"].values())]
    status, out, err = run_cli(["predict", features_run, folder / "cross" / "29.png",
                                "--json"], capsys)
    assert status == 0, err
    assert json.loads(out)["predictions"][0]["predictions"][0]["class"] == "cross"
    status, out, err = run_cli(["summary", features_run], capsys)
    assert status == 0 and "(1, 1, 154)" in out, out + err


def test_features_refused_for_cnns_and_unknown_names(capsys):
    status, _, err = run_cli(["train", "--model", "cnn", "--features", "hog"], capsys)
    assert_one_line_error(status, err, "--features applies to", "not cnn")
    status, _, err = run_cli(["train", "--model", "linear", "--features", "hog,sift"], capsys)
    assert_one_line_error(status, err, "'sift'", "pixels, hog, color, polar")


def test_plot_redraws(trained, capsys):
    for name in ("curves.png", "confusion.png"):
        (trained / name).unlink()
    status, out, _ = run_cli(["plot", trained], capsys)
    assert status == 0
    assert (trained / "curves.png").exists() and (trained / "confusion.png").exists()


def test_config_file_under_flags(folder, tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(f'dataset = "folder:{folder}"\nmodel = "linear"\nepochs = 1\nlr = 0.5\n'
                      'batch-size = 8\n')
    run_dir = tmp_path / "run"
    status, _, err = run_cli(["train", "--config", config, "--lr", "0.02", "--quiet",
                              "--out", run_dir], capsys)
    assert status == 0, err
    _, state = load_checkpoint(run_dir / "last")
    assert state["config"]["lr"] == 0.02 and state["config"]["batch_size"] == 8
    assert state["config"]["model"] == "linear" and state["epoch"] == 1


# ----- interruption and resume ------------------------------------------------------------------
def model_weights(run_dir):
    return load_checkpoint(Path(run_dir) / "model")[0]


@pytest.mark.parametrize("steps", [4, 5], ids=["epoch-boundary", "mid-epoch"])
def test_interrupted_then_resumed_is_bit_identical(folder, trained, tmp_path, capsys, steps):
    """65 training images in batches of 16: 5 steps an epoch. Interrupted after 4 steps
    (mid-epoch 1) or 5 (end of epoch 1), resumed: the same weights as the uninterrupted run."""
    run_dir = tmp_path / "run"
    argv = ["train", "--dataset", f"folder:{folder}", *TRAIN, "--out", run_dir]
    status, _, err = run_cli([*argv, "--interrupt-after-steps", steps], capsys)
    assert status == 130
    assert len(err.strip().splitlines()) == 1 and "--resume" in err and "Traceback" not in err
    status, _, err = run_cli(["train", "--out", run_dir, "--resume", "--quiet"], capsys)
    assert status == 0, err
    expected, got = model_weights(trained), model_weights(run_dir)
    assert expected.keys() == got.keys()
    assert all(np.array_equal(expected[key], got[key]) for key in expected)


def test_ctrl_c_saves_and_exits_130(folder, tmp_path):
    """A real SIGINT to a running `python -m cnnlab train`: one line, status 130, resumable."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "cnnlab", "train", "--dataset", f"folder:{folder}",
               "--model", "mlp", "--epochs", "100000", "--batch-size", "4", "--out", run_dir]
    process = subprocess.Popen([str(arg) for arg in command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (run_dir / "metrics.jsonl").exists() or not (
            run_dir / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted") and "--resume" in last and "Traceback" not in err
    _, state = load_checkpoint(run_dir / "last")
    assert state["epoch"] >= 1


# ----- bad input: one line, status 2 ------------------------------------------------------------
def test_bad_flags(capsys):
    for argv, fragment in [
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--lr", "-1"], "--lr"),
        (["train", "--epochs", "many"], "--epochs"),
        (["train", "--model", "resnet"], "--model"),
        (["train", "--frobnicate"], "--frobnicate"),
        (["train", "--val-size", "x"], "--val-size"),
        (["predict", "run"], "IMAGE"),
        (["launch"], "launch"),
        ([], "command"),
    ]:
        assert_one_line_error(*run_cli(argv, capsys)[::2], fragment)


def test_missing_and_damaged_data(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert_one_line_error(*run_cli(["train", "--data-dir", missing], capsys)[::2], str(missing))
    (tmp_path / "fashion-mnist").mkdir()
    (tmp_path / "fashion-mnist/train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    assert_one_line_error(*run_cli(["train", "--data-dir", tmp_path], capsys)[::2])
    assert_one_line_error(*run_cli(["train", "--dataset", f"folder:{missing}"], capsys)[::2])
    assert_one_line_error(*run_cli(["train", "--config", missing / "x.toml"], capsys)[::2])


def test_bad_checkpoints_and_images(trained, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"\x00" * 10)
    (broken / "model.json").write_text("{")
    assert_one_line_error(*run_cli(["evaluate", broken], capsys)[::2])
    assert_one_line_error(*run_cli(["evaluate", tmp_path / "none"], capsys)[::2])
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    assert_one_line_error(*run_cli(["predict", trained, notes], capsys)[::2], "notes.png")
    assert_one_line_error(*run_cli(["predict", trained, tmp_path / "absent.png"], capsys)[::2])
    assert_one_line_error(*run_cli(["predict", trained, notes, "--top-k", "0"], capsys)[::2])
    status, _, err = run_cli(["evaluate", trained, "--dataset", "mnist", "--data-dir",
                              tmp_path], capsys)
    assert_one_line_error(status, err)


def test_a_run_dir_holding_a_run_is_never_replaced_by_accident(folder, trained, tmp_path,
                                                                capsys, monkeypatch):
    before = (trained / "model.safetensors").read_bytes()
    status, _, err = run_cli(["train", "--dataset", f"folder:{folder}", *TRAIN,
                              "--out", trained], capsys)
    assert_one_line_error(status, err, str(trained), "--resume", "--overwrite")
    assert (trained / "model.safetensors").read_bytes() == before
    status, _, err = run_cli(["train", "--out", trained, "--resume", "--overwrite"], capsys)
    assert_one_line_error(status, err, "--resume", "--overwrite")
    # Without --out, a second run goes to <model>-<dataset>-2 beside the first.
    monkeypatch.chdir(tmp_path)
    dirs = []
    for _ in range(2):
        status, out, err = run_cli(["train", "--dataset", f"folder:{folder}", *TRAIN, "--epochs",
                                    "1", "--json"], capsys)
        assert status == 0, err
        dirs.append(Path(json.loads(out)["run_dir"]))
    assert dirs[1] == dirs[0].with_name(dirs[0].name + "-2")
    assert all((tmp_path / run_dir / "last.json").exists() for run_dir in dirs)
    copy = tmp_path / "copy"
    status, _, err = run_cli(["train", "--dataset", f"folder:{folder}", *TRAIN, "--epochs", "1",
                              "--out", copy], capsys)
    assert status == 0, err
    status, _, err = run_cli(["train", "--dataset", f"folder:{folder}", *TRAIN, "--epochs", "1",
                              "--out", copy, "--overwrite", "--seed", "3"], capsys)
    assert status == 0, err
    assert json.loads((copy / "last.json").read_text())["config"]["seed"] == 3


def test_resume_into_an_incompatible_or_empty_run_dir(trained, tmp_path, capsys):
    status, _, err = run_cli(["train", "--out", trained, "--resume", "--lr", "9"], capsys)
    assert_one_line_error(status, err, "--lr 9.0")
    assert_one_line_error(*run_cli(["train", "--out", tmp_path, "--resume"], capsys)[::2])
    status, _, err = run_cli(["train", "--out", trained, "--resume", "--epochs", "1"], capsys)
    assert_one_line_error(status, err, "--epochs 1", "already at 2")


def test_resume_from_a_damaged_state(folder, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--dataset", f"folder:{folder}", *TRAIN, "--epochs", "1",
                 "--out", str(run_dir)]) == 0
    state = run_dir / "last.safetensors"
    data = bytearray(state.read_bytes())
    data[-3] ^= 0xFF
    state.write_bytes(bytes(data))
    status, _, err = run_cli(["train", "--out", run_dir, "--resume", "--epochs", "2"], capsys)
    assert_one_line_error(status, err, "last.safetensors", "corrupt")


def test_diverging_run_is_a_one_line_error(folder, tmp_path, capsys):
    status, _, err = run_cli(["train", "--dataset", f"folder:{folder}", *TRAIN, "--lr", "1e10",
                              "--out", tmp_path / "run"], capsys)
    assert_one_line_error(status, err, "diverged", "epoch 1, step")


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="--epochs"):
        main(["train", "--epochs", "0", "--debug"])


def test_the_installed_entry_point(tmp_path):
    """`python -m cnnlab` as a user runs it: help reads, and errors are one line."""
    env = {**os.environ, "COLUMNS": "100"}
    shown = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--help"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert "per-model defaults" in shown.stdout and "--limit-train" in shown.stdout
    assert "--features" in shown.stdout and "hog,color" in shown.stdout
    failed = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--lr", "-1"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ")
    assert len(failed.stderr.splitlines()) == 1
