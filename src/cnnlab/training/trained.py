"""Using a run: load its trained model, evaluate it, predict image files, draw its plots.

    model, metadata = load_trained_model("runs/cnn-fashion-mnist")   # or .../best, .../last
    result = evaluate_run("runs/cnn-fashion-mnist", split="test")
    ranked = predict("runs/cnn-fashion-mnist", ["shoe.png"], top_k=3)   # invert=True: 255 - x

New images are prepared exactly as the training images were (see cnnlab.training.inputs):
resized and converted to the model's size and channels, then normalised pixels or
standardised features with the statistics saved beside the weights.
"""

import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from cnnlab import pretrained
from cnnlab.analysis import plots
from cnnlab.checkpoint import load_checkpoint, model_from_arrays
from cnnlab.checks import check_number
from cnnlab.data import load_dataset, load_image, train_val_split
from cnnlab.errors import CheckpointError
from cnnlab.models import MODELS
from cnnlab.nn import functional as F
from cnnlab.tensor import Tensor, no_grad
from cnnlab.training.config import EVAL_BATCH_SIZE, dataset_name, derived_seed
from cnnlab.training.evaluation import evaluate, loss_function
from cnnlab.training.inputs import inputs_from_checkpoint
from cnnlab.training.rundir import (
    METRICS,
    MODEL,
    MODEL_FORMAT,
    STATE_FORMAT,
    best_path,
    holds_run,
    is_finished,
    model_path,
    plot_paths,
    read_metrics,
    read_run_metadata,
    state_path,
)


# ----- trained models -----------------------------------------------------------------------
class Trained(NamedTuple):
    """A trained model with what it needs to see images: `inputs` (PixelInputs or
    FeatureInputs, see cnnlab.training.inputs) prepares them as in training."""

    model: object
    metadata: dict
    inputs: object


def load_trained(path) -> Trained:
    """The trained model at `path`: RUN_DIR (its model.*), or a checkpoint path with or
    without its .safetensors/.json suffix: RUN_DIR/best, or RUN_DIR/last (the training state,
    as it stands), or `pretrained:NAME` (a model shipped with cnnlab, see cnnlab.pretrained).
    The model is in eval mode; the metadata is a model's (see
    Trainer.model_metadata) for the training state too.

    Raises:
        CheckpointError when it is missing, damaged, or not a trained cnnlab model.
    """
    path = Path(pretrained.resolve(path))
    if not path.exists() and not path.with_name(path.name + ".safetensors").exists():
        raise CheckpointError(f"{path}: no such run directory or checkpoint")
    if path.is_dir():
        if not is_finished(path) and holds_run(path):
            raise CheckpointError(f"{path}: the run has not finished (no {MODEL}.json yet); "
                                  f"resume it with --resume, or use {best_path(path)} or "
                                  f"{state_path(path)}")
        path = model_path(path)
    elif path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    arrays, metadata = load_checkpoint(path)
    state = isinstance(metadata, dict) and metadata.get("format") == STATE_FORMAT
    if not isinstance(metadata, dict) or metadata.get("format") not in (MODEL_FORMAT,
                                                                         STATE_FORMAT):
        raise CheckpointError(f"{path}: not a model trained by cnnlab train (no classes and "
                              "preprocessing in its metadata)")
    model = model_from_arrays(arrays, metadata, path, prefix="model." if state else "")
    if state:
        metadata = _model_metadata_of_state(metadata)
    try:
        inputs = inputs_from_checkpoint(metadata["preprocessing"], arrays, path.parent)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    return Trained(model.eval(), metadata, inputs)


def load_trained_model(path):
    """(model, metadata) of a trained model; see `load_trained`."""
    return load_trained(path)[:2]


def _model_metadata_of_state(state: dict) -> dict:
    """A training state's metadata in the form of a saved model's."""
    training, history = state["config"], state["history"]
    return {
        "format": MODEL_FORMAT,
        "loss": MODELS[training["model"]].loss,
        "classes": state["classes"],
        "preprocessing": state["preprocessing"],
        "dataset": training["dataset"],
        "epoch": state["epoch"],
        "best": state["best"],
        "metrics": history[-1] if history else {},
        "training": training,
        "model": state["model"],
    }


