"""Checkpoints: save/load gives bit-identical outputs; truncated, bit-flipped and mismatched
files give one-line CheckpointErrors; a crash before or between the renames leaves a loadable
checkpoint; optimiser, scheduler and RNG state round-trip so training resumes bit for bit."""

import json
import os

import numpy as np
import pytest
import safetensors.torch
import torch

import cnnlab
from cnnlab import checkpoint, files, nn, optim
from cnnlab.checkpoint import (
    flatten_state,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
    unflatten_state,
)
from cnnlab.errors import CheckpointError
from cnnlab.models import build_model
from cnnlab.optim import lr_scheduler
from torch_mirror import torch_twin

METADATA = {"classes": ["a", "b", "c"], "normalization": {"mean": [0.5], "std": [0.25]},
            "input_shape": [1, 12, 12], "epoch": 3, "metrics": {"accuracy": 0.75, "loss": 0.6}}


def small_cnn(**options):
    return build_model("cnn-bn", num_classes=3, input_size=(12, 12), channels=(4, 8),
                       hidden_sizes=(16,), **options)


def images(count=5, seed=0):
    return np.random.default_rng(seed).standard_normal((count, 1, 12, 12)).astype(np.float32)


def trained(model):
    """Move weights and running statistics away from their initial values."""
    model.train()(cnnlab.Tensor(images(8, seed=1)))
    for parameter in model.parameters():
        parameter.data += 0.01
    return model.eval()


@pytest.fixture
def saved(tmp_path):
    model = trained(small_cnn())
    save_model(tmp_path / "model", model, METADATA)
    return tmp_path / "model", model


def error_for(path, function=load_model):
    with pytest.raises(CheckpointError) as error:
        function(path)
    message = str(error.value)
    assert "\n" not in message and str(path).split(".")[0] in message
    return message


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn", "cnn-bn"])
def test_save_and_load_give_bit_identical_outputs(tmp_path, name):
    model = trained(build_model(name, num_classes=3, input_size=(12, 12)))
    save_model(tmp_path / "run" / "model", model, METADATA)
    loaded, metadata = load_model(tmp_path / "run" / "model")
    x = cnnlab.Tensor(images())
    assert np.array_equal(loaded.eval()(x).data, model(x).data)
    for key, value in model.state_dict().items():
        assert np.array_equal(loaded.state_dict()[key], value)
        assert loaded.state_dict()[key].dtype == value.dtype
    assert metadata["classes"] == METADATA["classes"] and metadata["epoch"] == 3
    assert metadata["model"] == model.config


def test_files_are_safetensors_and_json_and_the_weights_load_in_pytorch(saved):
    path, model = saved
    assert sorted(os.listdir(path.parent)) == ["model.json", "model.safetensors"]
    document = json.loads((path.parent / "model.json").read_text())
    assert document["metrics"] == METADATA["metrics"] and document["model"]["name"] == "cnn-bn"
    assert document["cnnlab_checkpoint"]["weights"] == "model.safetensors"
    state = safetensors.torch.load_file(str(path) + ".safetensors")
    twin = torch_twin(small_cnn(), torch.float32)
    twin.load_state_dict(state)  # PyTorch reads the weights file directly
    with torch.no_grad():
        theirs = twin.eval()(torch.from_numpy(images())).numpy()
    assert np.allclose(theirs, model(cnnlab.Tensor(images())).data, rtol=1e-4, atol=1e-5)


def test_every_spelling_of_the_path_names_the_same_checkpoint(saved):
    path, _ = saved
    for spelling in (str(path), f"{path}.safetensors", f"{path}.json"):
        arrays, metadata = load_checkpoint(spelling)
        assert metadata["epoch"] == 3 and "0.weight" in arrays


def test_extra_arrays_travel_with_the_model_and_stay_out_of_its_state_dict(tmp_path):
    model = build_model("linear", input_size=(1, 5), num_classes=3)
    extra = {"features.mean": np.arange(5.0), "features.std": np.ones(5)}
    save_model(tmp_path / "m", model, {"note": 1}, extra_arrays=extra)
    loaded, metadata = load_model(tmp_path / "m")
    assert metadata["extra_arrays"] == ["features.mean", "features.std"]
    assert set(loaded.state_dict()) == {"1.weight", "1.bias"}
    arrays, _ = load_checkpoint(tmp_path / "m")
    assert np.array_equal(arrays["features.mean"], extra["features.mean"])
    with pytest.raises(ValueError, match="clash"):
        save_model(tmp_path / "m", model, extra_arrays={"1.bias": np.zeros(3)})


