"""Pictures of a run: the only module that touches Matplotlib.

Every function is pure at its edges: arrays (or lists of numbers) in, one PNG file out, written
atomically (cnnlab.files.atomic_writer). Figures are built with Matplotlib's object API
on the Agg canvas, so no window, display or global pyplot state is ever involved.
"""

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cnnlab.files import atomic_writer


def _save(figure: Figure, path) -> Path:
    """Render `figure` to PNG at `path` atomically; returns the path."""
    FigureCanvasAgg(figure)
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    return Path(path)


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


# ----- pictures of a model: templates, filters, activation maps, receptive field, comparison ---
CELL_INCHES = 1.6  # one picture of a grid: 160 pixels at the 100 dpi of `_save`
TITLE_INCHES = 0.5  # the band above a grid for its title


def grid_shape(count, columns=None) -> tuple[int, int]:
    """(rows, columns) for `count` pictures: `columns` wide (Default: a near-square grid, at
    most 10 wide), never wider than `count`."""
    if columns is None:
        columns = min(10, int(np.ceil(np.sqrt(count))))
    columns = max(1, min(int(columns), count))
    return int(np.ceil(count / columns)), columns


def save_image_grid(images, path, titles=None, columns=None, title=None, cmap="gray") -> Path:
    """Pictures in a grid, one per cell, each with an optional caption.

    Args:
        images: (N, H, W) grey or (N, H, W, 3) colour, values in [0, 1] (see
            cnnlab.analysis.pictures: template_images, filter_images, activation_maps).
        path: the PNG to write: CELL_INCHES * columns wide and CELL_INCHES * rows +
            TITLE_INCHES high, at 100 pixels an inch.
        titles: N captions (class names, channel numbers). Default: none.
        columns: pictures per row. Default: see `grid_shape`.
        title: text above the grid. Default: none.
        cmap: colour map for grey pictures, shown from 0 to 1. Default: "gray".
    """
    images = np.asarray(images, dtype=float)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3) or not len(images):
        raise ValueError(
            f"save_image_grid: expected (N, H, W) or (N, H, W, 3) images, got {images.shape}"
        )
    rows, columns = grid_shape(len(images), columns)
    figure = Figure(figsize=(CELL_INCHES * columns, CELL_INCHES * rows + TITLE_INCHES),
                    layout="constrained")
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False)).ravel()
    for index, cell in enumerate(axes):
        cell.set_axis_off()
        if index < len(images):
            cell.imshow(np.clip(images[index], 0, 1), cmap=cmap, vmin=0, vmax=1,
                        interpolation="nearest")
            if titles is not None:
                cell.set_title(str(titles[index]), fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10 if columns > 2 else 8, wrap=True)
    return _save(figure, path)


def save_receptive_field(image, box, path, title=None) -> Path:
    """An input image with the box of input pixels one output sees drawn on it (500 x 500 PNG).

    Args:
        image: (H, W) grey or (H, W, 3) colour in [0, 1].
        box: (top, left, bottom, right) inclusive pixel indices (see
            cnnlab.analysis.pictures.receptive_field_overlay).
        path: the PNG to write.
        title: e.g. "conv2: receptive field 10 x 10". Default: none.
    """
    image = np.asarray(image, dtype=float)
    top, left, bottom, right = box
    figure = Figure(figsize=(5, 5), layout="constrained")
    axes = figure.subplots()
    axes.imshow(np.clip(image, 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    edges_x = [left - 0.5, right + 0.5, right + 0.5, left - 0.5, left - 0.5]
    edges_y = [top - 0.5, top - 0.5, bottom + 0.5, bottom + 0.5, top - 0.5]
    axes.plot(edges_x, edges_y, color="red", linewidth=2)
    axes.plot([(left + right) / 2], [(top + bottom) / 2], "r+", markersize=12)
    axes.set_xlim(-0.5, image.shape[1] - 0.5)
    axes.set_ylim(image.shape[0] - 0.5, -0.5)
    axes.set_axis_off()
    if title:
        axes.set_title(title)
    return _save(figure, path)


def save_bar_chart(names, accuracy, seconds, path, reference=None, reference_label=None,
                   title=None) -> Path:
    """Test accuracy and training time of several models side by side (1000 x 400 PNG).

    Args:
        names: M model names; accuracy: M values in 0..1; seconds: M training times.
        path: the PNG to write.
        reference: an accuracy to draw as a dashed line (a published result). Default: none.
        reference_label: its legend text.
        title: text above both panels.
    """
    names = [str(name) for name in names]
    accuracy, seconds = np.asarray(accuracy, dtype=float), np.asarray(seconds, dtype=float)
    if accuracy.shape != (len(names),) or seconds.shape != (len(names),):
        raise ValueError(
            f"save_bar_chart: expected {len(names)} accuracies and times, got shapes "
            f"{accuracy.shape} and {seconds.shape}"
        )
    figure = Figure(figsize=(10, 4), layout="constrained")
    accuracy_axes, time_axes = figure.subplots(1, 2)
    positions = np.arange(len(names))
    bars = accuracy_axes.bar(positions, accuracy, color="tab:blue")
    accuracy_axes.bar_label(bars, fmt="%.3f", fontsize=8)
    accuracy_axes.set_ylim(0, 1.05)
    accuracy_axes.set_ylabel("test accuracy")
    if reference is not None:
        accuracy_axes.axhline(reference, color="tab:red", linestyle="--",
                              label=reference_label or f"reference {reference:.3f}")
        accuracy_axes.legend(loc="lower right")
    bars = time_axes.bar(positions, seconds, color="tab:orange")
    time_axes.bar_label(bars, fmt="%.1f", fontsize=8)
    time_axes.set_ylabel("training time (s)")
    for axes in (accuracy_axes, time_axes):
        axes.set_xticks(positions, names, rotation=15)
        axes.grid(True, axis="y", alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, path)
