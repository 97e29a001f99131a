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
import skimage.feature
from PIL import Image

import cnnlab
from cnnlab.checkpoint import load_checkpoint, load_model
from cnnlab.cli import main
from cnnlab.data import load_dataset, load_image, train_val_split
from cnnlab.training.config import MODEL_DEFAULTS, derived_seed
from cnnlab.training.trained import expects_dark_background, light_background
from test_pictures import assert_png
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


# ----- the numbers, computed here without the library's evaluate, predict or preprocessing ----
def model_inputs(run_dir, pixels):
    """(N, C, H, W) uint8 -> the model's inputs: (pixel / 255 - mean) / std for a model on
    pixels; for one on hog,color features, scikit-image's HOG of each image and its intensity
    histogram, standardised with the statistics saved apart from the weights (RUN_DIR/features)."""
    _, metadata = load_checkpoint(Path(run_dir) / "model")
    prep = metadata["preprocessing"]
    values = pixels.astype(np.float64) / 255
    if "features" not in prep:
        mean, std = (np.asarray(prep[key])[:, None, None] for key in ("mean", "std"))
        return ((values - mean) / std).astype(np.float32)
    assert prep["features"]["names"] == ["hog", "color"]
    options = prep["features"]["options"]
    hogs = np.stack([skimage.feature.hog(
        image[0], orientations=options["orientations"], block_norm=options["block_norm"],
        pixels_per_cell=tuple(options["pixels_per_cell"]),
        cells_per_block=tuple(options["cells_per_block"])) for image in values])
    bins = options["bins"]  # pixel / 255 in [k / bins, (k + 1) / bins): bin k, 255 in the last
    index = np.minimum(pixels[:, 0].reshape(len(pixels), -1).astype(int) * bins // 255, bins - 1)
    histogram = (index[..., None] == np.arange(bins)).mean(axis=1)
    features = np.concatenate([hogs, histogram], axis=1)
    statistics, _ = load_checkpoint(Path(run_dir) / "features")
    return ((features - statistics["features.mean"]) / statistics["features.std"]
            ).astype(np.float32)


def probabilities(run_dir, pixels):
    """(N, K) float64 softmax of the saved model's scores on `model_inputs`."""
    model, _ = load_model(Path(run_dir) / "model")
    with cnnlab.no_grad():
        scores = model.eval()(cnnlab.Tensor(model_inputs(run_dir, pixels))).data
    scores = scores.astype(np.float64) - scores.max(axis=1, keepdims=True)
    return np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)


def folder_test_set(folder):
    """The folder dataset's held-out test images (20% of each class, seed 0)."""
    return load_dataset(f"folder:{folder}")[1]


def validation_set(folder, run_dir):
    """The run's validation images: its --val-size of the training images, drawn with the
    seed training derives from --seed."""
    config = json.loads((Path(run_dir) / "last.json").read_text())["config"]
    train = load_dataset(f"folder:{folder}")[0]
    return train_val_split(train, config["val_size"],
                           seed=derived_seed(config["seed"], "split"))[1]


