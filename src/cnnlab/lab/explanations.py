"""Explanations in the lab: why the model gave its answer for one input, and what each channel
of a layer looks for in the test set.

    explanations = Explanations(models, tests)
    explanations.explain("cnn", pixels, "gradcam")           # Grad-CAM on the default layer
    explanations.explain("cnn", pixels, "occlusion", target=3, shift=(0, 2))
    explanations.top_patches("cnn", "conv2")                # ranked once, then cached

Everything is the library's, as `cnnlab explain` and `cnnlab viz --top-patches` compute it
(cnnlab.training.explanations): the maps of explanation_maps (saliency, Grad-CAM upsampled to
the image, occlusion with a 4 x 4 patch every 2 pixels) on the model's input for the image as
`inspect` sees it (converted as `cnnlab predict` converts a file, then shifted), Grad-CAM's
default layer from default_gradcam_layer (model.gradcam_layer), and each channel's regions from
top_patches_per_channel over the run's test set, cut out by crop_patches.
"""

import threading

import numpy as np

from cnnlab.analysis import translate as shift_image
from cnnlab.explain import crop_patches, top_patches_per_channel
from cnnlab.lab.encoding import encode_pixels, encode_unit
from cnnlab.lab.errors import BadRequest
from cnnlab.lab.model import check_shift, gradcam_layer
from cnnlab.training.explanations import (
    BATCH_SIZE,
    METHODS,
    OCCLUSION_PATCH,
    OCCLUSION_STRIDE,
    PATCHES_PER_CHANNEL,
    explanation_maps,
)
from cnnlab.training.inputs import PixelInputs
from cnnlab.training.trained import rank_classes

OUTSIDE = 128  # the grey of a region's pixels that lie outside its image


class Explanations:
    """The explanations of a Models' runs; each layer's top patches ranked once per model."""

    def __init__(self, models, tests):
        self.models, self.tests = models, tests
        self._patches = {}
        self._ranking = threading.Lock()  # one ranking at a time: a second waits for the first

    # ----- one input --------------------------------------------------------------------------
    def explain(self, name, pixels, method, layer=None, target=None, shift=(0, 0)) -> dict:
        """One image (C, H, W) uint8, shifted by `shift` (dy, dx), explained by `method`:

        method, layer (Grad-CAM's, None for the others), shift; target: the class explained
        ({"class", "index", "probability"}: `target` or else the predicted class); map: the
        raw map {"shape": [H_m, W_m], "values": rows of floats} as explanation_maps gives it;
        box: [y0, x0, y1, x1], the rectangle of the input (in pixels, edges) the map covers,
        its cells side by side; range: [min, max] of the map; shown: the map for drawing, its
        positive part over max |map| in [0, 1] (uint8 bytes).
        """
        loaded = self._pixel_model(name, "explanations")
        trained, classes = loaded.trained, loaded.trained.metadata["classes"]
        if method not in METHODS:
            raise BadRequest(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if method == "gradcam":
            layer = layer or gradcam_layer(loaded)
            if layer is None:
                raise BadRequest(f"{name}: Grad-CAM needs a layer with outputs at image "
                                 "positions, and the model has none; use saliency or occlusion")
            layer = self._spatial_layer(loaded, layer).name
        elif layer is not None:
            raise BadRequest(f"layer is Grad-CAM's; method {method} takes none")
        if target is not None and not 0 <= target < len(classes):
            raise BadRequest(f"target must lie in 0..{len(classes) - 1}, got {target}")
        shift = check_shift(shift, loaded.image_shape)
        shifted = shift_image(pixels, shift)
        x = trained.inputs.transform(shifted[None])
        with self.models.lock:
            ranked = rank_classes(trained, shifted[None])[0]
            index = ranked[0]["index"] if target is None else target
            maps, extent = explanation_maps(trained.model, x, method, layer, np.array([index]))
        heat = maps[0]
        left, right, bottom, top = extent  # pixel centres at whole numbers: edges at +- 0.5
        largest = float(np.abs(heat).max())
        shown = np.clip(heat / largest, 0, 1) if largest > 0 else np.zeros(heat.shape)
        probability = next(row["probability"] for row in ranked if row["index"] == index)
        return {
            "name": name, "method": method, "layer": layer, "shift": list(shift),
            "target": {"class": classes[index], "index": int(index), "probability": probability},
            "map": {"shape": list(heat.shape), "values": heat.astype(np.float64).tolist()},
            "box": [top + 0.5, left + 0.5, bottom + 0.5, right + 0.5],
            "range": [float(heat.min()), float(heat.max())],
            "shown": encode_unit(shown),
            "occlusion": {"patch": OCCLUSION_PATCH, "stride": OCCLUSION_STRIDE}
            if method == "occlusion" else None,
        }

    # ----- the test set -----------------------------------------------------------------------
    def top_patches(self, name, layer) -> dict:
        """Each channel's PATCHES_PER_CHANNEL most activating regions of the run's test set
        for `layer` (top_patches_per_channel over the whole test set, once per model and
        layer, then kept):

        layer, receptive_field, jump, images (the test set's size); channels: one list per
        channel, [{"image": test index, "box": [y0, x0, y1, x1] (y1, x1 exclusive),
        "activation"}, ...], highest first; patches: the regions cut out at the receptive
        field's size, (K, k, C, RF_h, RF_w) uint8 bytes (OUTSIDE where beyond the image).
        """
        loaded = self._pixel_model(name, "top patches")
        record = self._spatial_layer(loaded, layer)
        dataset = self.tests.dataset(name)
        key = (self.models.catalogue.entry(name).path, layer)
        with self._ranking:
            cached = self._patches.get(key)
            if cached is not None and cached[0] is loaded.trained:
                return cached[1]
            x = loaded.trained.inputs.transform(dataset.images)
            with self.models.lock:
                found = top_patches_per_channel(loaded.trained.model, x, layer,
                                                k=PATCHES_PER_CHANNEL, batch_size=BATCH_SIZE)
            flat = [patch for patches in found for patch in patches]
            crops = crop_patches(dataset.images, flat, record.receptive_field,
                                 fill=np.uint8(OUTSIDE))
            result = {
                "name": name, "layer": layer, "receptive_field": list(record.receptive_field),
                "jump": list(record.jump), "images": len(dataset),
                "channels": [[{"image": patch[0], "box": list(patch[1:5]),
                               "activation": patch[5]} for patch in patches]
                             for patches in found],
                "patches": encode_pixels(crops.reshape(len(found), -1, *crops.shape[1:])),
            }
            self._patches[key] = (loaded.trained, result)
            return result

    # ----- checks -----------------------------------------------------------------------------
    def _pixel_model(self, name, what):
        loaded = self.models.load(name)
        if not isinstance(loaded.trained.inputs, PixelInputs):
            raise BadRequest(f"{name}: {what} need a model that sees the image; this one sees "
                             "hand-made features")
        return loaded

    def _spatial_layer(self, loaded, layer):
        """The LayerRecord of `layer`, which must be a spatial layer of the model."""
        spatial = {record.name: record for record in loaded.records if record.spatial}
        if layer not in spatial:
            raise BadRequest(f"layer must be a layer with outputs at image positions "
                             f"({', '.join(spatial) or 'the model has none'}), got {layer!r}")
        return spatial[layer]
