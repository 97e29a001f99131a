"""cnnlab.interop: ONNX export checked by onnxruntime on real Fashion-MNIST images, PyTorch
modules both ways, and the PyTorch weights export, for every model family (the vit a tiny
one: 2 layers of width 32)."""

import json
import os
import runpy
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import safetensors.numpy
import torch
from PIL import Image

import cnnlab
from cnnlab import nn
from cnnlab.checkpoint import load_model
from cnnlab.interop import (
    CONVERTERS,
    LAYERS,
    MissingDependencyError,
    export_onnx,
    export_torch,
    from_torch,
    onnx_model,
    to_torch,
    torch_source,
)
from cnnlab.models import build_model
from interop_runs import FAMILIES, fashion_mnist, make_features_run, make_run, normalise

AGREEMENT = 1e-5
ROOT = Path(__file__).resolve().parent.parent
NETWORKS = (*FAMILIES, "vit")
TINY_VIT = {"hidden_dim": 32, "num_layers": 2, "num_heads": 2, "mlp_dim": 64}


@pytest.fixture(scope="module")
def fashion():
    return fashion_mnist()


@pytest.fixture(scope="module")
def runs(fashion, tmp_path_factory):
    """RUN_DIR of each family, trained a few steps on Fashion-MNIST's training images."""
    root = tmp_path_factory.mktemp("runs")
    for name in NETWORKS:
        make_run(root / name, name, fashion[0], **(TINY_VIT if name == "vit" else {}))
    return {name: root / name for name in NETWORKS}


def softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cnnlab_logits(model, x):
    with cnnlab.no_grad():
        return model(cnnlab.Tensor(x)).data


def onnx_logits(path_or_bytes, images):
    session = onnxruntime.InferenceSession(path_or_bytes, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"images": images})[0]


# ----- ONNX ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETWORKS)
def test_onnxruntime_agrees_with_the_cnnlab_model_on_test_images(name, runs, fashion, tmp_path):
    model, metadata = load_model(runs[name] / "model")
    model.eval()
    pixels = fashion[1].images[:200]
    out = export_onnx(runs[name], tmp_path / "model.onnx")
    theirs = softmax(onnx_logits(str(out), pixels.astype(np.float32) / np.float32(255)))
    ours = softmax(cnnlab_logits(model, normalise(pixels, metadata["preprocessing"])))
    assert np.abs(theirs - ours).max() <= AGREEMENT
    assert (theirs.argmax(1) == ours.argmax(1)).all()


@pytest.mark.parametrize("name", NETWORKS)
def test_the_onnx_graph_is_in_inference_form_with_its_metadata(name, runs, tmp_path):
    proto = onnx.load(export_onnx(runs[name], tmp_path / "model.onnx"))
    _, metadata = load_model(runs[name] / "model")
    ops = [node.op_type for node in proto.graph.node]
    assert ops[:2] == ["Sub", "Div"] and "Dropout" not in ops
    assert ("BatchNormalization" in ops) == (name == "cnn-bn")
    assert ({"LayerNormalization", "Erf", "Softmax"} <= set(ops)) == (name == "vit")
    assert (proto.opset_import[0].version, proto.ir_version) == (17, 8)
    props = {prop.key: prop.value for prop in proto.metadata_props}
    assert json.loads(props["classes"]) == metadata["classes"]
    assert props["cnnlab_version"] == cnnlab.__version__
    assert json.loads(props["model"])["name"] == name
    (image,), (logits,) = proto.graph.input, proto.graph.output
    dims = [dim.dim_param or dim.dim_value for dim in image.type.tensor_type.shape.dim]
    assert (image.name, dims) == ("images", ["N", 1, 28, 28])
    assert logits.name == "logits"
    initialisers = {tensor.name for tensor in proto.graph.initializer}
    weights = {key for key in load_model(runs[name] / "model")[0].state_dict()
               if not key.endswith("num_batches_tracked")}
    assert weights <= initialisers  # named by the state-dict keys


