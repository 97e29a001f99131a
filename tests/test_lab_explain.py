"""The lab's shipped runs and its explanations, through the API: on an empty or missing
RUNS_DIR the two trained models that come with cnnlab are listed, read-only, with curves from
their metrics.jsonl, first-layer weights from their final model and `cnnlab predict
pretrained:NAME`'s predictions; saliency, Grad-CAM and occlusion maps equal cnnlab.explain's on
the same input; each channel's top patches equal top_patches_per_channel's over the test set,
ranked once per model and layer; and every error is JSON with the contract's status."""

import base64
import json
import warnings

import numpy as np
import pytest

from cnnlab import pretrained
from cnnlab.analysis import translate
from cnnlab.analysis.pictures import (
    filter_images,
    first_conv_weight,
    linear_template_weight,
    template_images,
)
from cnnlab.explain import crop_patches, grad_cam, occlusion, saliency, top_patches_per_channel
from cnnlab.lab import explanations
from cnnlab.lab.app import create_app
from cnnlab.lab.encoding import encode_unit
from cnnlab.lab.runs import shipped_runs
from cnnlab.training import load_trained
from cnnlab.training.rundir import read_metrics
from cnnlab.training.trained import load_split, prepare_images
from lab_helpers import cnnlab_predict, error_of, png_bytes, shapes_folder, train_run

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its test client; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "test-token"
CNN, LINEAR = "pretrained:cnn-fashion-mnist", "pretrained:linear-fashion-mnist"


