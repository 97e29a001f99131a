"""The lab's API (CONTRACT.md "The lab") over small real runs: the run list, metrics, curves
and first-layer weights; predictions equal to `cnnlab predict`'s; every layer's outputs,
equivariance errors and receptive fields equal to cnnlab.analysis's; test images and
confusion cells; and every error of the contract with its status. (The Host check, the token,
training from the API, the event stream and `cnnlab lab` itself: test_lab_security.py.)"""

import base64
import json
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from cnnlab.analysis import (
    equivariance_error,
    layer_outputs,
    layers,
    receptive_field_box,
    summary,
    translate,
)
from cnnlab.analysis.pictures import unit_scale
from cnnlab.checkpoint import checkpoint_paths
from cnnlab.lab.app import create_app
from cnnlab.lab.encoding import encode_unit
from cnnlab.training import load_trained
from cnnlab.training.rundir import model_path, read_metrics
from cnnlab.training.trained import load_split, rank_classes
from lab_helpers import cnnlab_predict, error_of, folder_runs, png_bytes, train_run

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "test-token"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """The folder runs (see folder_runs), cnn and linear on Fashion-MNIST (1 epoch, 500
    images), and two entries that are not runs (an empty folder and a file)."""
    runs = folder_runs(tmp_path_factory.mktemp("lab"))
    train_run(runs, "cnn")
    train_run(runs, "linear", model="linear")
    (runs / "notes").mkdir()
    (runs / "readme.txt").write_text("not a run")
    return runs


@pytest.fixture(scope="module")
def client(runs_dir):
    with TestClient(create_app(runs_dir, port=8000, token=TOKEN),
                    base_url="http://127.0.0.1:8000") as client:
        yield client


# ----- runs -------------------------------------------------------------------------------
def test_runs_lists_every_run_with_the_contract_fields(client, runs_dir):
    runs = {run["name"]: run for run in client.get("/api/runs").json()}
    assert set(runs) == {"cnn", "linear", "shapes", "stopped"}
    for run in runs.values():
        assert {"name", "model", "dataset", "epochs", "status", "test_accuracy"} <= set(run)
    assert runs["cnn"]["model"] == "cnn" and runs["cnn"]["dataset"] == "fashion-mnist"
    assert runs["cnn"]["status"] == "finished" and runs["cnn"]["epochs"] == 1
    model_json = json.loads((runs_dir / "cnn" / "model.json").read_text())
    assert runs["cnn"]["test_accuracy"] == model_json["metrics"]["test_accuracy"]
    assert runs["cnn"]["params"] == sum(record.params for record in summary(
        load_trained(runs_dir / "cnn").model, (1, 28, 28)))
    stopped = runs["stopped"]
    assert stopped["status"] == "stopped" and stopped["test_accuracy"] is None
    assert stopped["epochs"] == 0 and 0 < stopped["position"] < 1  # 2 of the epoch's steps


def test_a_run_made_after_the_lab_started_appears(client, runs_dir):
    before = {run["name"] for run in client.get("/api/runs").json()}
    shutil.copytree(runs_dir / "linear", runs_dir / "linear-copy")
    try:
        after = {run["name"] for run in client.get("/api/runs").json()}
        assert after == before | {"linear-copy"}
    finally:
        shutil.rmtree(runs_dir / "linear-copy")


def test_a_damaged_run_is_listed_with_its_error_and_refused_by_name(client, runs_dir):
    shutil.copytree(runs_dir / "linear", runs_dir / "damaged")
    try:
        for path in checkpoint_paths(model_path(runs_dir / "damaged")):
            Path(path).write_text("{not json")
        runs = {run["name"]: run for run in client.get("/api/runs").json()}
        assert "cannot read" in runs["damaged"]["error"]
        assert runs["linear"].get("error") is None
        error_of(client.get("/api/runs/damaged/summary"), 404)
    finally:
        shutil.rmtree(runs_dir / "damaged")


def test_metrics_are_the_records_of_metrics_jsonl(client, runs_dir):
    assert client.get("/api/runs/shapes/metrics").json() == read_metrics(runs_dir / "shapes")


def test_curves_have_each_epoch_and_the_points_within_epochs(client):
    curves = client.get("/api/runs/shapes/curves").json()
    assert [record["epoch"] for record in curves["epochs"]] == [1, 2]
    points = curves["points"]
    assert points and points[-1]["position"] == 2.0  # the last step of epoch 2
    assert all(0 < point["position"] <= 2 for point in points)
    assert [point["position"] for point in points] == sorted(point["position"] for point in points)