def test_every_layer_exports_and_converts(fashion):
    """Every layer type in the tables, in a hand-built model, through ONNX and PyTorch."""
    rng = np.random.default_rng(3)
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 4, 3, stride=2, padding=1, generator=rng)),
        ("norm", nn.BatchNorm2d(4)), ("leaky", nn.LeakyReLU(0.2)),
        ("avg", nn.AvgPool2d(3, stride=1, padding=1)), ("max", nn.MaxPool2d(2, padding=1)),
        ("block", nn.Sequential(nn.Tanh(), nn.Identity(), nn.Flatten(),
                                nn.Linear(256, 16, bias=False, generator=rng))),
        ("norm1d", nn.BatchNorm1d(16)), ("sigmoid", nn.Sigmoid()), ("drop", nn.Dropout(0.5)),
        ("relu", nn.ReLU()), ("head", nn.Linear(16, 10, generator=rng)),
    ]))
    x = fashion[1].images[:50].astype(np.float32) / np.float32(255)
    cnnlab_logits(model, x)  # training mode: the running statistics move
    for norm in (model.norm, model.norm1d):
        norm.weight.data[:] = rng.uniform(0.5, 2, norm.num_features)
        norm.bias.data[:] = rng.uniform(-1, 1, norm.num_features)
    model.eval()
    metadata = {"classes": list(fashion[1].classes), "preprocessing": {
        "channels": 1, "input_size": [28, 28], "mean": [0.0], "std": [1.0]}}
    ours = cnnlab_logits(model, x)
    theirs = onnx_logits(onnx_model(model, metadata).SerializeToString(), x)
    assert np.abs(theirs - ours).max() <= AGREEMENT * np.abs(ours).max()
    module = to_torch(model)
    assert np.abs(module(torch.from_numpy(x)).detach().numpy() - ours).max() <= AGREEMENT
    back = from_torch(module)
    assert torch_source(back) == torch_source(model)  # the same layers and arguments
    assert list(back.state_dict()) == list(model.state_dict())
    assert np.abs(cnnlab_logits(back, x) - ours).max() <= AGREEMENT


def transformer(rng):
    """Every transformer layer in one model: patch tokens, a post-norm relu layer sequence
    first, a pre-norm gelu layer batch first, LayerNorm, GELU, the class token, a head."""
    return nn.Sequential(OrderedDict([
        ("patches", nn.Conv2d(1, 8, 7, stride=7, generator=rng)),
        ("tokens", nn.PatchTokens(16, 8, generator=rng)),
        ("post", nn.TransformerEncoderLayer(8, 2, 16, generator=rng)),
        ("pre", nn.TransformerEncoderLayer(8, 4, 12, activation="gelu", batch_first=True,
                                           norm_first=True, generator=rng)),
        ("norm", nn.LayerNorm(8, eps=1e-6)), ("gelu", nn.GELU()), ("cls", nn.SelectToken()),
        ("head", nn.Linear(8, 10, generator=rng)),
    ]))


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_every_transformer_layer_exports_and_converts(opset, fashion):
    """LayerNorm composed (13) or LayerNormalization (17, 20), GELU with Erf (13, 17) or Gelu
    (20): onnxruntime, torch and the way back compute the model's logits."""
    rng = np.random.default_rng(4)
    model = transformer(rng).eval()
    for parameter in model.parameters():  # no zero biases, no unit LayerNorm weights
        parameter.data += rng.normal(0, 0.1, parameter.shape).astype(np.float32)
    x = fashion[1].images[:20].astype(np.float32) / np.float32(255)
    ours = cnnlab_logits(model, x)
    metadata = {"classes": list(fashion[1].classes), "preprocessing": {
        "channels": 1, "input_size": [28, 28], "mean": [0.0], "std": [1.0]}}
    proto = onnx_model(model, metadata, opset=opset)
    ops = {node.op_type for node in proto.graph.node}
    assert ("LayerNormalization" in ops, "Gelu" in ops, "Erf" in ops) == (
        opset >= 17, opset >= 20, opset < 20)
    theirs = onnx_logits(proto.SerializeToString(), x)
    assert np.abs(theirs - ours).max() <= AGREEMENT * np.abs(ours).max()
    module = to_torch(model)
    assert isinstance(module.post, torch.nn.TransformerEncoderLayer)
    assert np.abs(module(torch.from_numpy(x)).detach().numpy() - ours).max() <= AGREEMENT
    back = from_torch(module)
    assert torch_source(back) == torch_source(model)
    assert np.abs(cnnlab_logits(back, x) - ours).max() <= AGREEMENT


