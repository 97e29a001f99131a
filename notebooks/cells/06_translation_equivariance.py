# %% [markdown]
# # 6. Translation equivariance
#
# A convolution applies the same filter at every position, so shifting the input shifts its
# output by the same amount: conv(shift(x)) = shift(conv(x)). That is translation
# equivariance, and it is why a CNN need not learn a boot separately at every place in the
# image. This notebook shifts an image and watches the maps of the shipped CNN shift with it,
# then finds where the property breaks: at the borders, at strides and pooling (for shifts
# that are not whole steps), and in the fully connected head.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

import cnnlab
from cnnlab import nn
from cnnlab.analysis import equivariance_error, layer_outputs, summary, translate
from cnnlab.data import load_dataset
from cnnlab.training import load_trained

train_set, test_set = load_dataset("fashion-mnist")
cnn, metadata, inputs = load_trained("pretrained:cnn-fashion-mnist")
features = cnn[:6]  # conv1, relu1, maxpool1, conv2, relu2, maxpool2: the convolutional part

# %% [markdown]
# ## Shift the image, watch the maps shift
#
# The convolutional part of the network works on any image size, so the boot is placed on a
# 40 x 40 canvas (6 pixels of background around it) where it can move without leaving the
# picture. The shift is done on the pixels, so the background shifted in is background; then
# the pixels are normalised as in training.

# %%
canvas = np.pad(test_set.images[:1], ((0, 0), (0, 0), (6, 6), (6, 6)))  # (1, 1, 40, 40) uint8
shift = (4, 4)
x, x_shifted = inputs.transform(canvas), inputs.transform(translate(canvas, shift))
records = [r for r in summary(features, (1, 40, 40)) if r.kernel_size]  # conv and pool layers
outputs = dict(layer_outputs(features, x))
shifted_outputs = dict(layer_outputs(features, x_shifted))
figure, axes = plt.subplots(1, 2, figsize=(5, 2.6))
for panel, (picture, title) in zip(axes, ((canvas, "x"), (translate(canvas, shift),
                                                         f"x shifted by {shift}")), strict=True):
    panel.imshow(picture[0, 0], cmap="gray")
    panel.set_title(title)
    panel.set_axis_off()
plt.show()

# %% [markdown]
# For each layer (channel 0): its map of x, its map of the shifted x, and the difference
# between the latter and the map of x shifted by shift / jump output positions (the jump is
# the input distance between neighbouring outputs: 1, 2, 2, 4). Away from the borders the
# difference is exactly 0. At the borders it is not: the shifted-in band is compared with
# nothing, and the network's zero padding makes its outermost outputs different from those in
# the middle of the background, so that border row shows up, moved inward, as a line.

