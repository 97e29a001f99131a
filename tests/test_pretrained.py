"""The shipped trained weights: what their model.json claims is what they measure."""

import numpy as np
import pytest

from cnnlab import pretrained
from cnnlab.checkpoint import load_model
from cnnlab.training.trained import evaluate_run, predict


def test_the_shipped_models_are_the_ladders_linear_and_cnn():
    assert pretrained.names() == ("cnn-fashion-mnist", "linear-fashion-mnist")
    model, metadata = pretrained.load("pretrained:cnn-fashion-mnist")
    assert metadata["model"]["name"] == "cnn" and not model.training
    assert metadata["training"]["out"] == "runs/cnn-fashion-mnist"


@pytest.mark.parametrize("name", ["cnn-fashion-mnist", "linear-fashion-mnist"])
def test_a_shipped_model_measures_the_accuracy_it_records(name):
    _, metadata = load_model(pretrained.path(name) / "model")
    result = evaluate_run(pretrained.path(name), split="test")
    assert result["accuracy"] == pytest.approx(metadata["metrics"]["test_accuracy"], abs=1e-12)
    assert result["accuracy"] > {"cnn": 0.92, "linear": 0.84}[name.split("-")[0]]


def test_predict_reads_a_shipped_model_like_a_run(tmp_path):
    from PIL import Image

    from cnnlab.data import load_dataset

    _, test = load_dataset("fashion-mnist")
    images, labels = test.images[:8], test.labels[:8]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        Image.fromarray(image[0]).save(paths[-1])
    ranked = predict(pretrained.path("cnn-fashion-mnist"), paths, top_k=1)
    predicted = np.array([entry["predictions"][0]["index"] for entry in ranked])
    assert (predicted == labels).mean() >= 0.75


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="cnn-fashion-mnist, linear-fashion-mnist"):
        pretrained.path("resnet")


def test_the_command_line_names_a_shipped_model_pretrained_colon_name(tmp_path):
    import json
    import subprocess
    import sys

    from PIL import Image

    image = np.zeros((28, 28), np.uint8)
    image[4:24, 10:18] = 220  # a light, tall object on a dark background
    Image.fromarray(image).save(tmp_path / "x.png")
    result = subprocess.run(
        [sys.executable, "-m", "cnnlab", "predict", "pretrained:cnn-fashion-mnist",
         str(tmp_path / "x.png"), "--json"], capture_output=True, text=True, check=True)
    expected = predict(pretrained.path("cnn-fashion-mnist"), [tmp_path / "x.png"], top_k=3)
    printed = json.loads(result.stdout)
    assert printed["predictions"][0]["predictions"] == expected[0]["predictions"]