def test_a_float64_vit_and_its_torch_twin_agree_to_float64_precision_both_ways():
    """Forward and backward of a tiny float64 vit in train mode (dropout 0), state dicts
    loaded strictly both ways."""
    rng = np.random.default_rng(5)
    model = build_model("vit", generator=rng, **TINY_VIT).double()
    module = to_torch(model)
    assert module[0].weight.dtype == torch.float64 and module.training
    x = rng.standard_normal((3, 1, 28, 28))
    ours = model(cnnlab.Tensor(x))
    theirs = module(torch.from_numpy(x))
    upstream = rng.standard_normal(ours.shape)
    (ours * cnnlab.Tensor(upstream)).sum().backward()
    (theirs * torch.from_numpy(upstream)).sum().backward()
    assert np.abs(theirs.detach().numpy() - ours.data).max() <= 1e-10
    for (key, parameter), (their_key, their_parameter) in zip(
            model.named_parameters(), module.named_parameters(), strict=True):
        assert key == their_key
        scale = np.abs(parameter.grad).max()
        assert np.abs(their_parameter.grad.numpy() - parameter.grad).max() <= 1e-8 * scale, key
    assert from_torch(module).state_dict().keys() == model.state_dict().keys()


def test_every_cnnlab_layer_has_an_entry_in_both_tables():
    """A layer added to cnnlab.nn needs its ONNX export and its PyTorch twin."""
    losses = {nn.CrossEntropyLoss, nn.MultiClassHingeLoss, nn.Module, nn.Sequential}
    layers = {getattr(nn, name) for name in nn.__all__}
    layers = {kind for kind in layers if isinstance(kind, type) and issubclass(kind, nn.Module)}
    assert layers - losses - set(CONVERTERS) == set()
    assert layers - losses - set(LAYERS) == set()


def test_a_features_run_is_refused_with_one_line(fashion, tmp_path):
    model, inputs = make_features_run(tmp_path / "run", fashion[0])
    with pytest.raises(ValueError, match="hand-made features") as error:
        export_onnx(tmp_path / "run", tmp_path / "model.onnx")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "model.onnx").exists()
    weights, script, stats = export_torch(tmp_path / "run", tmp_path / "out" / "linear.safetensors")
    assert set(safetensors.numpy.load_file(weights)) == set(model.state_dict())
    for key, value in safetensors.numpy.load_file(stats).items():
        np.testing.assert_array_equal(value, inputs.arrays()[key])
    assert (script.name, stats.name) == ("linear.py", "linear.features.safetensors")
    assert "features.mean and features.std of linear.features.safetensors" in script.read_text()


def test_a_failed_write_leaves_no_file_and_the_old_one_untouched(runs, tmp_path, monkeypatch):
    out = tmp_path / "model.onnx"
    with pytest.raises(OSError, match="disk full"):
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", _raise_disk_full)
            export_onnx(runs["cnn"], out)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"the previous export")
    with pytest.raises(ValueError, match="opset must be an int from 13 to"):
        export_onnx(runs["cnn"], out, opset=12)
    with pytest.raises(OSError, match="disk full"):
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", _raise_disk_full)
            export_onnx(runs["cnn"], out)
    assert out.read_bytes() == b"the previous export" and list(tmp_path.iterdir()) == [out]


def _raise_disk_full(source, target):
    raise OSError("disk full")


@pytest.mark.parametrize("opset", [13, 21])
def test_an_explicit_opset_sets_the_lowest_ir_version_that_holds_it(opset, runs, fashion,
                                                                    tmp_path):
    proto = onnx.load(export_onnx(runs["cnn-bn"], tmp_path / "m.onnx", opset=opset))
    assert proto.opset_import[0].version == opset
    assert proto.ir_version == {13: 7, 21: 10}[opset]
    x = fashion[1].images[:8].astype(np.float32) / 255
    assert onnx_logits(str(tmp_path / "m.onnx"), x).shape == (8, 10)


# ----- PyTorch ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NETWORKS)
def test_to_torch_and_back_compute_the_same_logits_with_the_same_keys(name, runs, fashion):
    model, _ = load_model(runs[name] / "model")
    model.eval()
    x = normalise(fashion[1].images[:100], load_model(runs[name] / "model")[1]["preprocessing"])
    ours = cnnlab_logits(model, x)
    module = to_torch(model)
    assert not module.training
    assert list(module.state_dict()) == list(model.state_dict())
    with torch.no_grad():
        assert np.abs(module(torch.from_numpy(x)).numpy() - ours).max() <= AGREEMENT
    back = from_torch(module)
    assert list(back.state_dict()) == list(model.state_dict())
    assert back.config == model.config  # so save_model can save it
    assert np.abs(cnnlab_logits(back, x) - ours).max() <= AGREEMENT
    for key, value in back.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[key], err_msg=key)


