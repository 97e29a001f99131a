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


# ----- explanations: a map over an image, top patches, labelled rows of images ---------------
def save_explanation(image, heat, path, title=None, heat_title=None, extent=None,
                     heat_label=None) -> Path:
    """An image, and beside it the same image with a map laid over it (800 x 400 PNG).

    Args:
        image: (H, W) grey or (H, W, 3) colour display image in [0, 1].
        heat: (H_m, W_m) map (saliency, Grad-CAM, occlusion), drawn with its own colour bar:
            from 0 to its maximum for a map without negative values, else from -m to m
            (m = max |heat|) on a blue-white-red scale.
        path: the PNG to write.
        title: text above both panels (the top classes). Default: none.
        heat_title: text above the overlay (the method and target). Default: none.
        extent: (left, right, bottom, top) of the map in the image's pixel coordinates
            (pixel (y, x) centred at (x, y), the image spanning -0.5 .. W - 0.5); Default: the
            whole image (a map of the image's size, one value per pixel).
        heat_label: the colour bar's caption. Default: none.
    """
    image, heat = np.clip(np.asarray(image, dtype=float), 0, 1), np.asarray(heat, dtype=float)
    if image.ndim not in (2, 3) or heat.ndim != 2:
        raise ValueError(f"save_explanation: expected an (H, W) or (H, W, 3) image and an "
                         f"(H_m, W_m) map, got {image.shape} and {heat.shape}")
    height, width = image.shape[:2]
    extent = (-0.5, width - 0.5, height - 0.5, -0.5) if extent is None else extent
    largest = float(np.abs(heat).max()) if heat.size else 0.0
    signed = heat.size and heat.min() < 0
    scale = {"cmap": "RdBu_r", "vmin": -largest, "vmax": largest} if signed else {
        "cmap": "inferno", "vmin": 0.0, "vmax": largest or 1.0}
    figure = Figure(figsize=(8, 4), layout="constrained")
    image_axes, heat_axes = figure.subplots(1, 2)
    for axes in (image_axes, heat_axes):
        axes.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes.set_axis_off()
    shown = heat_axes.imshow(heat, alpha=0.6, extent=extent, interpolation="nearest", **scale)
    heat_axes.set_xlim(-0.5, width - 0.5)
    heat_axes.set_ylim(height - 0.5, -0.5)
    colour_bar = figure.colorbar(shown, ax=heat_axes, shrink=0.85)
    if heat_label:
        colour_bar.set_label(heat_label)
    image_axes.set_title("input")
    if heat_title:
        heat_axes.set_title(heat_title)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def mosaic(tiles, gap=1, gap_value=1.0):
    """Tiles (R, M, h, w) or (R, M, h, w, 3) side by side: R rows of M, `gap` pixels of
    `gap_value` between them -> (R * (h + gap) - gap, M * (w + gap) - gap[, 3])."""
    tiles = np.asarray(tiles, dtype=float)
    rows, columns, height, width = tiles.shape[:4]
    padding = [(0, 0), (0, 0), (0, gap), (0, gap)] + [(0, 0)] * (tiles.ndim - 4)
    padded = np.pad(tiles, padding, constant_values=gap_value)
    joined = padded.transpose(0, 2, 1, 3, *range(4, tiles.ndim))  # (R, h + gap, M, w + gap, ..)
    joined = joined.reshape(rows * (height + gap), columns * (width + gap), *tiles.shape[4:])
    return joined[: rows * (height + gap) - gap, : columns * (width + gap) - gap]


def save_patch_grid(patches, path, row_labels, title=None, rows_per_block=16) -> Path:
    """One row of image patches per channel (top patches), blocks of rows side by side.

    Args:
        patches: (K, M, h, w) grey or (K, M, h, w, 3) colour patches in [0, 1]: row k holds
            channel k's M patches, best first.
        path: the PNG to write: each patch pixel about 4 screen pixels, white lines between
            patches.
        row_labels: K texts, one per row ("3: 4.21", the channel and its best activation).
        title: text above the grid. Default: none.
        rows_per_block: rows per block; ceil(K / rows_per_block) blocks side by side.
            Default: 16.
    """
    patches = np.asarray(patches, dtype=float)
    if patches.ndim not in (4, 5) or (patches.ndim == 5 and patches.shape[-1] != 3) or (
            len(row_labels) != len(patches) or not patches.size):
        raise ValueError(f"save_patch_grid: expected (K, M, h, w[, 3]) patches and K row "
                         f"labels, got {patches.shape} and {len(row_labels)} labels")
    blocks = int(np.ceil(len(patches) / rows_per_block))
    rows = min(rows_per_block, len(patches))
    count, height, width = patches.shape[1:4]
    pixels = 4 / 100  # inches per patch pixel at 100 dpi
    figure = Figure(figsize=(blocks * ((width + 1) * count * pixels + 0.7),
                             rows * (height + 1) * pixels + 0.8), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, blocks, squeeze=False)[0])
    for block, cell in enumerate(axes):
        chunk = patches[block * rows_per_block : (block + 1) * rows_per_block]
        full = np.concatenate([chunk, np.ones((rows - len(chunk), *chunk.shape[1:]))])
        cell.imshow(np.clip(mosaic(full), 0, 1), cmap="gray", vmin=0, vmax=1,
                    interpolation="nearest")
        labels = row_labels[block * rows_per_block : (block + 1) * rows_per_block]
        cell.set_yticks((height + 1) * np.arange(len(labels)) + (height - 1) / 2, labels,
                        fontsize=7)
        cell.set_xticks([])
        for spine in cell.spines.values():
            spine.set_visible(False)
        cell.tick_params(length=0)
    if title:
        figure.suptitle(title, fontsize=9, wrap=True)
    return _save(figure, path)


def save_labelled_rows(rows, path, title=None) -> Path:
    """Rows of captioned images, each row with a label on its left (the mistakes of one
    (true, predicted) pair).

    Args:
        rows: list of (label, images, captions): images (M, H, W) grey or (M, H, W, 3) colour
            in [0, 1], M >= 1 (rows may differ in M), captions M texts. No rows: the title
            and "(none)".
        path: the PNG to write: 110 x 110 pixels per image, plus the labels.
        title: text above the rows. Default: none.
    """
    if not rows:
        figure = Figure(figsize=(8, 1.5), layout="constrained")
        figure.text(0.5, 0.4, "(none)", ha="center", va="center")
        figure.suptitle(title or "", fontsize=9, wrap=True)
        return _save(figure, path)
    columns = max(len(images) for _, images, _ in rows)
    figure = Figure(figsize=(1.1 * columns + 1.6, 1.1 * len(rows) + 0.6), layout="constrained")
    axes = np.asarray(figure.subplots(len(rows), columns, squeeze=False))
    for cells, (label, images, captions) in zip(axes, rows, strict=True):
        for index, cell in enumerate(cells):
            cell.set_xticks([])
            cell.set_yticks([])
            for spine in cell.spines.values():
                spine.set_visible(False)
            if index < len(images):
                cell.imshow(np.clip(np.asarray(images[index], dtype=float), 0, 1), cmap="gray",
                            vmin=0, vmax=1, interpolation="nearest")
                cell.set_title(str(captions[index]), fontsize=7)
        cells[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=9, wrap=True)
    return _save(figure, path)
