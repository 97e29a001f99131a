# %% [markdown]
# # 5. Receptive fields and pooling
#
# An output of a convolution sees only a window of its input, but that input is itself the
# output of earlier layers, so layer by layer each activation sees a larger part of the image:
# its receptive field. Stride and pooling make it grow faster, since they space neighbouring
# outputs further apart in the image (the jump). This notebook draws the receptive field of one
# activation at every layer of the shipped CNN, checks it with backpropagation, compares how
# fast different designs grow it, and sets max pooling against average pooling.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

import cnnlab
from cnnlab import nn
from cnnlab.analysis import format_summary, receptive_field_box, summary
from cnnlab.analysis.pictures import receptive_field_overlay
from cnnlab.data import load_dataset
from cnnlab.nn import functional as F
from cnnlab.training import load_trained

train_set, test_set = load_dataset("fashion-mnist")
cnn, metadata, inputs = load_trained("pretrained:cnn-fashion-mnist")
image = test_set.images[:1]  # (1, 1, 28, 28) uint8: an ankle boot

# %% [markdown]
# ## The receptive field, layer by layer
#
# `summary` applies the lecture's recurrences without running the network: starting from
# rf = 1 and jump = 1 at the input, a layer with kernel K and stride S gives
# rf_out = rf_in + (K - 1) jump_in and jump_out = jump_in S.

# %%
records = summary(cnn, (1, 28, 28))
print(format_summary(records, (1, 28, 28)))

# %% [markdown]
# The box (red) is the part of the image that the centre activation of each layer sees; the
# dots are the centres of all the layer's activations, one jump apart. A 3 x 3 convolution
# adds K - 1 = 2 jumps to the field; a 2 x 2 pooling adds one jump and doubles the jump, so
# the second convolution, after one pooling, grows the field by 4 pixels instead of 2.

# %%
spatial = [record for record in records if record.spatial and record.kernel_size]
figure, axes = plt.subplots(1, len(spatial), figsize=(3.2 * len(spatial), 3.6))
for panel, record in zip(axes, spatial, strict=True):
    _, (top, left, bottom, right) = receptive_field_overlay(cnn, (1, 28, 28), record.name)
    panel.imshow(image[0, 0], cmap="gray")
    panel.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                                  fill=False, color="red", linewidth=2))
    rows, columns = record.output_shape[1:]
    centre_y, centre_x = np.meshgrid(record.start[0] + record.jump[0] * np.arange(rows),
                                     record.start[1] + record.jump[1] * np.arange(columns),
                                     indexing="ij")
    panel.plot(centre_x.ravel(), centre_y.ravel(), ".", color="tab:orange", markersize=3)
    panel.set_xlim(-0.5, 27.5)
    panel.set_ylim(27.5, -0.5)
    panel.set_title(f"{record.name}: rf {record.receptive_field[0]}, jump {record.jump[0]}")
    panel.set_axis_off()
plt.show()

# %% [markdown]
# ## Checked by backpropagation
#
# The gradient of one activation with respect to the input is zero outside its receptive
# field, since those pixels do not take part in computing it. Below, for the centre position of
# each layer (all channels summed), the pixels with a non-zero gradient always lie inside the
# box, and here they fill it: the formula and the network agree. (For a single channel they
# can fill less, since ReLU and max pooling pass the gradient only through the inputs that were
# active or the largest.)

# %%
x = cnnlab.tensor(inputs.transform(image), requires_grad=True)
for record in spatial:
    x.grad = None
    activations = cnn[:int(record.path) + 1](x)  # the layers up to this one: (1, C, H', W')
    centre = (activations.shape[2] // 2, activations.shape[3] // 2)
    activations[:, :, centre[0], centre[1]].sum().backward()
    rows, columns = np.nonzero(x.grad[0, 0])
    top, left, bottom, right = receptive_field_box(record, centre, image_hw=(28, 28))
    inside = rows.min() >= top and rows.max() <= bottom and columns.min() >= left and (
        columns.max() <= right)
    print(f"{record.name:9s} box rows {top}-{bottom}, columns {left}-{right}; non-zero gradient "
          f"rows {rows.min()}-{rows.max()}, columns {columns.min()}-{columns.max()}; "
          f"inside: {inside}")

figure, axes = plt.subplots(1, 2, figsize=(7, 3.6))
axes[0].imshow(image[0, 0], cmap="gray")
axes[1].imshow(np.abs(x.grad[0, 0]), cmap="magma")
for panel in axes:
    panel.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1,
                                  fill=False, color="cyan", linewidth=2))
    panel.set_axis_off()