def test_first_layer_filters_and_templates_after_each_epoch(client):
    filters = client.get("/api/runs/shapes/first-layer").json()
    assert filters["kind"] == "filters" and filters["epochs"] == [1, 2]
    assert [snapshot["shape"] for snapshot in filters["snapshots"]] == [[32, 3, 3]] * 2
    templates = client.get("/api/runs/linear/first-layer").json()
    assert templates["kind"] == "templates" and templates["epochs"] == [1]
    assert templates["snapshots"][0]["shape"] == [10, 28, 28]
    assert templates["titles"][0] == "T-shirt/top"
    assert client.get("/api/runs/stopped/first-layer").json()["kind"] is None  # an mlp


# ----- inside the model -------------------------------------------------------------------
def test_summary_is_cnnlab_summarys(client, runs_dir):
    shown = client.get("/api/runs/cnn/summary").json()
    records = summary(load_trained(runs_dir / "cnn").model, (1, 28, 28))
    assert shown["layers"] == json.loads(json.dumps([record.as_dict() for record in records]))
    assert shown["total_params"] == sum(record.params for record in records)
    assert shown["input_shape"] == [1, 28, 28] and shown["pixels"] is True


def test_predict_equals_cnnlab_predict(client, runs_dir, tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(image))
    for name in ("cnn", "linear"):
        response = client.post(f"/api/runs/{name}/predict", content=path.read_bytes())
        predictions = response.json()["predictions"]
        assert len(predictions) == 10
        assert predictions == cnnlab_predict(runs_dir / name, path)


def test_inspect_gives_the_predictions_and_every_layers_output(client, runs_dir):
    result = client.post("/api/runs/cnn/inspect", params={"test_index": 7}).json()
    trained = load_trained(runs_dir / "cnn")
    test = load_split(trained.metadata, "fashion-mnist")
    pixels = test.images[7]
    assert result["label"] == int(test.labels[7])
    assert result["predictions"] == rank_classes(trained, pixels[None])[0]
    outputs = layer_outputs(trained.model, trained.inputs.transform(pixels[None]))
    records = summary(trained.model, (1, 28, 28))
    assert [layer["name"] for layer in result["layers"]] == [record.name for record in records]
    for layer, (_, output) in zip(result["layers"], outputs, strict=True):
        if output.ndim == 4:
            assert layer["maps"] == encode_unit(unit_scale(output[0], axes=(1, 2)))
        elif output.shape[1] <= 1024:
            assert layer["values"] == encode_unit(unit_scale(output[0][None]))
        else:
            assert "values" not in layer and "maps" not in layer  # the Flatten
        assert layer.get("equivariance_error") is None  # no shift


def test_a_shifted_input_gives_each_layers_equivariance_error(client, runs_dir):
    result = client.post("/api/runs/cnn/inspect", params={"test_index": 7, "dy": 0,
                                                          "dx": 2}).json()
    trained = load_trained(runs_dir / "cnn")
    pixels = load_split(trained.metadata, "fashion-mnist").images[7]
    assert result["shift"] == [0, 2] and result["input"]["shape"] == [1, 28, 28]
    shifted = np.frombuffer(base64.b64decode(result["input"]["data"]), np.uint8)
    assert np.array_equal(shifted.reshape(1, 28, 28), translate(pixels, (0, 2)))
    errors = {layer["name"]: layer.get("equivariance_error") for layer in result["layers"]}
    conv1 = layers(trained.model)[0][1]
    expected = equivariance_error(lambda images: conv1(trained.inputs.transform(
        np.asarray(images))), pixels[None].astype(np.float32), (0, 2))
    assert errors["conv1"] == pytest.approx(expected, abs=1e-12)
    assert errors["conv1"] < 1e-6 and errors["relu1"] < 1e-6  # shifts commute, inside
    assert errors["maxpool1"] is not None and errors["conv2"] is not None  # jump 2 divides 2
    assert errors["maxpool2"] is None  # jump 4 does not
    assert all(errors[layer["name"]] is None for layer in result["layers"]
               if not layer["spatial"])


def test_receptive_field_is_analysis_receptive_field_box(client, runs_dir):
    records = {record.name: record for record in summary(
        load_trained(runs_dir / "cnn").model, (1, 28, 28))}
    for layer, row, col in (("conv1", 0, 0), ("conv2", 3, 4), ("maxpool2", 6, 6)):
        field = client.get("/api/runs/cnn/receptive-field",
                           params={"layer": layer, "row": row, "col": col}).json()
        assert field["box"] == list(receptive_field_box(records[layer], (row, col), (28, 28)))
        assert field["receptive_field"] == list(records[layer].receptive_field)
        assert field["jump"] == list(records[layer].jump)