def test_float64_models_come_back_float64(tmp_path):
    model = small_cnn().double()
    save_model(tmp_path / "model", model)
    loaded, metadata = load_model(tmp_path / "model")
    assert metadata["dtype"] == "float64"
    assert all(parameter.dtype == np.float64 for parameter in loaded.parameters())


@pytest.mark.parametrize("keep", [0, 5, 100, -1000, -3])
def test_a_truncated_file_is_a_one_line_error(saved, keep):
    path, _ = saved
    weights = path.parent / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[:keep] if keep >= 0 else blob[:len(blob) + keep])
    message = error_for(path)
    assert "truncated" in message or "corrupt" in message


@pytest.mark.parametrize("where", ["data", "header"])
def test_a_bit_flip_is_a_one_line_error(saved, where):
    path, _ = saved
    weights = path.parent / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    if where == "data":
        blob[-7] ^= 0x04
    else:  # inside the metadata copy in the header: the JSON still parses
        blob[blob.index(b"T-shirt" if b"T-shirt" in blob else b"normalization") + 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    assert "corrupt" in error_for(path)


def test_weights_of_the_wrong_shape_are_a_one_line_error_listing_them(tmp_path):
    model = small_cnn()
    arrays = model.state_dict()
    arrays["0.weight"] = np.zeros((5, 1, 3, 3), np.float32)
    del arrays["17.bias"]
    metadata = {"model": model.config, "dtype": "float32"}
    save_checkpoint(tmp_path / "model", arrays, metadata)
    message = error_for(tmp_path / "model")
    assert "weights do not match model 'cnn-bn'" in message
    assert "0.weight: got (5, 1, 3, 3), expected (4, 1, 3, 3)" in message
    assert "missing keys ['17.bias']" in message


def test_a_bad_model_config_is_a_one_line_error(tmp_path):
    save_checkpoint(tmp_path / "a", {"w": np.zeros(2)}, {"model": {"name": "resnet"}})
    assert "cannot rebuild the model: unknown model 'resnet'" in error_for(tmp_path / "a")
    save_checkpoint(tmp_path / "b", {"w": np.zeros(2)}, {"epoch": 1})
    assert "no model config" in error_for(tmp_path / "b")


def test_missing_and_foreign_files_are_one_line_errors(tmp_path):
    assert "checkpoint not found" in error_for(tmp_path / "nothing", load_checkpoint)
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    assert "not a cnnlab checkpoint" in error_for(tmp_path / "plain", load_checkpoint)
    (tmp_path / "text.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    assert "unreadable header" in error_for(tmp_path / "text", load_checkpoint)


def test_a_crash_before_the_rename_leaves_the_previous_checkpoint(saved, monkeypatch):
    path, model = saved
    newer = trained(small_cnn())

    def crash(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(checkpoint.os, "replace", crash)
    monkeypatch.setattr(files, "remove", lambda path: None)  # a crash cleans up nothing
    with pytest.raises(OSError, match="simulated crash"):
        save_model(path, newer, {"epoch": 4})
    monkeypatch.undo()
    leftovers = [name for name in os.listdir(path.parent) if name.endswith(".tmp")]
    assert len(leftovers) == 2  # both temporary files were written before the crash
    loaded, metadata = load_model(path)
    assert metadata["epoch"] == 3
    x = cnnlab.Tensor(images())
    assert np.array_equal(loaded.eval()(x).data, model(x).data)
    save_model(path, newer, {"epoch": 4})  # leftovers do not get in the way of the next save
    assert load_model(path)[1]["epoch"] == 4


def test_a_crash_between_the_two_renames_loads_the_new_weights_with_a_warning(saved,
                                                                              monkeypatch):
    path, _ = saved
    newer = trained(small_cnn())
    real_replace, calls = os.replace, []

    def replace_then_crash(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("simulated crash")
        real_replace(source, target)

    monkeypatch.setattr(checkpoint.os, "replace", replace_then_crash)
    with pytest.raises(OSError):
        save_model(path, newer, {"epoch": 4})
    monkeypatch.undo()
    assert not [name for name in os.listdir(path.parent) if name.endswith(".tmp")]
    with pytest.warns(UserWarning, match="belongs to another save"):
        loaded, metadata = load_model(path)
    assert metadata["epoch"] == 4  # the weights file and its own copy of the metadata agree
    x = cnnlab.Tensor(images())
    assert np.array_equal(loaded.eval()(x).data, newer(x).data)


def test_a_missing_or_mismatched_json_warns_and_uses_the_weights_files_metadata(tmp_path):
    save_checkpoint(tmp_path / "one", {"w": np.ones(3)}, {"epoch": 1})
    save_checkpoint(tmp_path / "two", {"w": np.zeros(3)}, {"epoch": 2})
    os.replace(tmp_path / "two.json", tmp_path / "one.json")
    with pytest.warns(UserWarning, match="one.json: it belongs to another save"):
        arrays, metadata = load_checkpoint(tmp_path / "one")
    assert metadata == {"epoch": 1} and np.array_equal(arrays["w"], np.ones(3))
    with pytest.warns(UserWarning, match="two.json: it is missing"):
        assert load_checkpoint(tmp_path / "two")[1] == {"epoch": 2}
    (tmp_path / "one.json").write_text("{not json")
    with pytest.warns(UserWarning, match="it is unreadable"):
        load_checkpoint(tmp_path / "one")


def test_save_checkpoint_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_checkpoint(tmp_path / "x", {}, {"when": object()})
    with pytest.raises(ValueError, match="dtype object"):
        save_checkpoint(tmp_path / "x", {"names": np.array(["a"], dtype=object)}, {})
    with pytest.raises(ValueError, match="reserved|without 'cnnlab_checkpoint'"):
        save_checkpoint(tmp_path / "x", {}, {"cnnlab_checkpoint": 1})
    assert not os.listdir(tmp_path)


def test_flatten_state_round_trips_nested_values():
    state = {"state": {0: {"step": 3, "exp_avg": np.arange(3.0)}, 2: {"step": 1}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1, 2]}],
             "rng": np.random.default_rng(5).bit_generator.state, "flag": None,
             "scalar": np.float32(0.5), "ints": [np.int64(4)]}
    arrays, tree = flatten_state("optimizer", state)
    assert list(arrays) == ["optimizer.state.0.exp_avg"]
    back = unflatten_state(arrays, json.loads(json.dumps(tree)))
    assert back["state"][0]["step"] == 3 and np.array_equal(back["state"][0]["exp_avg"],
                                                            np.arange(3.0))
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["rng"] == state["rng"] and back["scalar"] == 0.5 and back["ints"] == [4]
    with pytest.raises(ValueError, match="cannot store set at x.bad"):
        flatten_state("x", {"bad": {1, 2}})


def test_training_resumes_bit_for_bit_from_a_full_checkpoint(tmp_path):
    """Model, optimiser, scheduler and RNG state saved in one checkpoint, then restored into
    fresh objects: the continued run ends with exactly the uninterrupted run's weights."""
    data = images(16, seed=2)
    labels = np.random.default_rng(3).integers(0, 3, 16)

    def setup():
        cnnlab.manual_seed(0)
        model = small_cnn(dropout=0.3)
        optimizer = optim.AdamW(model.parameters(), lr=0.01)
        scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=6)
        return model, optimizer, scheduler

    def train(model, optimizer, scheduler, epochs):
        model.train()
        for _ in range(epochs):
            optimizer.zero_grad()
            nn.CrossEntropyLoss()(model(cnnlab.Tensor(data)), labels).backward()
            optimizer.step()
            scheduler.step()

    reference = setup()
    train(*reference, 6)

    model, optimizer, scheduler = setup()
    train(model, optimizer, scheduler, 3)
    arrays = {f"model.{key}": value for key, value in model.state_dict().items()}
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": cnnlab.rng.get_rng_state()}
    state_arrays, tree = flatten_state("state", state)
    save_checkpoint(tmp_path / "checkpoint", {**arrays, **state_arrays},
                    {"model": model.config, "state": tree, "epoch": 3})
    cnnlab.manual_seed(99)  # the restored RNG state must win over this

    arrays, metadata = load_checkpoint(tmp_path / "checkpoint")
    restored, _ = load_model(tmp_path / "checkpoint", prefix="model.")
    state = unflatten_state(arrays, metadata["state"])
    optimizer = optim.AdamW(restored.parameters(), lr=0.01)
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=6)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    cnnlab.rng.set_rng_state(state["rng"])
    train(restored, optimizer, scheduler, 3)
    for key, value in reference[0].state_dict().items():
        assert np.array_equal(restored.state_dict()[key], value), key
