"""Pictures of a run: the only module that touches Matplotlib.

Every function is pure at its edges: arrays (or lists of numbers) in, one PNG file out, written
atomically (a temporary file, then a rename). Figures are built with Matplotlib's object API
on the Agg canvas, so no window, display or global pyplot state is ever involved.
"""

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(figure: Figure, path) -> Path:
    """Render `figure` to PNG at `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    FigureCanvasAgg(figure)
    figure.savefig(temporary, format="png", dpi=100)
    os.replace(temporary, path)
    return path


def plot_curves(epochs, train_loss, val_loss, train_accuracy, val_accuracy, path,
                title=None) -> Path:
    """Loss and accuracy per epoch, for training and validation, side by side.

    Args:
        epochs: (E,) epoch numbers (1-based).
        train_loss, val_loss, train_accuracy, val_accuracy: (E,) values per epoch; accuracies
            in 0..1.
        path: the PNG to write.
        title: text above both panels. Default: none.
    """
    epochs = np.asarray(epochs)
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, train, val, name in (
        (loss_axes, train_loss, val_loss, "loss"),
        (accuracy_axes, train_accuracy, val_accuracy, "accuracy"),
    ):
        axes.plot(epochs, np.asarray(train, dtype=float), "o-", label=f"train {name}")
        axes.plot(epochs, np.asarray(val, dtype=float), "s-", label=f"validation {name}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.grid(True, alpha=0.3)
        axes.legend()
        if len(epochs) <= 20:
            axes.set_xticks(epochs)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_confusion_matrix(matrix, classes, path, title="confusion matrix") -> Path:
    """A confusion matrix as a heat map with counts, rows true classes, columns predictions.

    Args:
        matrix: (K, K) counts, matrix[i, j] = images of class i predicted as class j.
        classes: K class names, for both axes.
        path: the PNG to write.
    """
    matrix = np.asarray(matrix)
    classes = [str(name) for name in classes]
    if matrix.ndim != 2 or matrix.shape != (len(classes), len(classes)):
        raise ValueError(
            f"plot_confusion_matrix: expected a ({len(classes)}, {len(classes)}) matrix for "
            f"{len(classes)} classes, got shape {matrix.shape}"
        )
    size = max(5.0, 0.55 * len(classes) + 2.5)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, shrink=0.8)
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha="right")
    axes.set_yticks(ticks, classes)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if len(classes) <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for row in range(len(classes)):
            for column in range(len(classes)):
                value = matrix[row, column]
                axes.text(column, row, f"{value:g}", ha="center", va="center", fontsize=8,
                          color="white" if value > threshold else "black")
    return _save(figure, path)
