"""Inside a run's model: its summary, and for one input its predictions, every layer's output,
the receptive field of any output, and how far each layer is from translation equivariance.

    models = Models(catalogue)
    models.summary("cnn")                                   # cnnlab summary's records
    models.inspect("cnn", pixels, shift=(0, 2))             # predictions and every layer
    models.receptive_field("cnn", "conv2", row=3, col=4)    # the input box it sees

Everything is the library's: load_trained and rank_classes (cnnlab.training.trained, as
`cnnlab predict`), summary, layer_outputs, receptive_field_box, translate and
equivariance_error (cnnlab.analysis), unit_scale (cnnlab.analysis.pictures). The model of a
finished run is its final one; of an unfinished run, its training state as it stands.
"""

import threading
from typing import NamedTuple

import numpy as np

from cnnlab.analysis import equivariance_error, layer_outputs, receptive_field_box, summary
from cnnlab.analysis import layers as model_layers
from cnnlab.analysis import translate as shift_image
from cnnlab.analysis.pictures import unit_scale
from cnnlab.errors import CheckpointError
from cnnlab.lab.encoding import encode_pixels, encode_unit
from cnnlab.lab.errors import BadRequest, NotFound
from cnnlab.nn import Sequential
from cnnlab.training.inputs import PixelInputs
from cnnlab.training.rundir import changing_files, is_finished, state_path
from cnnlab.training.trained import load_trained, rank_classes

MAX_VALUES_SHOWN = 1024  # a flat layer with more outputs (a Flatten) is listed without them


class Loaded(NamedTuple):
    """A run's model as the lab uses it: `trained` (see load_trained), `records` (its
    summary) and `image_shape` (C, H, W) of the images it takes."""

    trained: object
    records: list
    image_shape: tuple