def expected_evaluation(run_dir, data):
    """Accuracy, mean cross-entropy, per-class accuracy and confusion matrix of the saved model
    on `data`, from its softmax here."""
    p = probabilities(run_dir, data.images)
    predicted, labels = p.argmax(axis=1), data.labels
    confusion = np.zeros((len(data.classes),) * 2, dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {name: float(np.mean(predicted[labels == k] == k)) if np.any(labels == k)
                 else None for k, name in enumerate(data.classes)}
    return {"accuracy": float(np.mean(predicted == labels)),
            "loss": float(-np.log(p[np.arange(len(labels)), labels]).mean()),
            "per_class_accuracy": per_class, "confusion_matrix": confusion.tolist(),
            "count": len(labels)}


def assert_evaluation(result, expected):
    """`evaluate`'s dict against `expected_evaluation`: counts exact, the loss to float32."""
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert {key: result[key] for key in expected if key != "loss"} == {
        key: value for key, value in expected.items() if key != "loss"}


def assert_predictions(results, run_dir, paths, top_k):
    """`predict`'s JSON against the softmax here of the same resized images."""
    _, metadata = load_checkpoint(Path(run_dir) / "model")
    prep, classes = metadata["preprocessing"], metadata["classes"]
    pixels = np.stack([load_image(path, size=tuple(prep["input_size"]),
                                  channels=prep["channels"]) for path in paths])
    expected = probabilities(run_dir, pixels)
    assert [result["image"] for result in results] == [str(path) for path in paths]
    for result, row in zip(results, expected, strict=True):
        order = np.argsort(-row, kind="stable")[:top_k]
        assert [item["index"] for item in result["predictions"]] == order.tolist()
        assert [item["class"] for item in result["predictions"]] == [classes[k] for k in order]
        got = [item["probability"] for item in result["predictions"]]
        assert got == pytest.approx(row[order].tolist(), rel=1e-5, abs=1e-7)


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
    assert " after 2 epochs; " in out
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


def test_train_json_and_log_lines_and_evaluate_of_a_model_that_errs(folder, tmp_path, capsys):
    """One epoch of the linear model gets most test images wrong (an asymmetric confusion
    matrix): train's summary and evaluate give the numbers computed here."""
    status, out, err = run_cli(["train", "--dataset", f"folder:{folder}", "--model", "linear",
                                "--epochs", "1", "--json", "--out", tmp_path / "run"], capsys)
    assert status == 0
    summary = json.loads(out)
    assert summary["epochs"] == 1
    assert "epoch 1/1" in err and "img/s" in err  # the log, on stderr
    expected = expected_evaluation(tmp_path / "run", folder_test_set(folder))
    assert summary["test_accuracy"] == expected["accuracy"] < 0.5
    assert summary["test_loss"] == pytest.approx(expected["loss"], rel=1e-5)
    matrix = np.array(expected["confusion_matrix"])
    assert (matrix != matrix.T).any()
    status, out, err = run_cli(["evaluate", tmp_path / "run", "--json"], capsys)
    assert status == 0, err
    assert_evaluation(json.loads(out), expected)


def test_evaluate_gives_the_models_numbers_on_the_test_and_validation_splits(folder, trained,
                                                                              capsys):
    """The numbers computed here from the model's softmax, on the test split (6 images a
    class) and on the run's validation split (7 images, classes unevenly), which also are the
    last epoch's validation numbers in metrics.jsonl (the same weights)."""
    status, out, err = run_cli(["evaluate", trained, "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)
    assert result["count"] == 18 and list(result["per_class_accuracy"]) == list(CLASSES)
    assert_evaluation(result, expected_evaluation(trained, folder_test_set(folder)))
    status, out, err = run_cli(["evaluate", trained, "--split", "val", "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)
    validation = validation_set(folder, trained)
    assert len(set(np.bincount(validation.labels, minlength=3))) > 1
    assert_evaluation(result, expected_evaluation(trained, validation))
    last = json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["accuracy"] == last["val_accuracy"]
    assert result["confusion_matrix"] == last["val_confusion_matrix"]
    assert result["loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    status, out, _ = run_cli(["evaluate", trained], capsys)
    result = json.loads(run_cli(["evaluate", trained, "--json"], capsys)[1])
    rows = {**result["per_class"], "macro average": result["macro"]}
    assert status == 0 and out.splitlines() == [
        f"accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}  on 18 test images of "
        f"folder:{folder}",
        "top-1 1.0000  top-3 1.0000",
        "  class          precision  recall  f1      images  (recall: the accuracy)",
        *(f"  {name:<13}  {row['precision']:<9.4f}  {row['recall']:.4f}  {row['f1']:.4f}  "
          f"{row.get('support', '')}" for name, row in rows.items())]
    assert [row["support"] for row in result["per_class"].values()] == [6, 6, 6]


def test_json_output_is_one_object_with_a_matrix_row_per_line(trained, capsys):
    """11 keys, the per-class accuracies on one line, the 3 x 3 confusion matrix on 3 lines,
    each class's precision/recall/F1 on one line."""
    status, out, err = run_cli(["evaluate", trained, "--json"], capsys)
    assert status == 0, err
    result = json.loads(out)
    lines = out.strip().splitlines()
    assert len(result) == 11 and len(lines) == 1 + 11 + (3 + 1) + (3 + 1) + 1, out
    matrix_at = lines.index('  "confusion_matrix": [')
    assert [json.loads(line.strip().rstrip(",")) for line in lines[matrix_at + 1:matrix_at + 4]
            ] == result["confusion_matrix"]
    for name, row in result["per_class"].items():
        assert f'    "{name}": {json.dumps(row)}' in [line.rstrip(",") for line in lines]
    assert f'  "per_class_accuracy": {json.dumps(result["per_class_accuracy"])},' in lines


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly():
    """`cnnlab summary | head`, with the reader gone before anything is written: no message,
    status 141 (128 + SIGPIPE), as a Unix tool killed by SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "cnnlab", "summary", "--json"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


def test_predict_converts_any_image(trained, tmp_path, capsys):
    """A big RGB JPEG and a small RGBA PNG are resized and made grey as the training data."""
    rng = np.random.default_rng(1)
    big = tmp_path / "big.jpg"
    draw("stripes", rng, size=40).convert("RGB").save(big)
    small = tmp_path / "small.png"
    draw("circle", rng, size=9).convert("RGBA").save(small)
    status, out, err = run_cli(["predict", trained, big, small, "--top-k", "2", "--json"], capsys)
    assert status == 0 and err == "", err
    results = json.loads(out)["predictions"]
    assert_predictions(results, trained, [big, small], top_k=2)
    status, out, _ = run_cli(["predict", trained, big], capsys)
    _, out_json, _ = run_cli(["predict", trained, big, "--json"], capsys)
    ranked = json.loads(out_json)["predictions"][0]["predictions"]
    assert len(ranked) == 3 and status == 0
    assert out == f"{big}: " + ", ".join(f"{item['class']} {item['probability']:.3f}"
                                          for item in ranked) + "\n"


def test_predict_says_when_a_light_background_fools_a_dark_background_model(trained, tmp_path,
                                                                            capsys):
    """The folder's images are light shapes on dark noise. The same cross drawn dark on white
    gets a one-line warning naming it (and not the dark one) with the --invert hint; with
    --invert it is the dark drawing again: no warning, the same probabilities."""
    drawn = np.asarray(draw("cross", np.random.default_rng(2)))
    dark, light = tmp_path / "dark.png", tmp_path / "light.png"
    Image.fromarray(drawn).save(dark)
    Image.fromarray(255 - drawn).save(light)
    status, out, err = run_cli(["predict", trained, dark, "--json"], capsys)
    assert status == 0 and err == "", err
    expected = json.loads(out)["predictions"][0]["predictions"]
    status, out, err = run_cli(["predict", trained, dark, light], capsys)
    assert status == 0 and len(out.splitlines()) == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {light}: a light background")
    assert "--invert" in lines[0] and str(dark) not in lines[0]
    status, out, err = run_cli(["predict", trained, light, "--invert", "--json"], capsys)
    assert status == 0 and err == "", err
    assert json.loads(out)["predictions"][0]["predictions"] == expected


def test_light_background_and_which_models_expect_a_dark_one():
    dark = np.zeros((2, 1, 6, 6), np.uint8)
    dark[:, :, 2:4, 2:4] = 250
    light = 255 - dark
    mixed = np.concatenate([dark[:1], light[:1], np.full((1, 1, 6, 6), 200, np.uint8)])
    assert light_background(mixed).tolist() == [False, True, False]  # flat: no brighter border
    colour = np.repeat(light, 3, axis=1)
    assert light_background(colour).tolist() == [True, True]
    grey = {"channels": 1, "mean": [0.29]}
    assert expects_dark_background({"preprocessing": grey, "dataset": "folder:x"})
    assert not expects_dark_background({"preprocessing": {**grey, "mean": [0.7]},
                                        "dataset": "fashion-mnist"})
    assert not expects_dark_background({"preprocessing": {"channels": 3, "mean": [0.2] * 3},
                                        "dataset": "cifar10"})
    features = {"channels": 1, "features": {}}
    assert expects_dark_background({"preprocessing": features, "dataset": "mnist"})
    assert not expects_dark_background({"preprocessing": features, "dataset": "folder:x"})


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
    result = json.loads(out)
    assert result["accuracy"] >= 0.9  # 18 test images of 3 shapes
    assert_evaluation(result, expected_evaluation(features_run, folder_test_set(folder)))
    described = json.loads((features_run / "model.json").read_text())
    assert described["preprocessing"]["features"]["names"] == ["hog", "color"]
    assert "extra_arrays" not in described  # the statistics are in features.safetensors
    assert (features_run / "features.safetensors").exists()
    assert described["model"]["input_size"] == [1, sum(
        described["preprocessing"]["features"]["dims"].values())]
    images = [folder / "cross" / "29.png", folder / "circle" / "03.png"]
    status, out, err = run_cli(["predict", features_run, *images, "--json", "--top-k", "3"],
                               capsys)
    assert status == 0, err
    results = json.loads(out)["predictions"]
    assert_predictions(results, features_run, images, top_k=3)
    assert results[0]["predictions"][0]["class"] == "cross"
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
    assert out.splitlines() == [str(trained / "curves.png"), str(trained / "confusion.png")]
    assert_png(trained / "curves.png", (1000, 400))  # 10 x 4 inches at 100 dpi
    assert_png(trained / "confusion.png", (600, 500))  # 3 classes: 6 x 5 inches


def test_config_file_under_flags(folder, tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(f'dataset = "folder:{folder}"\nmodel = "linear"\nepochs = 1\nlr = 0.5\n'
                      'batch-size = 8\n')
    run_dir = tmp_path / "run"
    status, out, err = run_cli(["train", "--config", config, "--lr", "0.02", "--quiet",
                                "--out", run_dir], capsys)
    assert status == 0, err
    assert " after 1 epoch; " in out
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
    vit_row = next(line for line in shown.stdout.splitlines() if line.startswith("  vit "))
    assert vit_row.split() == ["vit", "adamw", "0.001", "0", "0.05", "cosine",
                               str(MODEL_DEFAULTS["vit"].epochs), "128", "2", "0.1"]
    assert "--warmup-epochs" in shown.stdout and "--label-smoothing" in shown.stdout
    failed = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--lr", "-1"],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ")
    assert len(failed.stderr.splitlines()) == 1


def test_no_command_lists_every_command_the_parser_has(capsys):
    from cnnlab.cli import build_parser

    code, out, err = run_cli([], capsys)
    assert code == 2 and out == ""
    names = build_parser().command_names()
    assert {"train", "evaluate", "predict", "summary", "viz", "compare"} <= set(names)
    assert err.strip() == f"error: give a command: {', '.join(names)} (cnnlab --help lists them)"


def test_debug_logs_the_blas_path_once(capsys):
    """--debug switches on the library's logger: cnnlab.blas says which BLAS path runs."""
    import logging

    from cnnlab.blas import BLAS

    logger = logging.getLogger("cnnlab")
    handlers, level, logged = list(logger.handlers), logger.level, BLAS._logged
    BLAS._logged = False  # as in a fresh process
    try:
        code, out, err = run_cli(["evaluate", "pretrained:linear-fashion-mnist", "--json",
                                  "--debug"], capsys)
    finally:
        logger.handlers[:], logger.level, BLAS._logged = handlers, level, logged
    assert code == 0 and json.loads(out)["accuracy"] > 0.8
    assert err.count("debug: cnnlab: BLAS") == 1
    assert f"debug: cnnlab: {BLAS.describe()}" in err