def test_test_images_by_class_misclassified_and_confusion_cells(client, runs_dir):
    confusion = client.get("/api/runs/shapes/confusion").json()
    assert confusion["split"] == "test"
    matrix = np.array(confusion["matrix"])
    everything = client.get("/api/runs/shapes/test-images", params={"limit": 200}).json()
    assert everything["total"] == matrix.sum() and everything["predicted"] is None
    assert everything["images"]["shape"] == [matrix.sum(), 1, 16, 16]
    for label in range(3):
        page = client.get("/api/runs/shapes/test-images", params={"label": label}).json()
        assert set(page["labels"]) == {label} and page["total"] == matrix[label].sum()
        for predicted in range(3):
            cell = client.get("/api/runs/shapes/test-images",
                              params={"label": label, "predicted": predicted}).json()
            assert cell["total"] == matrix[label, predicted]
            assert set(cell["predicted"]) <= {predicted}
    wrong = client.get("/api/runs/shapes/test-images", params={"misclassified": "true"}).json()
    assert wrong["total"] == matrix.sum() - np.trace(matrix)
    assert all(label != guess for label, guess in zip(wrong["labels"], wrong["predicted"],
                                                      strict=True))
    paged = client.get("/api/runs/shapes/test-images", params={"offset": 2, "limit": 3}).json()
    assert paged["indices"] == everything["indices"][2:5]


def test_an_unfinished_run_shows_its_state_and_validation_confusion(client):
    assert client.get("/api/runs/stopped/summary").status_code == 200
    assert client.get("/api/runs/stopped/confusion").json() == {
        "name": "stopped", "classes": ["bottom", "middle", "top"], "split": "validation",
        "matrix": None}


# ----- errors -----------------------------------------------------------------------------
NAMED = [("get", "metrics"), ("get", "curves"), ("get", "first-layer"), ("get", "summary"),
         ("get", "confusion"), ("get", "test-images"), ("post", "predict"), ("post", "inspect"),
         ("get", "receptive-field?layer=conv1&row=0&col=0")]


@pytest.mark.parametrize("name", ["nope", "notes", "readme.txt", "%2e%2e", "..%2Fruns"])
def test_a_name_that_is_not_a_run_is_404(client, name):
    for method, rest in NAMED:
        response = getattr(client, method)(f"/api/runs/{name}/{rest}")
        assert response.status_code == 404, (name, rest, response.text)
        assert response.json()["error"]


def test_a_body_that_is_not_an_image_is_400(client):
    assert "empty" in error_of(client.post("/api/runs/cnn/predict", content=b""), 400)
    assert "not an image" in error_of(client.post("/api/runs/cnn/predict", content=b"hello"), 400)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    truncated = png_bytes(noise)[:400]  # a header, and half of the pixels
    error_of(client.post("/api/runs/cnn/inspect", content=truncated), 400)


def declared_png(width, height) -> bytes:
    """A valid small PNG whose header declares width x height (a decompression bomb)."""
    data = bytearray(png_bytes(np.zeros((4, 4), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_a_decompression_bomb_is_refused_before_decoding(client):
    for width, height in ((9000, 9000), (30000, 30000)):  # over the lab's limit; over Pillow's
        message = error_of(client.post("/api/runs/cnn/predict",
                                       content=declared_png(width, height)), 400)
        assert "too large" in message


def test_a_body_over_10_mb_is_413(client):
    big = b"\0" * (10 * 1024 * 1024 + 1)
    error_of(client.post("/api/runs/cnn/predict", content=big), 413)
    error_of(client.post("/api/runs/cnn/inspect", content=iter([big[:6_000_000],
                                                                 big[6_000_000:]])), 413)


def test_bad_parameters_are_400(client):
    for path, params in (
        ("inspect", {"test_index": "seven"}), ("inspect", {"test_index": 10_000}),
        ("inspect", {"test_index": 1, "dx": 28}), ("inspect", {"dy": "up", "test_index": 1}),
        ("receptive-field", {"layer": "linear1", "row": 0, "col": 0}),
        ("receptive-field", {"layer": "conv2", "row": 14, "col": 0}),
        ("receptive-field", {"layer": "conv2", "row": 0}),
        ("test-images", {"label": 10}), ("test-images", {"limit": 0}),
        ("test-images", {"misclassified": "maybe"}),
    ):
        method = client.post if path == "inspect" else client.get
        error_of(method(f"/api/runs/cnn/{path}", params=params), 400)
    with_both = client.post("/api/runs/cnn/inspect", params={"test_index": 1},
                            content=png_bytes(np.zeros((28, 28), np.uint8)))
    assert "not both" in error_of(with_both, 400)


def test_unknown_routes_and_files_are_json_errors(client):
    error_of(client.get("/api/nothing"), 404)
    error_of(client.get("/static/../pyproject.toml"), 404)
    error_of(client.get("/static/js/nothing.js"), 404)
    error_of(client.delete("/api/runs"), 405)