# ----- evaluate, predict, plot -------------------------------------------------------------
def evaluate_run(path, dataset=None, data_dir=None, download=False, split="test",
                 progress=False, top_k=None) -> dict:
    """Loss and accuracy, per-class precision, recall and F1, and top-k accuracies of a
    trained model on a dataset's test set (or the run's validation split), preprocessed as in
    training.

    Args:
        path: RUN_DIR or a model checkpoint (see `load_trained_model`).
        dataset: a dataset spec. Default: the one the model was trained on.
        split: "test" or "val" (the run's own seeded validation split).
        top_k: the ks of top-k accuracy, each in [1, K]. Default: those of 1, 3, 5 up to K.

    Returns:
        `evaluate`'s dict, with per_class, macro and top_k_accuracy (see
        `classification_report`), plus model, dataset and split.
    """
    model, metadata, inputs = load_trained(path)
    count = len(metadata["classes"])
    top_k = [k for k in (1, 3, 5) if k <= count] if top_k is None else list(top_k)
    for k in top_k:
        check_number("--top-k", k, integer=True, minimum=1, maximum=count)
    spec = dataset or metadata["dataset"]
    data = load_split(metadata, spec, data_dir, download, split)
    loader = inputs.loader(data, EVAL_BATCH_SIZE)
    loss = loss_function(metadata["loss"], metadata["training"].get("margin", 1.0))
    result = evaluate(model, loader, loss, metadata["classes"], progress, "evaluate", top_k)
    return {"model": str(path), "dataset": spec, "split": split, **result}