class Models:
    """The models of a RunCatalogue's runs, loaded once per checkpoint and reloaded when it
    changes. One computation at a time (cnnlab's no_grad switch is process-wide)."""

    def __init__(self, catalogue):
        self.catalogue = catalogue
        self.lock = threading.RLock()
        self._loaded = {}

    def load(self, name: str) -> Loaded:
        entry = self.catalogue.entry(name)
        files = changing_files(entry.path)
        finished = is_finished(entry.path)
        stamp = (finished, _mtime(files["model" if finished else "state"]))
        with self.lock:
            cached = self._loaded.get(entry.path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                trained = load_trained(entry.path if finished else state_path(entry.path))
            except CheckpointError as error:
                raise NotFound(f"{name}: {error}") from None
            prep = trained.metadata["preprocessing"]
            image_shape = (prep["channels"], *prep["input_size"])
            records = summary(trained.model, trained.inputs.input_shape)
            loaded = Loaded(trained, records, image_shape)
            self._loaded[entry.path] = (stamp, loaded)
            return loaded

    # ----- the summary ----------------------------------------------------------------------
    def summary(self, name: str) -> dict:
        """`cnnlab summary`'s records (as dicts), the input shape, the total parameters, the
        classes, and whether the model sees pixels (else hand-made features)."""
        loaded = self.load(name)
        trained = loaded.trained
        return {
            "name": name,
            "input_shape": list(trained.inputs.input_shape),
            "image_shape": list(loaded.image_shape),
            "pixels": isinstance(trained.inputs, PixelInputs),
            "classes": trained.metadata["classes"],
            "layers": [record.as_dict() for record in loaded.records],
            "total_params": sum(record.params for record in loaded.records),
        }

    # ----- one input ------------------------------------------------------------------------
    def predict(self, name: str, pixels) -> list[dict]:
        """Every class of one image (C, H, W) uint8, most probable first (`cnnlab predict`)."""
        loaded = self.load(name)
        with self.lock:
            return rank_classes(loaded.trained, pixels[None])[0]

    def inspect(self, name: str, pixels, shift=(0, 0)) -> dict:
        """One image (C, H, W) uint8, shifted by `shift` = (dy, dx) pixels (zeros shifted in):

        input: the shifted image (uint8 bytes); predictions: as `predict` gives them for it;
        layers: one dict per layer of the summary with name, type, output_shape, params,
        receptive_field, jump, spatial, and for a model on pixels its output for the shifted
        image, each channel rescaled to [0, 1] on its own ("maps" (C, H, W), or "values"
        (1, D) for a flat output of at most MAX_VALUES_SHOWN numbers), and for a spatial layer
        "equivariance_error": analysis.equivariance_error of the model up to that layer, as a
        map of pixels, for `shift` (None when the shift is zero or not a multiple of the
        layer's jump).
        """
        loaded = self.load(name)
        trained, records = loaded.trained, loaded.records
        shift = _check_shift(shift, loaded.image_shape)
        shifted = shift_image(pixels, shift)
        with self.lock:
            predictions = rank_classes(trained, shifted[None])[0]
            layers = [{key: record[key] for key in ("name", "type", "output_shape", "params",
                                                     "receptive_field", "jump", "spatial")}
                      for record in records]
            if isinstance(trained.inputs, PixelInputs):
                outputs = layer_outputs(trained.model, trained.inputs.transform(shifted[None]))
                for layer, (_, output) in zip(layers, outputs, strict=True):
                    layer.update(_shown(output[0]))
                for index, layer in enumerate(layers):
                    if layer["spatial"]:
                        layer["equivariance_error"] = self._equivariance(
                            loaded, index, pixels, shift)
        return {"name": name, "shift": list(shift), "input": encode_pixels(shifted),
                "predictions": predictions, "layers": layers}

    def _equivariance(self, loaded: Loaded, index: int, pixels, shift):
        """equivariance_error of pixels -> the output of layer `index`, or None."""
        jump = loaded.records[index].jump
        if shift == (0, 0) or shift[0] % jump[0] or shift[1] % jump[1]:
            return None
        prefix = Sequential(*[layer for _, layer in model_layers(loaded.trained.model)[:index + 1]])
        transform = loaded.trained.inputs.transform

        def up_to_layer(images):
            return prefix(transform(np.asarray(images)))

        return equivariance_error(up_to_layer, pixels[None].astype(np.float32), shift, jump=jump)

    def receptive_field(self, name: str, layer: str, row: int, col: int) -> dict:
        """The input pixels output (row, col) of `layer` sees: box (top, left, bottom, right),
        inclusive and clipped to the image, with the layer's receptive field and jump
        (analysis.receptive_field_box)."""
        loaded = self.load(name)
        spatial = {record.name: record for record in loaded.records if record.spatial}
        if layer not in spatial:
            raise BadRequest(f"layer must be a layer with outputs at image positions "
                             f"({', '.join(spatial) or 'the model has none'}), got {layer!r}")
        record = spatial[layer]
        height, width = record.output_shape[-2:]
        for label, value, size in (("row", row, height), ("col", col, width)):
            if not 0 <= value < size:
                raise BadRequest(f"{label} must lie in 0..{size - 1} for {layer}, got {value}")
        image_hw = tuple(loaded.image_shape[1:])
        return {"layer": layer, "position": [row, col],
                "box": list(receptive_field_box(record, (row, col), image_hw)),
                "receptive_field": list(record.receptive_field), "jump": list(record.jump)}


def _shown(output) -> dict:
    """One image's output of a layer, for drawing: maps or values, rescaled per channel."""
    if output.ndim == 3:
        return {"maps": encode_unit(unit_scale(output, axes=(1, 2)))}
    if output.ndim == 1 and output.size <= MAX_VALUES_SHOWN:
        return {"values": encode_unit(unit_scale(output[None]))}
    return {}


def _check_shift(shift, image_shape) -> tuple[int, int]:
    height, width = image_shape[1:]
    dy, dx = shift
    if abs(dy) >= height or abs(dx) >= width:
        raise BadRequest(f"the shift must be smaller than the image ({height} x {width}), "
                         f"got ({dy}, {dx})")
    return int(dy), int(dx)


def _mtime(path):
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
