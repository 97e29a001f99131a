"""Explanations of a trained run, as pictures: `cnnlab explain` and the explaining `cnnlab viz`
pictures.

    explain_files("runs/cnn-fashion-mnist", ["shoe.png"], method="gradcam", out="pictures")
    viz_explanations("runs/cnn-fashion-mnist", "pictures", top_patches="conv2",
                     features="conv2", misclassified=True)

The maps, patches and images come from `cnnlab.explain` and `cnnlab.metrics` on the model's
own inputs: image files prepared as `predict` prepares them (`trained.prepare_images`), the
test set as `evaluate` loads it. Every option is checked before anything is computed or
written; a bad one is a ValueError naming it and listing the valid choices.
"""

import os
from pathlib import Path

import numpy as np

from cnnlab import metrics
from cnnlab.analysis import layer_kind, layers, plots, summary
from cnnlab.analysis.pictures import display_image, to_display
from cnnlab.explain import (
    crop_patches,
    feature_visualisation,
    grad_cam,
    occlusion,
    saliency,
    top_patches_per_channel,
)
from cnnlab.nn import functional as F
from cnnlab.tensor import Tensor, no_grad
from cnnlab.training.trained import load_split, load_trained, prepare_images

METHODS = ("saliency", "gradcam", "occlusion")
METHOD_TITLES = {"saliency": "saliency |d score / d pixel|", "gradcam": "Grad-CAM",
                 "occlusion": "occlusion: drop in p"}
OCCLUSION_PATCH, OCCLUSION_STRIDE = 4, 2  # pixels; the patch is set to 0, the mean pixel
TOP_CLASSES = 3  # in each explanation's title
PATCHES_PER_CHANNEL = 9
MISTAKE_PAIRS, MISTAKES_PER_PAIR = 10, 8
BATCH_SIZE = 256


# ----- checking the options ----------------------------------------------------------------
def pixel_run(path, command):
    """The `Trained` run at `path`, refused (ValueError) when its model sees hand-made
    features rather than the image: nothing to explain pixel by pixel."""
    trained = load_trained(path)
    if "features" in trained.metadata["preprocessing"]:
        names = trained.metadata["preprocessing"]["features"]["names"]
        raise ValueError(f"{path}: cnnlab {command} needs a model that sees the image; this one "
                         f"sees hand-made features ({', '.join(names)})")
    return trained


def input_shape(trained):
    prep = trained.metadata["preprocessing"]
    return (prep["channels"], *prep["input_size"])


def check_layer(trained, flag, layer, spatial=True):
    """`layer` must name one of the model's layers as `cnnlab summary` names them: a spatial
    one with `spatial`, else any but a Flatten (whose "channels" are the input's values);
    returns its LayerRecord."""
    records = [record for record in summary(trained.model, input_shape(trained))
               if record.spatial or (not spatial and record.type != "Flatten")]
    names = [record.name for record in records]
    if layer not in names:
        kind = "spatial layers" if spatial else "layers"
        raise ValueError(f"{flag}: no {'spatial ' if spatial else ''}layer {layer!r}; the "
                         f"model's {kind}: {', '.join(names) or 'none'}")
    return records[names.index(layer)]


def default_gradcam_layer(trained):
    """The last spatial layer that is not a pooling: the last convolution's rectified output
    ("relu2" in the default CNN), Grad-CAM's usual choice."""
    records = summary(trained.model, input_shape(trained))
    found = [record.name for record, (_, module) in zip(records, layers(trained.model),
                                                        strict=True)
             if record.spatial and layer_kind(module) != "pool"]
    if not found:
        raise ValueError("--method gradcam needs a spatial layer, and the model has none; "
                         "use --method saliency or --method occlusion")
    return found[-1]


def class_id(target, classes):
    """--target: a class name, or an index in [0, K); None stays None (the predicted class)."""
    if target is None:
        return None
    if target in classes:
        return list(classes).index(target)
    if str(target).isdigit() and int(target) < len(classes):
        return int(target)
    raise ValueError(f"--target must be a class name or an index in 0..{len(classes) - 1}, got "
                     f"{target!r}; the classes: {', '.join(classes)}")


def check_out_dir(out):
    """--out must be a folder, or a path where one can be made (its nearest existing parent a
    writable folder)."""
    out = Path(out)
    existing = next(p for p in (out, *out.parents) if p.exists() or p == Path(p.anchor))
    if existing == out and not out.is_dir():
        raise ValueError(f"--out {out}: not a folder")
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: cannot make or write a folder there ({existing} is not "
                         "a writable folder)")
    return out