def load_split(metadata, spec, data_dir=None, download=False, split="test"):
    """The `split` ("test", or "val": the run's own seeded validation split) of dataset `spec`,
    checked against the model's input shape and classes (its metadata)."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    prep = metadata["preprocessing"]
    folder = spec.startswith("folder:")
    train, test = load_dataset(spec, data_dir=data_dir, download=download,
                               image_size=tuple(prep["input_size"]) if folder else None,
                               channels=prep["channels"] if folder else None)
    data = test
    if split == "val":
        training = metadata["training"]
        data = train_val_split(train, training["val_size"],
                               seed=derived_seed(training["seed"], "split"))[1]
    expected = (prep["channels"], *prep["input_size"])
    if tuple(data.image_shape) != expected:
        raise ValueError(f"{spec}: images of shape {data.image_shape}, but the model takes "
                         f"{expected}")
    if list(data.classes) != list(metadata["classes"]):
        raise ValueError(f"{spec}: classes {data.classes} differ from the model's "
                         f"{metadata['classes']}")
    return data


def predict(path, images, top_k=3, invert=False) -> list[dict]:
    """The top-k classes of each image file, as the model sees it after training's
    preprocessing (resized to the input size, converted to its channels, normalised or
    turned into standardised features).

    A grey model trained on light objects on a dark background (Fashion-MNIST, MNIST) is
    fooled by a dark object drawn on white: a warning names the images whose border is light
    (see `light_background`) and suggests --invert.

    Args:
        invert: use 255 - pixel, turning dark-on-light images into light-on-dark ones.

    Returns:
        one dict per image: {"image": path, "predictions": [{"class", "index",
        "probability"}, ...]} with probabilities in decreasing order.

    Raises:
        DatasetError naming a file that is not a readable image; CheckpointError.
    """
    check_number("--top-k", top_k, integer=True, minimum=1)
    trained = load_trained(path)
    pixels = read_images(trained, images, invert)
    return [{"image": str(image), "predictions": ranked} for image, ranked in
            zip(images, rank_classes(trained, pixels, top_k), strict=True)]


def rank_classes(trained: Trained, pixels, top_k=None) -> list[list[dict]]:
    """The classes of each image, most probable first, as `predict` gives them.

    Args:
        trained: see `load_trained`.
        pixels: (N, C, H, W) uint8 images of the model's input size and channels.
        top_k: how many classes per image. Default: all.

    Returns:
        per image, a list of {"class", "index", "probability"} in decreasing probability.
    """
    classes = trained.metadata["classes"]
    with no_grad():
        probabilities = F.softmax(trained.model(Tensor(trained.inputs.transform(pixels))),
                                  dim=1).data
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:top_k]
        results.append([{"class": classes[k], "index": int(k), "probability": float(row[k])}
                        for k in order])
    return results


def prepare_images(trained, images, invert=False):
    """Image files as `predict` feeds them to a trained model: `read_images`, transformed.

    Args:
        trained: a `Trained` (see `load_trained`).
        images: paths of image files (any format Pillow reads, any size or colour mode).
        invert: feed 255 - pixel (a dark object drawn on white, for a model trained on light
            objects on a dark background). A grey model trained on dark images warns about
            images with a light background (see `light_background`).

    Returns:
        (pixels, x): pixels (N, C, H, W) uint8, resized and converted to the model's input
        size and channels (inverted if asked); x the model's input,
        `trained.inputs.transform(pixels)`.

    Raises:
        DatasetError naming a file that is not a readable image.
    """
    pixels = read_images(trained, images, invert)
    return pixels, trained.inputs.transform(pixels)


def read_images(trained, images, invert=False) -> np.ndarray:
    """Image files as (N, C, H, W) uint8 pixels of the model's input size and channels
    (inverted if asked), with the light-background warning of `prepare_images`."""
    prep = trained.metadata["preprocessing"]
    pixels = np.stack([load_image(image, size=tuple(prep["input_size"]),
                                  channels=prep["channels"]) for image in images])
    if invert:
        pixels = 255 - pixels
    if expects_dark_background(trained.metadata):
        light = [str(image) for image, flag in zip(images, light_background(pixels),
                                                   strict=True) if flag]
        if light:
            warnings.warn(f"{', '.join(light)}: a light background, but the model was trained "
                          "on light objects on a dark background, so its prediction is likely "
                          "wrong; try --invert", stacklevel=4)
    return pixels


def expects_dark_background(metadata) -> bool:
    """Whether a trained model is grey and saw mostly dark training images: a mean pixel
    below 0.5 (Fashion-MNIST's is 0.29), or, for a model on features, (Fashion-)MNIST."""
    prep = metadata["preprocessing"]
    if prep["channels"] != 1:
        return False
    if "mean" in prep:
        return prep["mean"][0] < 0.5
    return dataset_name(metadata["dataset"]) in ("fashion-mnist", "mnist")


def light_background(pixels) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N,) bool: the image's one-pixel border is light (its mean above
    127) and brighter than the image as a whole, as for a dark object drawn on white."""
    pixels = np.asarray(pixels, dtype=np.float64)
    border = np.ones(pixels.shape[-2:], dtype=bool)
    border[1:-1, 1:-1] = False
    border_mean = pixels[..., border].mean(axis=(1, 2))
    return (border_mean > 127) & (border_mean > pixels.mean(axis=(1, 2, 3)))


def predict_classes(trained: Trained, dataset) -> np.ndarray:
    """The most probable class of every image of `dataset` (an ImageDataset of the model's
    image shape), in batches of EVAL_BATCH_SIZE as `evaluate` runs them: (N,) int64."""
    loader = trained.inputs.loader(dataset, EVAL_BATCH_SIZE)
    with no_grad():
        batches = [trained.model(Tensor(loader.batch(0, index)[0])).data.argmax(axis=1)
                   for index in range(len(loader))]
    return np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)


def write_plots(run_dir) -> list[Path]:
    """curves.png (loss and accuracy per epoch) and confusion.png (the test set's confusion
    matrix when the run has finished, else the last validation one) in RUN_DIR."""
    run_dir = Path(run_dir)
    history = read_metrics(run_dir)
    if not history:
        raise ValueError(f"{run_dir}: no finished epoch to plot ({METRICS} is empty)")
    metadata, where = read_run_metadata(run_dir)
    column = {key: [record[key] for record in history] for key in history[0]}
    training = metadata.get("training") or metadata.get("config") or {}
    title = f"{training.get('model', '')} on {dataset_name(training.get('dataset', ''))}"
    curves_path, confusion_path = plot_paths(run_dir)
    curves = plots.plot_curves(column["epoch"], column["train_loss"], column["val_loss"],
                               column["train_accuracy"], column["val_accuracy"], curves_path,
                               title=title)
    matrix = metadata.get("metrics", {}).get("test_confusion_matrix")
    caption = f"test set, {where}" if matrix is not None else "validation set"
    if matrix is None:
        matrix = history[-1]["val_confusion_matrix"]
        caption += f", epoch {history[-1]['epoch']}"
    confusion = plots.plot_confusion_matrix(matrix, metadata["classes"], confusion_path,
                                            title=f"confusion matrix ({caption})")
    return [curves, confusion]