axes[1].set_title(f"|gradient| of {record.name}'s centre")
plt.show()

# %% [markdown]
# ## How fast it grows
#
# Three stacks of six layers on a 64 x 64 input: six 3 x 3 convolutions with stride 1; three
# times a 3 x 3 convolution followed by 2 x 2 max pooling; six 3 x 3 convolutions with stride
# 2. With stride 1 the field grows by 2 pixels a layer (a straight line); every stride or
# pooling doubles the jump, so the field then grows geometrically.

# %%
designs = {
    "3x3 conv, stride 1": [nn.Conv2d(1, 1, 3, padding=1) for _ in range(6)],
    "3x3 conv + 2x2 max pool": [layer for _ in range(3)
                                for layer in (nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2))],
    "3x3 conv, stride 2": [nn.Conv2d(1, 1, 3, stride=2, padding=1) for _ in range(6)],
}
figure, axes = plt.subplots(figsize=(6, 3.8))
for name, stack in designs.items():
    fields = [1] + [record.receptive_field[0] for record in summary(nn.Sequential(*stack),
                                                                    (1, 64, 64))]
    axes.plot(range(7), fields, "o-", label=name)
    print(f"{name:24s} receptive fields {fields}")
axes.set_xlabel("layers")
axes.set_ylabel("receptive field (pixels)")
axes.legend()
plt.show()

# %% [markdown]
# ## Max pooling against average pooling
#
# Pooling shrinks a map by summarising each window in one number: the largest value (max) or
# the mean (average). On the image, max pooling keeps thin bright details (the sole's stitching,
# the outline) and average pooling blurs them. On an activation map, where a large value means
# "this filter found its pattern here", max pooling keeps that the pattern was found somewhere
# in the window, while averaging dilutes a strong response in one pixel with its neighbours.

# %%
pixels = cnnlab.tensor(image / 255)
with cnnlab.no_grad():
    activation = F.relu(cnn[0](cnnlab.tensor(inputs.transform(image))))[:, 5:6]  # one channel
rows = {
    "image": [("", pixels.data)] + [
        (f"{name} {kernel}", pool(pixels, kernel).data)
        for kernel in (2, 4) for name, pool in (("max pool", F.max_pool2d),
                                                ("average pool", F.avg_pool2d))],
    "conv1 channel 5 after ReLU": [("", activation.data),
                                   ("max pool 2", F.max_pool2d(activation, 2).data),
                                   ("average pool 2", F.avg_pool2d(activation, 2).data)],
}
figure, axes = plt.subplots(2, 5, figsize=(13, 5.6))
for row, (name, panels) in zip(axes, rows.items(), strict=True):
    for panel, (title, picture) in zip(row, panels, strict=False):
        panel.imshow(picture[0, 0], cmap="gray" if name == "image" else "viridis", vmin=0,
                     vmax=panels[0][1].max())  # one scale per row: averages come out dimmer
        panel.set_title(f"{title or name}: {picture.shape[2]} x {picture.shape[3]}", fontsize=9)
    for panel in row:
        panel.set_axis_off()
plt.show()

# %% [markdown]
# Their gradients differ in the same way. On a 4 x 4 input with 2 x 2 windows, max pooling
# sends each window's gradient to its largest input only, average pooling splits it equally
# among the four.

# %%
patch = cnnlab.tensor(np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4) % 7, requires_grad=True)
print("input\n", patch.data[0, 0])
F.max_pool2d(patch, 2).sum().backward()
print("gradient through max pooling\n", patch.grad[0, 0])
patch.grad = None
F.avg_pool2d(patch, 2).sum().backward()
print("gradient through average pooling\n", patch.grad[0, 0])