# ----- cnnlab explain ------------------------------------------------------------------------
def explanation_maps(model, x, method, layer=None, target=None):
    """The maps of `method` for model inputs x (N, C, H, W), and where they lie on the image.

    Returns:
        (maps, extent): maps (N, H_m, W_m): saliency (N, H, W), Grad-CAM on `layer` upsampled
        to (N, H, W), occlusion (N, H_o, W_o) with a 4 x 4 patch every 2 pixels; extent
        (left, right, bottom, top) in pixel coordinates: for occlusion, value (i, j) covers
        the stride x stride square around its patch's centre.
    """
    height, width = x.shape[2:]
    whole = (-0.5, width - 0.5, height - 0.5, -0.5)
    if method == "saliency":
        return saliency(model, x, target), whole
    if method == "gradcam":
        return grad_cam(model, x, layer, target), whole
    maps = occlusion(model, x, target, patch=OCCLUSION_PATCH, stride=OCCLUSION_STRIDE)
    first = (OCCLUSION_PATCH - 1) / 2 - OCCLUSION_STRIDE / 2  # edge of position 0's square
    rows, columns = maps.shape[1:]
    return maps, (first, first + columns * OCCLUSION_STRIDE, first + rows * OCCLUSION_STRIDE,
                  first)


def _picture_paths(images, method, out):
    paths = [out / f"{Path(image).stem}_{method}.png" for image in images]
    if len(set(paths)) < len(paths):
        clash = next(path for path in paths if paths.count(path) > 1)
        raise ValueError(f"two images would both be explained in {clash}: give them different "
                         "names, or explain them one at a time")
    return paths


def explain_files(path, images, method="gradcam", layer=None, target=None, out="."):
    """Explain a trained run's predictions for image files: one PNG per image, the map laid
    over the image, the top classes and their probabilities in its title.

    Args:
        path: a run (RUN_DIR, a checkpoint, or pretrained:NAME) whose model sees pixels.
        images: image files, prepared as `predict` prepares them.
        method: "saliency", "gradcam" or "occlusion" (see `explanation_maps`).
        layer: Grad-CAM's layer, as `cnnlab summary` names it (a spatial one); Default: see
            `default_gradcam_layer`. Only for gradcam.
        target: the class explained: a class name or index; Default: None (each image's
            predicted class).
        out: the folder for OUT/<image name>_<method>.png. Default: ".".

    Returns:
        {"method", "layer" (None but for gradcam), "explanations": [{"image", "picture",
        "map_shape", "target": {"class", "index"}, "predictions": [{"class", "index",
        "probability"}, ...] (the top 3)}, ...]}.
    """
    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    trained = pixel_run(path, "explain")
    classes = trained.metadata["classes"]
    if method != "gradcam" and layer is not None:
        raise ValueError(f"--layer is Grad-CAM's layer; --method {method} takes none")
    if method == "gradcam":
        layer = default_gradcam_layer(trained) if layer is None else layer
        check_layer(trained, "--layer", layer)
    target = class_id(target, classes)
    paths = _picture_paths(images, method, check_out_dir(out))
    pixels, x = prepare_images(trained, images)  # reads every file before computing anything
    with no_grad():
        probabilities = F.softmax(trained.model(Tensor(x)), dim=1).data
    targets = probabilities.argmax(axis=1) if target is None else np.full(len(x), target)
    maps, extent = explanation_maps(trained.model, x, method, layer, targets)
    explained = []
    for image, picture, heat, row, chosen, pixel in zip(images, paths, maps, probabilities,
                                                        targets, pixels, strict=True):
        ranked = np.argsort(-row, kind="stable")[:TOP_CLASSES]
        top = ", ".join(f"{classes[k]} {_probability(row[k])}" for k in ranked)
        name = METHOD_TITLES[method] + (f" on {layer}" if layer else "")
        plots.save_explanation(display_image(pixel), heat, picture,
                               title=f"{Path(image).name}: {top}",
                               heat_title=f"{name} for {classes[chosen]}", extent=extent)
        explained.append({
            "image": str(image), "picture": str(picture), "map_shape": list(heat.shape),
            "target": {"class": classes[chosen], "index": int(chosen)},
            "predictions": [{"class": classes[k], "index": int(k), "probability": float(row[k])}
                            for k in ranked]})
    return {"method": method, "layer": layer, "explanations": explained}


def _probability(value):
    """0.981, or 2.6e-04 below 0.001 (where three decimals would say 0.000)."""
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


