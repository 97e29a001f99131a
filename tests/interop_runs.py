"""Small run directories made the way `cnnlab train` makes them, for the interop tests: a model
of the family trained for a few steps on real Fashion-MNIST images, saved with save_model and
the metadata a run's model.json holds."""

from pathlib import Path

import numpy as np

import cnnlab
from cnnlab import nn
from cnnlab.checkpoint import save_model
from cnnlab.data import ImageDataset, load_dataset
from cnnlab.models import MODELS, build_model
from cnnlab.training.inputs import fit_inputs
from cnnlab.training.rundir import model_path

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FAMILIES = ("linear", "svm", "mlp", "cnn", "cnn-bn")


def fashion_mnist():
    """(train, test) ImageDatasets of Debian's Fashion-MNIST (scripts/setup.sh installs it)."""
    return load_dataset("fashion-mnist", data_dir=FASHION_MNIST)


def pixel_metadata(name, train, mean, std):
    """The metadata of a run's model.json for a model trained on normalised pixels."""
    channels, height, width = train.image_shape
    return {
        "format": "cnnlab-model/1",
        "loss": MODELS[name].loss,
        "classes": list(train.classes),
        "preprocessing": {"input_size": [height, width], "channels": channels,
                          "mean": [float(mean)], "std": [float(std)], "resize": "bilinear",
                          "normalise": "(pixel / 255 - mean) / std"},
        "dataset": "fashion-mnist",
        "epoch": 1,
        "best": None,
        "metrics": {},
        "training": {"model": name, "dataset": "fashion-mnist"},
    }


def normalise(pixels, preprocessing):
    """(N, C, H, W) uint8 -> float32 as cnnlab's PixelInputs.transform: (p / 255 - m) / s."""
    x = pixels.astype(np.float32) / np.float32(255)
    x -= np.asarray(preprocessing["mean"], np.float32).reshape(-1, 1, 1)
    x /= np.asarray(preprocessing["std"], np.float32).reshape(-1, 1, 1)
    return x


def make_run(run_dir, name, train, steps=4, batch_size=64, seed=0, **options):
    """Build model `name`, train it `steps` Adam steps on train's first images (BatchNorm's
    running statistics move away from 0 and 1), save it as RUN_DIR/model; returns the model
    in eval mode."""
    rng = np.random.default_rng(seed)
    model = build_model(name, generator=rng, **options)
    images = train.images[: steps * batch_size]
    pixels = images.astype(np.float32) / 255
    mean, std = float(pixels.mean()), float(pixels.std())
    metadata = pixel_metadata(name, train, mean, std)
    loss = nn.CrossEntropyLoss() if MODELS[name].loss == "cross_entropy" \
        else nn.MultiClassHingeLoss()
    optimizer = cnnlab.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        batch = slice(step * batch_size, (step + 1) * batch_size)
        x = normalise(images[batch], metadata["preprocessing"])
        optimizer.zero_grad()
        loss(model(cnnlab.Tensor(x)), train.labels[batch]).backward()
        optimizer.step()
    save_model(Path(run_dir) / "model", model, metadata)
    return model.eval()


def make_features_run(run_dir, train, count=200, seed=0):
    """A linear model on HOG + colour features fitted on train's first `count` images, saved
    as the Trainer saves a model (its statistics in RUN_DIR/features, then RUN_DIR/model);
    returns (model in eval mode, FeatureInputs). Untrained: the weights are the initial ones."""
    first = ImageDataset(train.images[:count], train.labels[:count], train.classes)
    inputs = fit_inputs(first, ["hog", "color"])
    model = build_model("linear", input_size=inputs.input_shape[1:],
                        generator=np.random.default_rng(seed))
    metadata = {**pixel_metadata("linear", train, 0.0, 1.0),
                "preprocessing": inputs.preprocessing()}
    inputs.save_statistics(run_dir)
    save_model(model_path(run_dir), model, metadata)
    return model.eval(), inputs
