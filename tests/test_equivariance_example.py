"""examples/equivariance_vit_vs_cnn.py on 20 Fashion-MNIST test images, with the shipped CNN
and an untrained vit: convolutions commute with the shifts their grids allow, a stride-4 patch
embedding not with a 1-pixel shift, and the table and JSON print."""

import json
import runpy
from pathlib import Path

import numpy as np

from interop_runs import FASHION_MNIST, fashion_mnist

EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parent.parent /
                             "examples/equivariance_vit_vs_cnn.py"))


def test_the_grids_decide_which_shifts_commute(capsys):
    cnn = EXAMPLE["load_trained"]("pretrained:cnn-fashion-mnist")
    vit, vit_inputs, described = EXAMPLE["load_vit"](None)
    assert described.startswith("untrained")
    pixels = fashion_mnist()[1].images[:20].astype(np.float64)
    results = EXAMPLE["measure"](cnn.model, cnn.inputs, vit, vit_inputs, pixels)
    one, patch = EXAMPLE["SHIFTS"]
    first_conv = results["cnn: first conv (3x3, jump 1)"]
    embedding = results["vit: patch embedding (4x4 stride 4, jump 4)"]
    assert first_conv[one] < 1e-6 and first_conv[patch] < 1e-6
    assert embedding[patch] < 1e-6 < 0.3 < embedding[one]
    for name in ("cnn", "vit"):
        assert 0 <= results[f"{name}: same predicted class"][one] <= 1
    EXAMPLE["main"](["--images", "5", "--json", "--data-dir", str(FASHION_MNIST)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["images"] == 5 and set(printed["results"]) == set(results)
