# %% [markdown]
# # 3. Hand-designed features against learned features
#
# Before convolutional networks, image classifiers were linear classifiers on features a
# person designed: a histogram of colours, a histogram of edge orientations (HOG), or a
# transform of the input that makes the classes separable by a line. A CNN learns its features
# from the pixels instead. This notebook pictures the hand-designed ones and then trains all
# of them, an MLP and a CNN on the same split of Fashion-MNIST.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display
from matplotlib.collections import LineCollection

import cnnlab
from cnnlab import nn, optim, pretrained
from cnnlab.analysis import plots
from cnnlab.data import load_dataset
from cnnlab.features import color_histogram, hog, polar_coordinates
from cnnlab.nn import functional as F
from cnnlab.training import TrainConfig, train
from cnnlab.training.compare import REFERENCES, compare

pictures = Path(tempfile.mkdtemp(prefix="cnnlab-notebook-"))
runs = Path(tempfile.mkdtemp(prefix="cnnlab-runs-"))


def show(path):
    display(Image(filename=str(path)))


train_set, test_set = load_dataset("fashion-mnist")
classes = train_set.classes

# %% [markdown]
# ## Colour histograms
#
# `color_histogram` counts the fraction of pixels in each of 10 bins: of hue for a colour
# image, of intensity for a grey one. Fashion-MNIST is grey, so it sees how much of the image
# is dark background, mid grey or bright. The left panel shows the mean histogram of four
# classes over 1,000 training images: trousers are mostly background, pullovers mostly cloth.
# On the right, the same shirt tinted red and tinted blue: their hue histograms differ (black
# pixels have no hue and count as red, hue 0), while their HOG features below are identical,
# since HOG only sees edges.

# %%
sample = train_set.subset(np.arange(1000))
histograms = color_histogram(sample.images)  # (1000, 10)
shirt = train_set.images[np.flatnonzero(train_set.labels == 6)[0]] / 255  # (1, 28, 28)
red, blue = np.concatenate([shirt, 0.2 * shirt, 0.2 * shirt]), np.concatenate(
    [0.2 * shirt, 0.2 * shirt, shirt])
hues = color_histogram(np.stack([red, blue]))  # (2, 10)

figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5))
centres = (np.arange(10) + 0.5) / 10
for offset, k in zip((-0.03, -0.01, 0.01, 0.03), (1, 2, 5, 8), strict=True):
    left.bar(centres + offset, histograms[sample.labels == k].mean(axis=0), width=0.02,
             label=classes[k])
left.set_xlabel("intensity")
left.set_ylabel("fraction of pixels")
left.legend()
right.bar(centres - 0.015, hues[0], width=0.03, color="tab:red", label="red shirt")
right.bar(centres + 0.015, hues[1], width=0.03, color="tab:blue", label="blue shirt")
right.set_xlabel("hue (0 red, 1/3 green, 2/3 blue)")
right.legend()
plt.show()
print("largest difference between the HOG of the red and the blue shirt:",
      np.abs(hog(red[None]) - hog(blue[None])).max())

# %% [markdown]
# ## HOG, pictured
#
# HOG divides the image into cells (here 4 x 4 pixels, 7 x 7 cells) and, in each cell, adds up
# the gradient magnitudes of its pixels into 9 bins of orientation; each cell's histogram is
# then normalised (here on its own: blocks of 1 x 1 cell). Drawn as a line per bin, along the
# edge (perpendicular to the gradient), brighter for a larger value: the outline of each
# garment survives, the exact pixels do not. The normalisation makes HOG blind to contrast:
# a cell of faint texture (inside the bag) draws as strongly as an outline, and only flat
# cells (the background) stay empty.

# %%
examples = np.array([np.flatnonzero(train_set.labels == k)[0] for k in (0, 1, 5, 8)])
cells = hog(train_set.images[examples], pixels_per_cell=(4, 4), cells_per_block=(1, 1))
cells = cells.reshape(len(examples), 7, 7, 9)  # (image, cell row, cell column, orientation bin)


