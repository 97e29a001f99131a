"""`cnnlab export` end to end, as subprocesses, on runs of every model family trained a few steps
on real Fashion-MNIST images and on the shipped models: onnxruntime on the written file agrees
with `cnnlab predict --json`, the PyTorch files rebuild the model, bad options and runs that
cannot be exported are one line and exit 2 and leave no file; the README's lines run as they
stand. And a features run keeps its statistics apart from its weights (PyTorch loads them with
strict=True), while runs that kept them inside the weights file still evaluate and predict."""

import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from PIL import Image

import cnnlab
from cnnlab import pretrained
from cnnlab.checkpoint import load_checkpoint, save_model
from cnnlab.cli import main
from cnnlab.interop import torch_source
from cnnlab.training import load_trained
from cnnlab.training.rundir import start_run_dir
from interop_runs import FAMILIES, fashion_mnist, make_run

AGREEMENT = 1e-5
ROOT = Path(__file__).resolve().parent.parent


def cnnlab_command(*arguments, cwd, blocked=()):
    """`python -m cnnlab ARGUMENTS` in `cwd`; `blocked`: packages that fail to import there."""
    path = [str(ROOT / "src")]
    if blocked:
        stubs = Path(cwd).parent / f"{Path(cwd).name}-without-{'-'.join(blocked)}"
        for package in blocked:
            (stubs / package).mkdir(parents=True, exist_ok=True)
            (stubs / package / "__init__.py").write_text(
                f'raise ImportError("No module named {package!r} (blocked by the test)")\n')
        path.insert(0, str(stubs))
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path),
                   "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cnnlab", *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, env=environment, timeout=120)


def assert_one_line_error(done, *fragments):
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


def files_under(*folders):
    return {path for folder in folders for path in Path(folder).rglob("*") if path.is_file()}


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cnnlab_logits(run, pixels):
    """The trained model's logits for (N, C, H, W) uint8 pixels, prepared as in training."""
    model, _, inputs = load_trained(run)
    with cnnlab.no_grad():
        return model(cnnlab.Tensor(inputs.transform(pixels))).data


def onnx_probabilities(path, pixels):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = pixels.astype(np.float32) / np.float32(255)
    return softmax(session.run(["logits"], {"images": images})[0])


def predicted_probabilities(run, files, cwd):
    """`cnnlab predict RUN FILES --json --top-k 10` as an (N, 10) array of probabilities."""
    done = cnnlab_command("predict", run, *files, "--json", "--top-k", 10, cwd=cwd)
    assert done.returncode == 0, done.stderr
    probabilities = np.zeros((len(files), 10))
    for row, result in enumerate(json.loads(done.stdout)["predictions"]):
        for item in result["predictions"]:
            probabilities[row, item["index"]] = item["probability"]
    return probabilities


@pytest.fixture(scope="module")
def fashion():
    return fashion_mnist()


@pytest.fixture(scope="module")
def runs(fashion, tmp_path_factory):
    """RUN_DIR of each family, trained a few steps on Fashion-MNIST's training images."""
    root = tmp_path_factory.mktemp("runs")
    for name in FAMILIES:
        make_run(root / name, name, fashion[0])
    return {name: root / name for name in FAMILIES}


@pytest.fixture(scope="module")
def image_files(fashion, tmp_path_factory):
    """(files, pixels): the first 20 Fashion-MNIST test images as PNG files, (20, 1, 28, 28)."""
    root = tmp_path_factory.mktemp("images")
    pixels = fashion[1].images[:20]
    files = [root / f"{index}.png" for index in range(len(pixels))]
    for file, image in zip(files, pixels, strict=True):
        Image.fromarray(image[0]).save(file)
    return files, pixels