def test_a_float64_model_stays_float64_and_a_torch_module_comes_across():
    model = build_model("cnn", channels=(4,), hidden_sizes=(8,)).double().eval()
    module = to_torch(model)
    assert module[0].weight.dtype == torch.float64
    assert from_torch(module).state_dict()["0.weight"].dtype == np.float64
    native = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(2 * 26 * 26, 3)).eval()
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    ours = from_torch(native)
    assert not hasattr(ours, "config")
    with torch.no_grad():
        assert np.abs(cnnlab_logits(ours, x) - native(torch.from_numpy(x)).numpy()).max() < 1e-5


def test_from_torch_names_what_cnnlab_lacks():
    with pytest.raises(ValueError, match="no counterpart for ELU"):
        from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ELU()))
    with pytest.raises(ValueError, match="MultiheadAttention with bias_k=a tensor is not"):
        from_torch(torch.nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match="MultiheadAttention with _qkv_same_embed_dim=False"):
        from_torch(torch.nn.MultiheadAttention(4, 2, kdim=3))
    with pytest.raises(ValueError, match="TransformerEncoderLayer with activation"):
        from_torch(torch.nn.TransformerEncoderLayer(4, 2, activation=torch.nn.Tanh()))
    with pytest.raises(ValueError, match="MaxPool2d with ceil_mode=True is not supported"):
        from_torch(torch.nn.MaxPool2d(2, ceil_mode=True))
    with pytest.raises(ValueError, match="Conv2d with groups=2"):
        from_torch(torch.nn.Conv2d(2, 2, 3, groups=2))


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnx", None)
    model = build_model("linear")
    with pytest.raises(MissingDependencyError, match="pip install torch") as error:
        to_torch(model)
    assert isinstance(error.value, ImportError)
    with pytest.raises(ImportError, match="from_torch needs the torch package"):
        from_torch(object())
    with pytest.raises(ImportError, match=r"pip install 'cnnlab\[export\]'"):
        onnx_model(model, {})


@pytest.mark.parametrize("name", ["cnn-bn", "vit"])
def test_export_torch_loads_strictly_with_the_lines_it_writes(name, runs, fashion, tmp_path):
    model, metadata = load_model(runs[name] / "model")
    model.eval()
    weights, script, *rest = export_torch(runs[name], tmp_path / f"{name}.safetensors")
    assert rest == [] and set(safetensors.numpy.load_file(weights)) == set(model.state_dict())
    module = runpy.run_path(str(script))["model"]  # builds, loads with strict=True, eval()
    x = normalise(fashion[1].images[:50], metadata["preprocessing"])
    with torch.no_grad():
        theirs = module(torch.from_numpy(x)).numpy()
    assert np.abs(theirs - cnnlab_logits(model, x)).max() <= AGREEMENT
    assert "Input: (N, 1, 28, 28) float32, (pixel / 255 - mean) / std" in script.read_text()
    back = from_torch(module)  # the script's own PatchTokens and SelectToken come back
    assert np.abs(cnnlab_logits(back, x) - cnnlab_logits(model, x)).max() <= AGREEMENT


def test_onnxruntime_on_image_files_agrees_with_cnnlab_predict(runs, fashion, tmp_path):
    """The graph's input is an image file's pixels / 255, as `cnnlab predict` reads it."""
    files = []
    for index in range(3):
        files.append(tmp_path / f"{index}.png")
        Image.fromarray(fashion[1].images[index, 0]).save(files[-1])
    command = [sys.executable, "-m", "cnnlab", "predict", runs["cnn-bn"], *files, "--json",
               "--top-k", "10"]
    done = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    predicted = np.zeros((3, 10))
    for row, result in enumerate(json.loads(done.stdout)["predictions"]):
        for item in result["predictions"]:
            predicted[row, item["index"]] = item["probability"]
    pixels = np.stack([np.asarray(Image.open(file))[None] for file in files])
    out = export_onnx(runs["cnn-bn"], tmp_path / "model.onnx")
    theirs = softmax(onnx_logits(str(out), pixels.astype(np.float32) / np.float32(255)))
    assert np.abs(theirs - predicted).max() <= AGREEMENT
