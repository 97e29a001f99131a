"""A trained run's model written for other frameworks: `export_onnx`, `export_torch`.

    export_onnx("runs/cnn-fashion-mnist", "cnn.onnx")            # onnxruntime, any ONNX runtime
    export_torch("runs/cnn-fashion-mnist", "cnn.safetensors")    # + cnn.py, the PyTorch lines

Both read RUN_DIR/model (or a checkpoint given by name, such as RUN_DIR/best) and write each
file atomically (`cnnlab.files.atomic_write`): a failed export leaves no file behind and an
older file untouched.
"""

import json
from pathlib import Path

import safetensors.numpy

from cnnlab import __version__
from cnnlab.checkpoint import load_checkpoint, model_from_arrays
from cnnlab.files import atomic_write
from cnnlab.interop.onnx_graph import DEFAULT_OPSET, onnx_model, pixel_preprocessing
from cnnlab.interop.pytorch import torch_source


def read_run(path):
    """(model in eval mode, metadata, arrays) of RUN_DIR/model, or of the checkpoint `path`
    (with or without its suffix). Raises CheckpointError (one line) for a missing or damaged
    checkpoint, ValueError for one that is not a trained model (no classes, preprocessing)."""
    path = Path(path)
    name = path / "model" if path.is_dir() else path
    arrays, metadata = load_checkpoint(name)
    if not isinstance(metadata.get("preprocessing"), dict) or "classes" not in metadata:
        raise ValueError(f"{path}: not a model trained by cnnlab train (its metadata has no "
                         "classes and preprocessing)")
    return model_from_arrays(arrays, metadata, name).eval(), metadata, arrays


def export_onnx(path, out, opset=DEFAULT_OPSET) -> Path:
    """Write the run's model as an ONNX file: input "images" (N, C, H, W) float32 in [0, 1],
    the run's normalisation inside, output "logits" (N, K). See `onnx_model`.

    Args:
        path: RUN_DIR, or a checkpoint name such as RUN_DIR/best.
        out: the .onnx file to write (its folder is created).
        opset: the ONNX operator set. Default: 17.

    Returns `out` as a Path. Raises ValueError (one line) for a run on hand-made features,
    which cnnlab computes outside the model; CheckpointError for a missing or damaged run.
    """
    model, metadata, _ = read_run(path)
    pixel_preprocessing(metadata, source=str(path))
    proto = onnx_model(model, metadata, opset=opset)
    return atomic_write(out, proto.SerializeToString())


def export_torch(path, out) -> list[Path]:
    """Write the run's weights for PyTorch and the lines that rebuild the module.

    Args:
        path: RUN_DIR, or a checkpoint name such as RUN_DIR/best.
        out: the weights file, NAME.safetensors: the model's state dict alone, PyTorch's keys,
            so `module.load_state_dict(safetensors.torch.load_file(out), strict=True)` loads.

    Writes, beside it, NAME.py: a script that builds the torch.nn module, loads the weights
    and says what the input is; and for a run on hand-made features, NAME.features.safetensors
    with the feature statistics ("features.mean", "features.std"), kept apart from the weights.

    Returns the paths written: [NAME.safetensors, NAME.py(, NAME.features.safetensors)].
    """
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"export_torch: the weights file must end in .safetensors, got {out}")
    model, metadata, arrays = read_run(path)
    described = {"classes": json.dumps(metadata["classes"]), "cnnlab_version": __version__,
                 "model": json.dumps(metadata.get("model")),
                 "preprocessing": json.dumps(metadata["preprocessing"])}
    written = [atomic_write(out, safetensors.numpy.save(model.state_dict(), described))]
    extra = {key: arrays[key] for key in metadata.get("extra_arrays", ())}
    features = out.with_name(out.stem + ".features.safetensors") if extra else None
    comment = _input_comment(model, metadata, path, features)
    written.append(atomic_write(out.with_suffix(".py"), comment + torch_source(model, out.name)))
    if features is not None:
        written.append(atomic_write(features, safetensors.numpy.save(extra, described)))
    return written


def _input_comment(model, metadata, path, features) -> str:
    """The script's opening comment: where the model comes from and what it takes."""
    preprocessing, classes = metadata["preprocessing"], metadata["classes"]
    channels, (height, width) = preprocessing["channels"], preprocessing["input_size"]
    name = (metadata.get("model") or {}).get("name", "model")
    lines = [f"PyTorch twin of the cnnlab {name} model of {path} (cnnlab {__version__})."]
    if features is None:
        lines += [f"Input: (N, {channels}, {height}, {width}) float32, (pixel / 255 - mean) / std "
                  "per channel, with",
                  f"  mean = {preprocessing['mean']}, std = {preprocessing['std']}."]
    else:
        names = ", ".join(preprocessing["features"].get("names", ()))
        lines += [f"Input: (N, D) float32, the hand-made features ({names}) of pixel / 255 "
                  "as cnnlab.features computes them,",
                  f"  standardised with features.mean and features.std of {features.name}."]
    lines += [f"Output: (N, {len(classes)}) logits for the classes {classes}."]
    return "".join(f"# {line}\n" for line in lines)