def lab_client(runs_dir):
    """A test client of the lab over runs_dir with the shipped runs, as `cnnlab lab` has it."""
    return TestClient(create_app(runs_dir, port=8000, extra_runs=shipped_runs(), token=TOKEN),
                      base_url="http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """RUNS_DIR with "shapes", a cnn on a folder of 16 x 16 images (a test split of 12), and
    "hog", a linear model on its HOG features."""
    root = tmp_path_factory.mktemp("lab")
    spec = f"folder:{shapes_folder(root / 'shapes')}"
    train_run(root / "runs", "shapes", dataset=spec, epochs=1, limit_train=None, batch_size=16)
    train_run(root / "runs", "hog", model="linear", dataset=spec, epochs=1, limit_train=None,
              batch_size=16, features=["hog"])
    return root / "runs"


@pytest.fixture(scope="module")
def client(runs_dir):
    with lab_client(runs_dir) as client:
        yield client


@pytest.fixture(scope="module")
def shipped_cnn():
    """The shipped CNN and the Fashion-MNIST test set."""
    trained = load_trained(CNN)
    return trained, load_split(trained.metadata, "fashion-mnist")


def unpacked(encoded) -> np.ndarray:
    return np.frombuffer(base64.b64decode(encoded["data"]), np.uint8).reshape(encoded["shape"])


# ----- the shipped runs -------------------------------------------------------------------
@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_an_empty_or_missing_runs_dir_lists_the_shipped_runs(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    with lab_client(tmp_path / folder) as client:
        runs = client.get("/api/runs").json()
    assert [run["name"] for run in runs] == [CNN, LINEAR]
    for run in runs:
        model_json = json.loads((pretrained.path(run["name"]) / "model.json").read_text())
        assert run["source"] == "pretrained" and run["editable"] is False
        assert run["status"] == "finished" and run["epochs"] == model_json["epoch"]
        assert run["test_accuracy"] == model_json["metrics"]["test_accuracy"]


def test_shipped_runs_come_after_runs_dirs_own(client):
    assert [run["name"] for run in client.get("/api/runs").json()] == ["hog", "shapes", CNN,
                                                                       LINEAR]


def test_a_shipped_runs_predictions_are_cnnlab_predicts(client, tmp_path):
    image = np.random.default_rng(2).integers(0, 256, (36, 20, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(image))
    for name in (CNN, LINEAR):
        shown = client.post(f"/api/runs/{name}/predict", content=path.read_bytes()).json()
        assert shown["predictions"] == cnnlab_predict(name, path)


def test_a_shipped_run_has_curves_from_metrics_and_its_final_first_layer(client):
    for name, kind in ((CNN, "filters"), (LINEAR, "templates")):
        records = read_metrics(pretrained.path(name))
        curves = client.get(f"/api/runs/{name}/curves").json()
        assert curves["points"] == []  # no progress file
        assert [record["epoch"] for record in curves["epochs"]] == [r["epoch"] for r in records]
        assert [record["val_accuracy"] for record in curves["epochs"]] == [
            r["val_accuracy"] for r in records]
        layer = client.get(f"/api/runs/{name}/first-layer").json()
        trained = load_trained(name)
        if kind == "filters":
            expected = filter_images(first_conv_weight(trained.model))
        else:
            expected = template_images(linear_template_weight(trained.model, (1, 28, 28)),
                                       (1, 28, 28))
        assert layer["kind"] == kind and layer["final"] is True
        assert layer["epochs"] == [trained.metadata["epoch"]]
        assert layer["snapshots"] == [encode_unit(expected)]
    assert client.get("/api/runs/shapes/first-layer").json()["final"] is False  # by epoch


def test_a_shipped_run_is_read_only(client):
    token = {"x-cnnlab-token": TOKEN}
    message = error_of(client.post(f"/api/runs/{CNN}/resume", json={}, headers=token), 400)
    assert "cannot be trained" in message
    error_of(client.post("/api/training", json={"name": CNN}, headers=token), 400)
    assert client.get("/api/training").json()["state"] == "idle"


# ----- explanations of one input ----------------------------------------------------------
def test_explanations_of_a_test_image_are_cnnlab_explains(client, shipped_cnn):
    trained, test = shipped_cnn
    x = trained.inputs.transform(test.images[7:8])
    predicted = int(client.post(f"/api/runs/{CNN}/predict", content=png_bytes(
        test.images[7, 0])).json()["predictions"][0]["index"])
    summary = client.get(f"/api/runs/{CNN}/summary").json()
    assert summary["explanations"] == {"methods": ["saliency", "gradcam", "occlusion"],
                                       "gradcam_layer": "relu2"}  # as cnnlab explain's
    expected = {"saliency": saliency(trained.model, x, predicted),
                "gradcam": grad_cam(trained.model, x, "relu2", predicted),
                "occlusion": occlusion(trained.model, x, predicted, patch=4, stride=2)}
    boxes = {"saliency": [0, 0, 28, 28], "gradcam": [0, 0, 28, 28],
             "occlusion": [1, 1, 27, 27]}  # patch centres 1.5, 3.5, ...: cells 2 wide from 1
    for method, maps in expected.items():
        result = client.post(f"/api/runs/{CNN}/explain",
                             params={"method": method, "test_index": 7}).json()
        values = np.array(result["map"]["values"], dtype=np.float32)
        np.testing.assert_allclose(values, maps[0], rtol=1e-4, atol=1e-7 * np.abs(maps).max())
        assert result["map"]["shape"] == list(maps.shape[1:])
        assert result["target"]["index"] == predicted and result["label"] == test.labels[7]
        assert result["layer"] == ("relu2" if method == "gradcam" else None)
        assert result["box"] == boxes[method]
        assert result["range"] == [float(values.min()), float(values.max())]
        largest = np.abs(values.astype(np.float64)).max()
        assert result["shown"] == encode_unit(np.clip(values / largest, 0, 1))
        hottest = np.unravel_index(values.argmax(), values.shape)
        assert unpacked(result["shown"])[hottest] == 255


def test_explanations_of_a_shifted_file_for_a_chosen_class_and_layer(client, shipped_cnn,
                                                                     tmp_path):
    trained, test = shipped_cnn
    path = tmp_path / "coat.png"
    path.write_bytes(png_bytes(np.kron(test.images[4, 0], np.ones((3, 3)))))
    pixels, _ = prepare_images(trained, [path])  # as cnnlab predict and explain read it
    x = trained.inputs.transform(translate(pixels[0], (2, -3))[None])
    for method, layer, expected in (
        ("gradcam", "conv1", grad_cam(trained.model, x, "conv1", 3)),
        ("gradcam", "maxpool2", grad_cam(trained.model, x, "maxpool2", 3)),
        ("saliency", None, saliency(trained.model, x, 3)),
        ("occlusion", None, occlusion(trained.model, x, 3)),
    ):
        result = client.post(f"/api/runs/{CNN}/explain", content=path.read_bytes(), params={
            "method": method, "layer": layer, "target": 3, "dy": 2, "dx": -3}).json()
        assert result["target"]["class"] == "Dress" and result["shift"] == [2, -3]
        assert result["layer"] == layer
        np.testing.assert_allclose(np.array(result["map"]["values"], dtype=np.float32),
                                   expected[0], rtol=1e-4, atol=1e-7 * np.abs(expected).max())


def test_a_linear_model_has_saliency_and_occlusion_but_no_grad_cam(client):
    assert client.get(f"/api/runs/{LINEAR}/summary").json()["explanations"] == {
        "methods": ["saliency", "gradcam", "occlusion"], "gradcam_layer": None}
    for method in ("saliency", "occlusion"):
        result = client.post(f"/api/runs/{LINEAR}/explain",
                             params={"method": method, "test_index": 0})
        assert result.status_code == 200
    message = error_of(client.post(f"/api/runs/{LINEAR}/explain",
                                   params={"method": "gradcam", "test_index": 0}), 400)
    assert "has none" in message


# ----- top patches ------------------------------------------------------------------------
def test_top_patches_are_the_librarys_and_ranked_once(client, runs_dir, monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[2])
        return top_patches_per_channel(*args, **kwargs)

    monkeypatch.setattr(explanations, "top_patches_per_channel", counted)
    trained = load_trained(runs_dir / "shapes")
    test = load_split(trained.metadata, trained.metadata["dataset"])
    records = {record["name"]: record for record in
               client.get("/api/runs/shapes/summary").json()["layers"]}
    for layer in ("conv2", "relu1", "conv2"):
        result = client.get("/api/runs/shapes/top-patches", params={"layer": layer}).json()
        found = top_patches_per_channel(trained.model, trained.inputs.transform(test.images),
                                        layer, k=9)
        assert result["channels"] == [[{"image": patch[0], "box": list(patch[1:5]),
                                        "activation": patch[5]} for patch in patches]
                                      for patches in found]
        assert result["receptive_field"] == records[layer]["receptive_field"]
        assert result["images"] == len(test) == 12
        crops = crop_patches(test.images, [patch for patches in found for patch in patches],
                             records[layer]["receptive_field"], fill=np.uint8(128))
        assert np.array_equal(unpacked(result["patches"]),
                              crops.reshape(len(found), 9, *crops.shape[1:]))
    assert calls == ["conv2", "relu1"]  # the second conv2 from the cache


# ----- errors -----------------------------------------------------------------------------
def test_bad_explanation_requests_are_400(client):
    for path, params in (
        ("explain", {"method": "lime", "test_index": 0}),
        ("explain", {"test_index": 0}),
        ("explain", {"method": "saliency", "layer": "conv1", "test_index": 0}),
        ("explain", {"method": "gradcam", "layer": "linear1", "test_index": 0}),
        ("explain", {"method": "gradcam", "layer": "flatten1", "test_index": 0}),
        ("explain", {"method": "occlusion", "target": 10, "test_index": 0}),
        ("explain", {"method": "occlusion", "target": "Dress", "test_index": 0}),
        ("explain", {"method": "saliency", "test_index": 10_000}),
        ("explain", {"method": "saliency", "test_index": 0, "dy": 28}),
        ("explain", {"method": "saliency"}),  # no input
        ("top-patches", {}), ("top-patches", {"layer": "linear2"}),
    ):
        method = client.post if path == "explain" else client.get
        error_of(method(f"/api/runs/{CNN}/{path}", params=params), 400)
    assert "not an image" in error_of(client.post(f"/api/runs/{CNN}/explain", content=b"hi",
                                                  params={"method": "saliency"}), 400)
    for path, method in (("explain?method=saliency&test_index=0", client.post),
                         ("top-patches?layer=conv1", client.get)):
        assert "hand-made features" in error_of(method(f"/api/runs/hog/{path}"), 400)
    big = b"\0" * (10 * 1024 * 1024 + 1)
    error_of(client.post(f"/api/runs/{CNN}/explain?method=saliency", content=big), 413)


@pytest.mark.parametrize("name", ["nope", "cnn-fashion-mnist", "pretrained:nope", "..%2Fruns"])
def test_a_name_that_is_not_a_run_is_404_for_explanations(client, name):
    error_of(client.post(f"/api/runs/{name}/explain?method=saliency&test_index=0"), 404)
    error_of(client.get(f"/api/runs/{name}/top-patches?layer=conv1"), 404)
