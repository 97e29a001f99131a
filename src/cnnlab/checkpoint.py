"""Checkpoints: arrays in safetensors, metadata in JSON beside them, written atomically.

A checkpoint named `run/model` is two files:

- `run/model.safetensors`: the arrays (for `save_model`, the model's state dict under its
  PyTorch keys, so `safetensors.torch.load_file` gives PyTorch a state dict it can load). Its
  header also holds a copy of the metadata and a SHA-256 over the metadata and every array's
  name, dtype, shape and bytes, so the file checks itself: a truncated or bit-flipped file is
  an error, never a silently wrong model.
- `run/model.json`: the same metadata, readable by people and other tools (model name and
  options, classes, preprocessing, epoch, metrics, ...), plus "cnnlab_checkpoint": the format,
  the weights file's name and the same SHA-256, which ties the pair together.

Saving writes both files to temporary files in the same folder (cnnlab.files: flushed and
fsynced), then renames the weights file over the old one, then the JSON file. A crash before
the first rename leaves the previous checkpoint untouched. The weights file is authoritative:
if the JSON beside it is missing, unreadable or from another save (a crash between the two
renames, or a file copied over), loading warns and uses the metadata stored in the weights
file, which always matches its arrays. Nothing is ever unpickled: safetensors holds raw arrays,
JSON holds data.

Optimiser, scheduler and RNG state (nested dicts and lists of arrays and numbers) go into the
same files through `flatten_state` / `unflatten_state`: arrays into safetensors, the rest into
the metadata.
"""

import hashlib
import json
import os
import warnings

import numpy as np
import safetensors
import safetensors.numpy

from cnnlab.errors import CheckpointError
from cnnlab.files import atomic_writer
from cnnlab.models import model_config, model_from_config
from cnnlab.tensor import Tensor

FORMAT = "cnnlab-checkpoint-1"
_SUFFIXES = (".safetensors", ".json")


def checkpoint_paths(path):
    """(weights_path, metadata_path) for a checkpoint name with or without either suffix."""
    path = os.fspath(path)
    for suffix in _SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return path + ".safetensors", path + ".json"


def content_sha256(arrays, metadata_text):
    """SHA-256 over the metadata text and each array's name, dtype, shape and bytes (sorted)."""
    digest = hashlib.sha256(metadata_text.encode("utf-8"))
    for name in sorted(arrays):
        array = _c_order(arrays[name])
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _c_order(array):
    """The array in C order (np.ascontiguousarray would turn a 0-d array into 1-d)."""
    array = np.asarray(array)
    return array if array.flags.c_contiguous else array.copy(order="C")


# ----- writing ------------------------------------------------------------------------------
def _check_arrays(arrays):
    checked = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"save_checkpoint: array names must be non-empty strings, got {name!r}"
            )
        array = np.asarray(value.data if isinstance(value, Tensor) else value)
        if array.dtype.kind not in "biuf" or array.dtype.byteorder == ">":
            raise ValueError(
                f"save_checkpoint: array {name!r} has dtype {array.dtype}; safetensors holds "
                "little-endian bool, integer and float arrays"
            )
        checked[name] = _c_order(array)
    return checked


def save_checkpoint(path, arrays, metadata=None):
    """Write `arrays` and `metadata` as the checkpoint `path`, atomically.

    Args:
        path: the checkpoint's name, e.g. "run/model" (or "run/model.safetensors" or
            "run/model.json"): writes run/model.safetensors and run/model.json. The folder is
            created if needed.
        arrays: dict name -> ndarray (or Tensor): bool, integer or float, any shape.
        metadata: a JSON-serialisable dict. Default: {}. Its key "cnnlab_checkpoint" is
            reserved.

    Returns (weights_path, metadata_path).
    """
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict) or "cnnlab_checkpoint" in metadata:
        raise ValueError("save_checkpoint: metadata must be a dict without 'cnnlab_checkpoint'")
    arrays = _check_arrays(arrays)
    try:
        metadata_text = json.dumps(metadata)
    except (TypeError, ValueError) as error:
        raise ValueError(f"save_checkpoint: metadata is not JSON-serialisable: {error}") from None
    digest = content_sha256(arrays, metadata_text)
    weights_path, metadata_path = checkpoint_paths(path)
    blob = safetensors.numpy.save(
        arrays,
        metadata={"cnnlab_format": FORMAT, "cnnlab_metadata": metadata_text,
                  "cnnlab_sha256": digest},
    )
    document = dict(metadata)
    document["cnnlab_checkpoint"] = {
        "format": FORMAT, "weights": os.path.basename(weights_path), "sha256": digest,
    }
    text = json.dumps(document, indent=2) + "\n"
    # Both files are written before either is renamed; the inner block ends first, so the
    # weights file (the commit point) replaces its old self before the JSON file does.
    with atomic_writer(metadata_path) as metadata_file, atomic_writer(weights_path) as weights:
        metadata_file.write(text.encode("utf-8"))
        weights.write(blob)
    return weights_path, metadata_path


