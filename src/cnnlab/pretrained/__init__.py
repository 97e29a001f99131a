"""Trained weights shipped with cnnlab, so there is something to look at before any training.

    model, metadata = cnnlab.pretrained.load("cnn-fashion-mnist")
    cnnlab predict pretrained:cnn-fashion-mnist shoe.png      # the same, from the command line

Each is a run directory's final model (`model.safetensors` + `model.json`, with its per-epoch
`metrics.jsonl`), made by the README's own commands on the project's machine (seed 0) and
copied here unchanged but for the recorded output folder:

    cnn-fashion-mnist      cnnlab train                    test accuracy 0.9253 (10 epochs)
    linear-fashion-mnist   cnnlab train --model linear     test accuracy 0.8462 (20 epochs)

The accuracies are in each `model.json` ("metrics"), and a test re-evaluates both on the
Fashion-MNIST test set.
"""

from pathlib import Path

from cnnlab.checkpoint import load_model

FOLDER = Path(__file__).resolve().parent
PREFIX = "pretrained:"  # how the command line names them: pretrained:cnn-fashion-mnist


def names() -> tuple[str, ...]:
    """The shipped models' names, sorted."""
    return tuple(sorted(path.name for path in FOLDER.iterdir() if (path / "model.json").exists()))


def path(name: str) -> Path:
    """The folder of a shipped model: a finished run directory without its training state."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    if name not in names():
        raise ValueError(
            f"pretrained: no shipped model named {name!r}; the shipped models are "
            f"{', '.join(names())}"
        )
    return FOLDER / name


def load(name: str):
    """(model, metadata) of a shipped model, in eval mode."""
    model, metadata = load_model(path(name) / "model")
    model.eval()
    return model, metadata


def resolve(spec):
    """A run path as given on the command line: `pretrained:NAME` becomes the shipped folder,
    anything else is returned unchanged."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        return path(spec)
    return spec