# %%
figure, axes = plt.subplots(len(records), 3, figsize=(9, 2.8 * len(records)))
for row, record in zip(axes, records, strict=True):
    steps = (shift[0] // record.jump[0], shift[1] // record.jump[1])
    original, moved = outputs[record.path][0, 0], shifted_outputs[record.path][0, 0]
    difference = moved - translate(original, steps)
    limit = np.abs(original).max()
    for panel, picture, title in zip(row, (original, moved, difference),
                                     (f"{record.name}: x", "shifted x",
                                      f"difference, map of x moved {steps}"), strict=True):
        panel.imshow(picture, cmap="RdBu_r", vmin=-limit, vmax=limit)
        panel.set_title(title, fontsize=9)
        panel.set_axis_off()
plt.show()

# %% [markdown]
# `equivariance_error(fn, x, shift)` puts a number on it: the largest difference over the
# outputs at least a quarter of the map away from every border, relative to the largest
# output. It refuses a shift that is not a whole number of output steps, since such a shift
# has no counterpart in the output.

# %%
for record in records:
    layers_up_to_here = features[:int(record.path) + 1]
    results = []
    for step in (1, 2, 4):
        try:
            results.append(f"{equivariance_error(layers_up_to_here, x, (step, step)):.1e}")
        except ValueError:
            results.append("refused")
    print(f"{record.name:9s} jump {record.jump[0]}: shift 1: {results[0]:8s} "
          f"shift 2: {results[1]:8s} shift 4: {results[2]}")

# %% [markdown]
# ## Where it breaks: strides and pooling
#
# A layer with stride 2 (or 2 x 2 pooling) keeps every other position. Shifting the input by a
# whole step of the output grid shifts the output, but a shift by less picks other positions
# and other maxima: the output changes rather than moves. Below, maxpool2 (jump 4) for input
# shifts of 0 to 4 pixels, and below each the difference from the unshifted map moved by the
# nearest whole number of output steps. Only shifts by 0 and 4 leave nothing but the borders.

# %%
maxpool2 = records[-1]
original = outputs[maxpool2.path][0, 0]
figure, axes = plt.subplots(2, 5, figsize=(12, 5))
for column, step in enumerate(range(5)):
    moved = dict(layer_outputs(features, inputs.transform(translate(canvas, (step, step)))))
    moved = moved[maxpool2.path][0, 0]
    nearest = round(step / maxpool2.jump[0])
    axes[0, column].imshow(moved, cmap="viridis", vmin=0, vmax=original.max())
    axes[0, column].set_title(f"input shifted by {step}", fontsize=9)
    axes[1, column].imshow(moved - translate(original, (nearest, nearest)), cmap="RdBu_r",
                           vmin=-original.max(), vmax=original.max())
    axes[1, column].set_title(f"difference, original moved {nearest}", fontsize=9)
for panel in axes.ravel():
    panel.set_axis_off()
plt.show()

# %% [markdown]
# ## Where it breaks: the fully connected head
#
# A fully connected layer has a separate weight for every input position, so nothing ties its
# output at one place to its output at another: the README's example measures a convolution,
# a convolution with pooling, and a dense layer of the same output shape on a random image.

# %%
generator = np.random.default_rng(0)
random_image = np.zeros((1, 1, 32, 32), dtype=np.float32)
random_image[:, :, 8:24, 8:24] = generator.random((16, 16))  # zero border
cnnlab.manual_seed(0)
conv = nn.Conv2d(1, 4, 3, padding=1)
pool = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
dense = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 4 * 16 * 16))
for name, fn in (("conv", conv), ("conv + pool", pool),
                 ("dense", lambda images: dense(images).reshape(-1, 4, 16, 16))):
    print(f"{name:12s} equivariance error for a shift of (2, 2): "
          f"{equivariance_error(fn, random_image, (2, 2)):.3f}")

# %% [markdown]
# The classifier at the end of a CNN needs invariance (the same class wherever the boot is),
# not equivariance, and its fully connected head does not provide it: it was only ever shown
# centred garments. Shifting 1,000 test images sideways (inside the 28 x 28 frame the head
# expects) lowers the accuracy of both shipped classifiers. The CNN tolerates a pixel or two,
# thanks to its pooling; beyond that it falls, more slowly than the linear classifier, whose
# templates are tied to exact pixels.

# %%
linear, _, linear_inputs = load_trained("pretrained:linear-fashion-mnist")
images, labels = test_set.images[:1000], test_set.labels[:1000]
shifts = np.arange(-6, 7)
accuracy = {"cnn": [], "linear": []}
with cnnlab.no_grad():
    for dx in shifts:
        moved = translate(images, (0, int(dx)))
        for name, model, prepare in (("cnn", cnn, inputs), ("linear", linear, linear_inputs)):
            scores = model(cnnlab.tensor(prepare.transform(moved))).data
            accuracy[name].append((scores.argmax(axis=1) == labels).mean())
figure, axes = plt.subplots(figsize=(7, 3.6))
for name, values in accuracy.items():
    axes.plot(shifts, values, "o-", label=f"shipped {name}")
axes.set_xlabel("horizontal shift (pixels)")
axes.set_ylabel("test accuracy (1,000 images)")
axes.legend()
plt.show()