# ----- reading ------------------------------------------------------------------------------
def _read_header(weights_path, blob):
    """The safetensors header's "__metadata__" dict, or a CheckpointError naming the damage."""
    if len(blob) < 8:
        raise CheckpointError(f"{weights_path}: truncated checkpoint ({len(blob)} bytes)")
    size = int.from_bytes(blob[:8], "little")
    if size > len(blob) - 8:
        raise CheckpointError(
            f"{weights_path}: truncated or corrupt checkpoint (header of {size} bytes in a file "
            f"of {len(blob)})"
        )
    try:
        header = json.loads(blob[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{weights_path}: corrupt checkpoint (unreadable header)") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("cnnlab_format") != FORMAT:
        raise CheckpointError(
            f"{weights_path}: not a cnnlab checkpoint (no {FORMAT} metadata in its header)"
        )
    return metadata


def load_checkpoint(path):
    """Read the checkpoint `path` (name with or without suffix): returns (arrays, metadata).

    Raises CheckpointError, with one line naming the file and the problem, when the weights
    file is missing, truncated, corrupt (checksum mismatch) or not a cnnlab checkpoint. Warns
    (and uses the metadata stored in the weights file) when the JSON beside it is missing or
    does not belong to it.
    """
    weights_path, metadata_path = checkpoint_paths(path)
    try:
        with open(weights_path, "rb") as handle:
            blob = handle.read()
    except FileNotFoundError:
        raise CheckpointError(f"{weights_path}: checkpoint not found") from None
    except OSError as error:
        raise CheckpointError(f"{weights_path}: cannot read checkpoint: {error}") from None
    header = _read_header(weights_path, blob)
    try:
        arrays = safetensors.numpy.load(blob)
    except safetensors.SafetensorError as error:
        raise CheckpointError(
            f"{weights_path}: truncated or corrupt checkpoint ({error})"
        ) from None
    metadata_text = header.get("cnnlab_metadata", "")
    digest = content_sha256(arrays, metadata_text)
    if digest != header.get("cnnlab_sha256"):
        raise CheckpointError(
            f"{weights_path}: corrupt checkpoint (its contents do not match their SHA-256)"
        )
    metadata = json.loads(metadata_text)
    _check_metadata_file(metadata_path, digest)
    return arrays, metadata


def _check_metadata_file(metadata_path, digest):
    problem = None
    try:
        with open(metadata_path, encoding="utf-8") as handle:
            document = json.load(handle)
        recorded = document.get("cnnlab_checkpoint", {}).get("sha256")
        if recorded != digest:
            problem = "it belongs to another save (SHA-256 differs; an interrupted save?)"
    except FileNotFoundError:
        problem = "it is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        problem = "it is unreadable"
    if problem:
        warnings.warn(
            f"{metadata_path}: {problem}; using the metadata stored in the weights file",
            UserWarning,
            stacklevel=3,
        )


# ----- models -------------------------------------------------------------------------------
def save_model(path, model, metadata=None, extra_arrays=None):
    """Save a model made by `cnnlab.models.build_model`: its state dict (PyTorch's keys) and,
    in the metadata, "model" (its config, to rebuild it) and "dtype", besides `metadata`
    (classes, normalisation, epoch, metrics, ...: any JSON-serialisable dict).

    extra_arrays: arrays that belong with the model but are not its weights (a feature
    pipeline's statistics, say), under keys of their own; the metadata lists them as
    "extra_arrays" and `load_model` leaves them out of the state dict (so should PyTorch)."""
    metadata = dict(metadata or {})
    parameters = list(model.parameters())
    arrays, extra = model.state_dict(), dict(extra_arrays or {})
    clashes = sorted(set(arrays) & set(extra))
    if clashes:
        raise ValueError(f"save_model: extra arrays {clashes} clash with the model's weights")
    metadata["model"] = model_config(model)
    metadata["dtype"] = str(parameters[0].dtype) if parameters else "float32"
    if extra:
        metadata["extra_arrays"] = sorted(extra)
    return save_checkpoint(path, {**arrays, **extra}, metadata)


def load_model(path, prefix=""):
    """Rebuild the model saved at `path` and load its weights: returns (model, metadata).

    Args:
        path: the checkpoint's name, with or without suffix.
        prefix: read the model's arrays from keys that start with it (e.g. "model." in a
            checkpoint that also holds optimiser state); other keys are then ignored.
            Default: "" (every key must be the model's, bar the metadata's "extra_arrays").

    Raises CheckpointError (one line) for a damaged file, a missing or unknown model config,
    or weights whose keys or shapes do not match the rebuilt model (listing them).
    """
    arrays, metadata = load_checkpoint(path)
    return model_from_arrays(arrays, metadata, path, prefix), metadata


def model_from_arrays(arrays, metadata, path, prefix=""):
    """The model of a checkpoint already read by `load_checkpoint` (see `load_model`); `path`
    names it in errors."""
    weights_path, _ = checkpoint_paths(path)
    config = metadata.get("model")
    if config is None:
        raise CheckpointError(f"{weights_path}: no model config in the checkpoint's metadata")
    try:
        model = model_from_config(config)
        model.to(metadata.get("dtype", "float32"))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{weights_path}: cannot rebuild the model: {error}") from None
    if prefix:
        arrays = {key[len(prefix):]: value for key, value in arrays.items()
                  if key.startswith(prefix)}
    else:
        extra = set(metadata.get("extra_arrays", ()))
        arrays = {key: value for key, value in arrays.items() if key not in extra}
    try:
        model.load_state_dict(arrays)
    except ValueError as error:
        raise CheckpointError(
            f"{weights_path}: weights do not match model {config.get('name')!r}: {error}"
        ) from None
    return model


# ----- nested state (optimiser, scheduler, RNG, loader) ---------------------------------------
def flatten_state(prefix, state):
    """Split nested state into arrays and a JSON tree: returns (arrays, tree).

    Arrays (and Tensors) go to `arrays` under keys "<prefix>.<path>" and are replaced in the
    tree by {"__array__": key}; numbers, strings, booleans and None stay; tuples become
    {"__tuple__": [...]}; dicts with non-string keys (an optimiser's parameter indices)
    become {"__items__": [[key, value], ...]}. `unflatten_state` inverts it exactly.
    """
    arrays = {}

    def walk(value, path):
        if isinstance(value, Tensor):
            value = value.data
        if isinstance(value, np.ndarray):
            arrays[path] = value
            return {"__array__": path}
        if isinstance(value, np.generic):
            return value.item()
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, tuple):
            return {"__tuple__": [walk(item, f"{path}.{i}") for i, item in enumerate(value)]}
        if isinstance(value, list):
            return [walk(item, f"{path}.{i}") for i, item in enumerate(value)]
        if isinstance(value, dict):
            plain = all(isinstance(key, str) and not key.startswith("__") for key in value)
            if plain:
                return {key: walk(item, f"{path}.{key}") for key, item in value.items()}
            for key in value:
                if not isinstance(key, str | int) or isinstance(key, bool):
                    raise ValueError(f"flatten_state: key {key!r} at {path} is not a str or int")
            return {"__items__": [[key, walk(item, f"{path}.{key}")]
                                  for key, item in value.items()]}
        raise ValueError(f"flatten_state: cannot store {type(value).__name__} at {path}")

    return arrays, walk(state, prefix)


def unflatten_state(arrays, tree):
    """Rebuild what `flatten_state` split, taking the arrays from `arrays` by key."""
    if isinstance(tree, list):
        return [unflatten_state(arrays, item) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if set(tree) == {"__array__"}:
        key = tree["__array__"]
        if key not in arrays:
            raise CheckpointError(f"checkpoint state refers to array {key!r}, which is missing")
        return arrays[key]
    if set(tree) == {"__tuple__"}:
        return tuple(unflatten_state(arrays, item) for item in tree["__tuple__"])
    if set(tree) == {"__items__"}:
        return {key: unflatten_state(arrays, item) for key, item in tree["__items__"]}
    return {key: unflatten_state(arrays, item) for key, item in tree.items()}