# ----- ONNX and PyTorch files of every family ----------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_the_onnx_file_agrees_with_cnnlab_predict(name, runs, image_files, tmp_path):
    files, pixels = image_files
    done = cnnlab_command("export", runs[name], "--format", "onnx", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = runs[name] / "export" / "model.onnx"
    assert json.loads(done.stdout) == {"run": str(runs[name]), "format": "onnx",
                                       "files": [str(out)], "opset": 17}
    theirs = onnx_probabilities(out, pixels)
    assert np.abs(theirs - predicted_probabilities(runs[name], files, tmp_path)).max() \
        <= AGREEMENT


@pytest.mark.parametrize("name", FAMILIES)
def test_the_torch_files_rebuild_the_model(name, runs, fashion, tmp_path, capsys):
    out = tmp_path / "weights" / f"{name}.safetensors"
    assert main(["export", str(runs[name]), "--format", "torch", "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out), str(out.with_suffix(".py"))]
    module = runpy.run_path(str(out.with_suffix(".py")))["model"]  # loads with strict=True
    x = load_trained(runs[name]).inputs.transform(fashion[1].images[:200])
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).numpy()
    assert np.abs(theirs - cnnlab_logits(runs[name], fashion[1].images[:200])).max() <= AGREEMENT


def test_a_shipped_model_goes_to_the_working_directory(image_files, tmp_path):
    files, pixels = image_files
    done = cnnlab_command("export", "pretrained:cnn-fashion-mnist", "--format", "onnx",
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cnnlab-export/cnn-fashion-mnist.onnx\n"
    theirs = onnx_probabilities(tmp_path / "cnnlab-export" / "cnn-fashion-mnist.onnx", pixels)
    ours = predicted_probabilities("pretrained:cnn-fashion-mnist", files, tmp_path)
    assert np.abs(theirs - ours).max() <= AGREEMENT
    assert not (pretrained.path("cnn-fashion-mnist") / "export").exists()


def test_writing_for_pytorch_needs_no_pytorch(runs, tmp_path):
    done = cnnlab_command("export", runs["mlp"], "--format", "torch", "--out", "mlp.safetensors",
                          cwd=tmp_path, blocked=["torch"])
    assert done.returncode == 0, done.stderr
    weights = safetensors.numpy.load_file(tmp_path / "mlp.safetensors")
    assert weights.keys() == load_checkpoint(runs["mlp"] / "model")[0].keys()
    assert (tmp_path / "mlp.py").exists()


# ----- what cannot be exported: one line, exit 2, no file -----------------------------------
BAD = {
    "opset too old": (["--format", "onnx", "--opset", "12"], "opset must be an int from 13"),
    "opset for torch": (["--format", "torch", "--opset", "17"],
                        "--opset applies to --format onnx, not --format torch"),
    "onnx file name": (["--format", "onnx", "--out", "model.pt"], "must end in .onnx"),
    "torch file name": (["--format", "torch", "--out", "model.onnx"], "must end in .safetensors"),
    "unknown format": (["--format", "keras"], "invalid choice: 'keras'"),
    "no format": ([], "required: --format"),
    "unwritable out": (["--format", "onnx", "--out", "a-file/model.onnx"], "a-file"),
}


def in_process(*arguments, capsys):
    """`cnnlab ARGUMENTS` in this process (the same code as the command): a CompletedProcess."""
    status = main([str(argument) for argument in arguments])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(arguments, status, out, err)


@pytest.mark.parametrize("case", BAD)
def test_bad_options_are_one_line_and_write_nothing(case, runs, tmp_path, monkeypatch,
                                                    capsys):
    options, message = BAD[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("in the way of a folder")
    before = files_under(runs["cnn"], tmp_path)
    assert_one_line_error(in_process("export", runs["cnn"], *options, capsys=capsys), message)
    assert files_under(runs["cnn"], tmp_path) == before


@pytest.mark.parametrize("run, message", [
    ("nowhere", "nowhere: no such run directory or checkpoint"),
    ("pretrained:nope", "no shipped model named 'nope'"),
])
def test_a_missing_run_is_one_line(run, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(in_process("export", run, "--format", "torch", capsys=capsys),
                          message)
    assert files_under(tmp_path) == set()


def test_a_missing_onnx_package_is_one_line_naming_its_install(runs, tmp_path):
    done = cnnlab_command("export", runs["cnn"], "--format", "onnx", "--out", "cnn.onnx",
                          cwd=tmp_path, blocked=["onnx"])
    assert_one_line_error(done, "export_onnx needs the onnx package",
                          "pip install 'cnnlab[export]'")
    assert not (tmp_path / "cnn.onnx").exists()


def test_a_features_run_is_refused_for_onnx(features_run, tmp_path):
    before = files_under(features_run)
    done = cnnlab_command("export", features_run, "--format", "onnx", cwd=tmp_path)
    assert_one_line_error(done, "trained on hand-made features (hog, color)")
    assert files_under(features_run) == before and not (features_run / "export").exists()


# ----- a features run's statistics, apart from its weights ---------------------------------
CLASSES = ("Trouser", "Sneaker", "Bag")


@pytest.fixture(scope="module")
def fashion_folder(fashion, tmp_path_factory):
    """FOLDER/{train,test}/<class>/<i>.png: real Fashion-MNIST images of three classes, 40
    training and 10 test images each."""
    folder = tmp_path_factory.mktemp("fashion-folder")
    for split, data, count in (("train", fashion[0], 40), ("test", fashion[1], 10)):
        for name in CLASSES:
            (folder / split / name).mkdir(parents=True)
            index = np.flatnonzero(data.labels == data.classes.index(name))[:count]
            for number, image in enumerate(data.images[index]):
                Image.fromarray(image[0]).save(folder / split / name / f"{number}.png")
    return folder


@pytest.fixture(scope="module")
def features_run(fashion_folder, tmp_path_factory):
    """A linear run on HOG + colour features of the folder's images, by `cnnlab train`."""
    folder = fashion_folder
    run_dir = tmp_path_factory.mktemp("runs") / "features"
    assert main(["train", "--dataset", f"folder:{folder}", "--model", "linear", "--features",
                 "hog,color", "--epochs", "2", "--batch-size", "16", "--val-size", "12",
                 "--quiet", "--out", str(run_dir)]) == 0
    return run_dir


def test_a_features_runs_weights_load_into_pytorch_strictly(features_run, fashion):
    model, metadata, inputs = load_trained(features_run)
    assert "extra_arrays" not in metadata
    statistics, _ = load_checkpoint(features_run / "features")
    assert statistics.keys() == inputs.arrays().keys() == {"features.mean", "features.std"}

    def strictly_loaded(weights_file):
        namespace = {}
        exec(torch_source(model), namespace)  # the torch.nn twin, freshly initialised
        namespace["model"].load_state_dict(safetensors.torch.load_file(weights_file),
                                           strict=True)  # refuses any key more or less
        return namespace["model"]

    strictly_loaded(features_run / "best.safetensors")
    twin = strictly_loaded(features_run / "model.safetensors")
    pixels = fashion[1].images[fashion[1].labels == 8][:20]  # bags
    with torch.no_grad():
        theirs = twin(torch.from_numpy(inputs.transform(pixels))).numpy()
    assert np.abs(theirs - cnnlab_logits(features_run, pixels)).max() <= AGREEMENT


def test_a_features_run_goes_to_pytorch_with_its_statistics(features_run, tmp_path):
    done = cnnlab_command("export", features_run, "--format", "torch", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    weights, script, statistics = map(Path, json.loads(done.stdout)["files"])
    assert (weights, statistics) == (features_run / "export" / "model.safetensors",
                                     features_run / "export" / "model.features.safetensors")
    runpy.run_path(str(script))  # builds the module and loads the weights with strict=True
    expected, _ = load_checkpoint(features_run / "features")
    for key, value in safetensors.numpy.load_file(statistics).items():
        np.testing.assert_array_equal(value, expected[key])


@pytest.fixture
def old_style_run(features_run, tmp_path):
    """The features run as runs were saved before: its statistics inside model.safetensors."""
    old = tmp_path / "old"
    shutil.copytree(features_run, old)
    for path in old.glob("features.*"):
        path.unlink()
    arrays, metadata = load_checkpoint(old / "model")
    model, _, inputs = load_trained(features_run)
    save_model(old / "model", model, metadata, extra_arrays=inputs.arrays())
    assert json.loads((old / "model.json").read_text())["extra_arrays"] == [
        "features.mean", "features.std"]
    return old


def test_runs_with_their_statistics_inside_still_evaluate_and_predict(
        features_run, old_style_run, fashion_folder, capsys):
    bag = fashion_folder / "test" / "Bag" / "0.png"
    results = []
    for run in (features_run, old_style_run):
        assert main(["evaluate", str(run), "--json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        assert main(["predict", str(run), str(bag), "--json"]) == 0
        predicted = json.loads(capsys.readouterr().out)["predictions"][0]["predictions"]
        results.append((evaluated["accuracy"], evaluated["loss"], predicted))
    assert results[0] == results[1]


def test_a_features_model_without_its_statistics_is_one_line(features_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(features_run, run)
    (run / "features.safetensors").unlink()
    assert main(["evaluate", str(run), "--json"]) == 2
    error = capsys.readouterr().err
    assert re.fullmatch(r"error: .*features\.safetensors: checkpoint not found\n", error), error


def test_a_fresh_run_removes_the_previous_runs_statistics(features_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(features_run, run)
    start_run_dir(run)
    assert not list(run.glob("features.*")) and not list(run.glob("model.*"))


# ----- the README's lines ------------------------------------------------------------------
def readme_blocks(language):
    """The ```LANGUAGE blocks of the README's "Take a model elsewhere" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Take a model elsewhere\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_the_readme_lines_run_and_agree_with_cnnlab(fashion, tmp_path, monkeypatch):
    commands = [line.split("#")[0].split() for block in readme_blocks("bash")
                for line in block.splitlines() if line.startswith("cnnlab export pretrained:")]
    assert len(commands) == 2
    for command in commands:
        done = cnnlab_command(*command[1:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    monkeypatch.chdir(tmp_path)
    pixels = fashion[1].images[:100]
    ours = cnnlab_logits("pretrained:cnn-fashion-mnist", pixels)
    onnx_lines, torch_lines = readme_blocks("python")
    for lines in (onnx_lines, torch_lines):
        namespace = {"images": pixels.astype(np.float32) / np.float32(255)}
        exec(lines, namespace)
        theirs = np.asarray(namespace["logits"])
        assert np.abs(softmax(theirs) - softmax(ours)).max() <= AGREEMENT
        assert np.abs(theirs - ours).max() <= 1e-6 * np.abs(ours).max()  # float32 rounding
    rebuild = torch_lines[torch_lines.index("model = "):torch_lines.index("\n)\n") + 3]
    generated = (tmp_path / "cnnlab-export" / "cnn-fashion-mnist.py").read_text()
    assert rebuild in generated  # the README shows the lines `cnnlab export` writes