def draw_hog(axes, histogram, cell_size=4):
    """One line per cell and orientation bin; histogram: (rows, columns, bins)."""
    rows, columns, bins = histogram.shape
    angle = np.pi * (np.arange(bins) + 0.5) / bins  # the bins' centre gradient directions
    y, x, angle = np.meshgrid((np.arange(rows) + 0.5) * cell_size - 0.5,
                              (np.arange(columns) + 0.5) * cell_size - 0.5, angle, indexing="ij")
    dx, dy = cell_size / 2 * np.sin(angle), -cell_size / 2 * np.cos(angle)  # along the edge
    segments = np.stack([np.stack([x - dx, y - dy], -1), np.stack([x + dx, y + dy], -1)], -2)
    strength = (histogram / histogram.max()).reshape(-1)
    colours = np.column_stack([np.ones((strength.size, 3)), strength])
    axes.add_collection(LineCollection(segments.reshape(-1, 2, 2), colors=colours, linewidths=2))
    axes.set_facecolor("black")
    axes.set_xlim(-0.5, columns * cell_size - 0.5)
    axes.set_ylim(rows * cell_size - 0.5, -0.5)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])


figure, axes = plt.subplots(2, len(examples), figsize=(2.5 * len(examples), 5))
for column, (index, histogram) in enumerate(zip(examples, cells, strict=True)):
    axes[0, column].imshow(train_set.images[index, 0], cmap="gray")
    axes[0, column].set_title(classes[train_set.labels[index]])
    axes[0, column].set_axis_off()
    draw_hog(axes[1, column], histogram)
plt.show()

# %% [markdown]
# ## A feature map that keeps the classifier linear
#
# The lecture's example: points of one class inside a circle, of the other in a ring around
# it. No line separates them in (x, y). Mapped to polar coordinates (r, theta) they are
# separated by the line r = 1.25, so a linear classifier on (r, theta), still linear in its
# weights W, classifies them all, and its boundary drawn back in (x, y) is a circle.

# %%
generator = np.random.default_rng(0)
radius = np.concatenate([generator.uniform(0, 1, 200), generator.uniform(1.5, 2.5, 200)])
theta = generator.uniform(-np.pi, np.pi, 400)
points = np.column_stack([radius * np.cos(theta), radius * np.sin(theta)]).astype(np.float32)
point_labels = np.repeat([0, 1], 200)


def polar(xy):
    return np.column_stack([np.hypot(xy[:, 0], xy[:, 1]), np.arctan2(xy[:, 1], xy[:, 0])])


def fit_linear(features, labels, steps=300):
    layer = nn.Linear(features.shape[1], 2, generator=np.random.default_rng(0))
    optimizer = optim.Adam(layer.parameters(), lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(layer(cnnlab.tensor(features)), labels).backward()
        optimizer.step()
    return layer


grid = np.stack(np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200)), -1)
grid = grid.reshape(-1, 2).astype(np.float32)
figure, axes = plt.subplots(1, 2, figsize=(10, 4.5))
for panel, (name, transform) in zip(axes, (("pixels (x, y)", lambda xy: xy),
                                           ("polar (r, theta)", polar)), strict=True):
    layer = fit_linear(transform(points).astype(np.float32), point_labels)
    with cnnlab.no_grad():
        accuracy = (layer(cnnlab.tensor(transform(points).astype(np.float32))).data.argmax(1)
                    == point_labels).mean()
        regions = layer(cnnlab.tensor(transform(grid).astype(np.float32))).data.argmax(1)
    panel.contourf(grid[:, 0].reshape(200, 200), grid[:, 1].reshape(200, 200),
                   regions.reshape(200, 200), levels=[-0.5, 0.5, 1.5], colors=["#cde", "#fdc"])
    panel.scatter(points[:, 0], points[:, 1], c=point_labels, cmap="coolwarm", s=8)
    panel.set_title(f"linear classifier on {name}: accuracy {accuracy:.2f}")
    panel.set_aspect("equal")
