"""A trained run's model written for other frameworks: `export_onnx`, `export_torch`.

    export_onnx("runs/cnn-fashion-mnist")     # runs/cnn-fashion-mnist/export/model.onnx
    export_torch("runs/cnn-fashion-mnist")    # .../export/model.safetensors + model.py

Both read a trained model as `cnnlab predict` does (RUN_DIR, a checkpoint such as RUN_DIR/best,
or pretrained:NAME), check their options before reading it, and write each file atomically
(`cnnlab.files.atomic_write`): a failed export leaves no file behind and an older file
untouched. Unless told where, they write into RUN_DIR/export/ (named after the checkpoint:
model.onnx, best.onnx, ...); a shipped model's folder is inside the installed package, so
pretrained:NAME goes to ./cnnlab-export/NAME.onnx (or .safetensors) instead.
"""

import json
from pathlib import Path

import safetensors.numpy

from cnnlab import __version__, pretrained
from cnnlab.checkpoint import checkpoint_paths
from cnnlab.files import atomic_write
from cnnlab.interop.onnx_graph import (
    DEFAULT_OPSET,
    INSTALL_ONNX,
    check_opset,
    onnx_model,
    pixel_preprocessing,
)
from cnnlab.interop.optional import require
from cnnlab.interop.pytorch import torch_source
from cnnlab.training.rundir import MODEL, export_dir
from cnnlab.training.trained import load_trained

PRETRAINED_EXPORT = Path("cnnlab-export")  # where pretrained:NAME is exported by default


def read_run(path):
    """(model in eval mode, metadata, statistics) of a trained model, read as `cnnlab predict`
    reads it (cnnlab.training.load_trained): RUN_DIR, a checkpoint name such as RUN_DIR/best,
    or pretrained:NAME. `statistics` are the arrays its inputs need besides the metadata: {}
    for pixels, "features.mean" and "features.std" for hand-made features.

    Raises CheckpointError (a ValueError, one line) for a missing, damaged or unfinished run
    or a checkpoint that is not a trained model."""
    model, metadata, inputs = load_trained(path)
    return model, metadata, inputs.arrays()


def default_out(path, suffix) -> Path:
    """Where a model is exported unless told: RUN_DIR/export/model{suffix} for RUN_DIR,
    RUN_DIR/export/best{suffix} for the checkpoint RUN_DIR/best, and
    cnnlab-export/NAME{suffix} (in the working directory) for pretrained:NAME."""
    if isinstance(path, str) and path.startswith(pretrained.PREFIX):
        return PRETRAINED_EXPORT / (pretrained.path(path).name + suffix)
    path = Path(path)
    if path.is_dir():
        return export_dir(path) / (MODEL + suffix)
    weights = Path(checkpoint_paths(path)[0])
    return export_dir(weights.parent) / (weights.name.removesuffix(".safetensors") + suffix)


def _check_out(out, suffix, caller) -> None:
    if out is not None and Path(out).suffix != suffix:
        raise ValueError(f"{caller}: the file to write must end in {suffix}, got {out}")
    if out is not None and Path(out).is_dir():
        raise ValueError(f"{caller}: {out} is a directory; give the file to write")


def export_onnx(path, out=None, opset=DEFAULT_OPSET) -> Path:
    """Write the run's model as an ONNX file: input "images" (N, C, H, W) float32 in [0, 1],
    the run's normalisation inside, output "logits" (N, K). See `onnx_model`.

    Args:
        path: RUN_DIR, a checkpoint name such as RUN_DIR/best, or pretrained:NAME.
        out: the .onnx file to write (its folder is created). Default: `default_out`.
        opset: the ONNX operator set. Default: 17.

    Returns the path written. Raises MissingDependencyError (an ImportError) without the onnx
    package; ValueError (one line) for a bad `out` or `opset`, a run on hand-made features
    (which cnnlab computes outside the model); CheckpointError for a missing or damaged run.
    """
    _check_out(out, ".onnx", "export_onnx")
    check_opset(opset, require("onnx", "export_onnx", INSTALL_ONNX))
    model, metadata, _ = read_run(path)
    pixel_preprocessing(metadata, source=str(path))
    proto = onnx_model(model, metadata, opset=opset)
    return atomic_write(out or default_out(path, ".onnx"), proto.SerializeToString())


def export_torch(path, out=None) -> list[Path]:
    """Write the run's weights for PyTorch and the lines that rebuild the module. PyTorch
    itself is not needed to write them.

    Args:
        path: RUN_DIR, a checkpoint name such as RUN_DIR/best, or pretrained:NAME.
        out: the weights file, NAME.safetensors: the model's state dict alone, PyTorch's keys,
            so `module.load_state_dict(safetensors.torch.load_file(out), strict=True)` loads.
            Default: `default_out`.

    Writes, beside it, NAME.py: a script that builds the torch.nn module, loads the weights
    and says what the input is; and for a run on hand-made features, NAME.features.safetensors
    with the feature statistics ("features.mean", "features.std"), kept apart from the weights.

    Returns the paths written: [NAME.safetensors, NAME.py(, NAME.features.safetensors)].
    Raises ValueError (one line) for a bad `out`; CheckpointError for a missing or damaged run.
    """
    _check_out(out, ".safetensors", "export_torch")
    model, metadata, statistics = read_run(path)
    out = Path(out or default_out(path, ".safetensors"))
    described = {"classes": json.dumps(metadata["classes"]), "cnnlab_version": __version__,
                 "model": json.dumps(metadata.get("model")),
                 "preprocessing": json.dumps(metadata["preprocessing"])}
    features = out.with_name(out.stem + ".features.safetensors") if statistics else None
    script = _input_comment(model, metadata, path, features) + torch_source(model, out.name)
    files = {out: safetensors.numpy.save(model.state_dict(), described),
             out.with_suffix(".py"): script}
    if features is not None:
        files[features] = safetensors.numpy.save(statistics, described)
    return [atomic_write(file, content) for file, content in files.items()]  # all made first


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