# ----- cnnlab viz: top patches, feature visualisation, mistakes ----------------------------
def viz_explanations(path, out, top_patches=None, features=None, misclassified=False,
                     data_dir=None, seed=0, steps=128):
    """The explaining pictures of `cnnlab viz`, in `out`:

    top_patches_<layer>.png  one row per channel of the layer: its 9 most activating regions
                             of the test set (each its receptive field), best first
    features_<layer>.png     each channel's feature visualisation (pixels 0..255, seed `seed`,
                             `steps` steps)
    misclassified.png        the test set's mistakes, the 10 most frequent (true, predicted)
                             pairs, up to 8 images each, most confident first (no mistakes:
                             a picture that says so)

    Returns:
        list of the written paths.
    """
    trained = pixel_run(path, "viz")
    records = {}
    if top_patches is not None:
        records["top"] = check_layer(trained, "--top-patches", top_patches)
    if features is not None:
        records["features"] = check_layer(trained, "--features", features, spatial=False)
    out = check_out_dir(out)
    written = []
    if top_patches is not None or misclassified:
        test = load_split(trained.metadata, trained.metadata["dataset"], data_dir, False,
                              "test")
        x = trained.inputs.transform(test.images)
        if top_patches is not None:
            written.append(save_top_patches(trained, x, test.images, records["top"], out))
        if misclassified:
            written.append(save_misclassified(trained, x, test, out))
    if features is not None:
        written.append(save_features(trained, records["features"], out, seed, steps))
    return written


def save_top_patches(trained, x, pixels, record, out):
    """OUT/top_patches_<layer>.png from model inputs x and the same images' pixels."""
    found = top_patches_per_channel(trained.model, x, record.name, k=PATCHES_PER_CHANNEL,
                                    batch_size=BATCH_SIZE)
    flat = [patch for patches in found for patch in patches]
    crops = to_display(crop_patches(pixels / 255, flat, record.receptive_field, fill=0.5))
    crops = crops.reshape(len(found), -1, *crops.shape[1:])  # (K, 9, h, w[, 3])
    labels = [f"{channel}: {patches[0][-1]:.2f}" for channel, patches in enumerate(found)]
    height, width = record.receptive_field
    return plots.save_patch_grid(
        crops, out / f"top_patches_{record.name}.png", labels,
        title=f"{record.name}: each channel's {PATCHES_PER_CHANNEL} most activating test-set "
              f"regions ({height} x {width} pixels, its receptive field; grey: outside the "
              "image); label: channel: best activation")


def save_features(trained, record, out, seed, steps):
    """OUT/features_<layer>.png: every channel's feature visualisation, as pixels."""
    prep = trained.metadata["preprocessing"]
    mean = np.asarray(prep["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(prep["std"], dtype=np.float32)[:, None, None]
    channels = np.arange(record.output_shape[0])
    images = feature_visualisation(trained.model, record.name, channels, input_shape(trained),
                                   np.random.default_rng(seed), steps=steps,
                                   bounds=(-mean / std, (1 - mean) / std))
    shown = to_display(np.clip(images * std + mean, 0, 1))
    return plots.save_image_grid(
        shown, out / f"features_{record.name}.png", titles=[str(c) for c in channels],
        columns=min(8, len(channels)),
        title=f"{record.name}: the image that most raises each channel's mean activation "
              f"(gradient ascent with jitter and blur, seed {seed}, {steps} steps)")


def save_misclassified(trained, x, test, out):
    """OUT/misclassified.png: the test set's mistakes grouped by (true, predicted) pair."""
    classes = trained.metadata["classes"]
    with no_grad():
        probabilities = np.concatenate([
            F.softmax(trained.model(Tensor(x[start : start + BATCH_SIZE])), dim=1).data
            for start in range(0, len(x), BATCH_SIZE)])
    groups = metrics.misclassified(probabilities, test.labels, per_pair=MISTAKES_PER_PAIR,
                                   pairs=MISTAKE_PAIRS)
    rows = [(f"{classes[group.true]}\nas {classes[group.predicted]}\n({group.count})",
             to_display(test.images[group.indices] / 255),
             [f"{p:.2f} / {q:.2f}" for p, q in zip(group.predicted_probability,
                                                     group.true_probability, strict=True)])
            for group in groups]
    wrong = int(np.sum(probabilities.argmax(axis=1) != test.labels))
    return plots.save_labelled_rows(
        rows, out / "misclassified.png",
        title=f"{wrong} of {len(x)} test images misclassified; the {len(rows)} most frequent "
              "(true, predicted) pairs (count), most confident first; under each: "
              "p(predicted) / p(true)")