plt.show()

# %% [markdown]
# `polar_coordinates` does the same to images: it samples each image along circles around its
# centre, so a rotation of the image becomes a shift along the angle axis. Rotating a sandal by
# 90 degrees shifts its polar map by a quarter of the 56 angles.

# %%
sandal = train_set.images[examples[2:3]]  # (1, 1, 28, 28)
turned = np.rot90(sandal, k=1, axes=(2, 3))
maps = polar_coordinates(np.concatenate([sandal, turned]))  # (2, 1, 14, 56): radius x angle
shift = min((14, -14), key=lambda s: np.abs(maps[1] - np.roll(maps[0], s, axis=-1)).max())
print(f"polar map of the turned sandal = polar map of the sandal shifted by {shift} angles, "
      f"to {np.abs(maps[1] - np.roll(maps[0], shift, axis=-1)).max():.1e}")
figure, axes = plt.subplots(1, 4, figsize=(12, 2.6), width_ratios=(1, 2, 1, 2))
for column, (image, title) in enumerate(((sandal, "sandal"), (turned, "turned 90 degrees"))):
    axes[2 * column].imshow(image[0, 0], cmap="gray")
    axes[2 * column].set_title(title)
    axes[2 * column + 1].imshow(maps[column, 0], cmap="gray")
    axes[2 * column + 1].set_title("its polar map: radius x angle")
for panel in axes:
    panel.set_axis_off()
plt.show()

# %% [markdown]
# ## Everything on the same split
#
# `cnnlab.training.compare.compare` trains a linear classifier on pixels, the same on HOG +
# colour-histogram features, an MLP and the default CNN, each an ordinary training run on the
# same training, validation and test images. To stay within a minute it uses the first 5,000
# training images and 2 epochs; a linear classifier on polar maps joins it, trained by the same
# `train` on the same split. (The CNN, the slowest, takes most of the time.)

# %%
rows = compare("fashion-mnist", limit_train=5000, epochs=2, out_dir=runs, log=print)
polar_run = train(TrainConfig(model="linear", features=["polar"], limit_train=5000, epochs=2,
                              out=str(runs / "polar-linear")).resolve())
names = [row.model for row in rows] + ["polar-linear"]
accuracy = [row.test_accuracy for row in rows] + [polar_run["test_accuracy"]]
seconds = [row.seconds for row in rows] + [polar_run["seconds"]]
reference, reference_label = REFERENCES["fashion-mnist"]
show(plots.save_bar_chart(names, accuracy, seconds, pictures / "comparison.png",
                          reference=reference, reference_label=reference_label,
                          title="5,000 training images, 2 epochs; test accuracy on 10,000"))

# %% [markdown]
# With so little data and training, the hand-designed HOG features are hard to beat: they
# carry knowledge (edges and their directions matter, exact positions less so) that a network
# must first learn from examples. Polar maps do not help here: the garments are all upright,
# so rotation is not what varies between images of a class. Trained on the whole training set
# (the shipped models, and the README's table), the learned features win: the linear
# classifier on pixels reaches 0.846, on HOG + colour 0.887, the MLP 0.899, and the CNN 0.925.
# Per class, from the shipped models' own records of their test runs:

# %%
per_class = {name: pretrained.load(name)[1]["metrics"]["test_per_class_accuracy"]
             for name in ("linear-fashion-mnist", "cnn-fashion-mnist")}
figure, axes = plt.subplots(figsize=(10, 3.5))
for offset, (name, accuracies) in zip((-0.2, 0.2), per_class.items(), strict=True):
    axes.bar(np.arange(10) + offset, [accuracies[c] for c in classes], width=0.4, label=name)
axes.set_xticks(range(10), classes, rotation=30, ha="right")
axes.set_ylim(0.5, 1)
axes.set_ylabel("test accuracy")
axes.legend(loc="lower left")
plt.show()
