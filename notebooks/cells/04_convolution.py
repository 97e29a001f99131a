# %% [markdown]
# # 4. Convolution
#
# A fully connected layer gives every output its own weight for every input pixel. A
# convolution layer instead slides a small filter over the image and takes, at every position,
# the dot product of the filter with the patch under it: the same few weights everywhere, and
# each output sees only a small neighbourhood. This notebook slides one filter by hand, counts
# channels in and out, looks at a trained network's activation maps and filters, and checks
# the output-size formula (W - K + 2P)/S + 1 against real outputs.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import cnnlab
from cnnlab import nn
from cnnlab.analysis import format_summary, plots, summary
from cnnlab.analysis.pictures import activation_maps, filter_images, first_conv_weight
from cnnlab.data import load_dataset
from cnnlab.models import build_model
from cnnlab.nn import functional as F
from cnnlab.training import load_trained

pictures = Path(tempfile.mkdtemp(prefix="cnnlab-notebook-"))


def show(path):
    display(Image(filename=str(path)))


train_set, test_set = load_dataset("fashion-mnist")
image = test_set.images[:1] / 255  # (1, 1, 28, 28): an ankle boot, pixels in [0, 1]

# %% [markdown]
# ## A filter sliding over an image
#
# A 3 x 3 filter that responds to vertical edges (bright on the left, dark on the right gives a
# positive output). `F.conv2d` computes all 26 x 26 positions at once; the pictures show three
# moments of the slide, the window on the input (red) and the outputs computed so far, row by
# row. Each output is the sum of the window times the filter, checked by hand below.

# %%
edge = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])[None, None]  # (1,1,3,3)
output = F.conv2d(cnnlab.tensor(image), cnnlab.tensor(edge)).data  # (1, 1, 26, 26)
print("input", image.shape, " filter", edge.shape, " output", output.shape)
row, column = 10, 24  # on the boot's right edge: bright on the left, dark on the right
print(f"output[{row}, {column}] = {output[0, 0, row, column]:.4f}; window * filter summed = "
      f"{(image[0, 0, row:row + 3, column:column + 3] * edge[0, 0]).sum():.4f}")

figure, axes = plt.subplots(2, 3, figsize=(9, 6))
limit = np.abs(output).max()
for panel, (row, column) in enumerate(((4, 4), (10, 24), (20, 18))):
    axes[0, panel].imshow(image[0, 0], cmap="gray")
    axes[0, panel].add_patch(plt.Rectangle((column - 0.5, row - 0.5), 3, 3, fill=False,
                                           color="red", linewidth=2))
    done = np.arange(26 * 26).reshape(26, 26) <= row * 26 + column  # row by row, so far
    axes[1, panel].imshow(np.where(done, output[0, 0], np.nan), cmap="RdBu_r", vmin=-limit,
                          vmax=limit)
    axes[1, panel].add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False,
                                           color="black", linewidth=2))
    axes[0, panel].set_title(f"window at ({row}, {column})")
for panel in axes.ravel():
    panel.set_xticks([])
    panel.set_yticks([])
axes[1, 0].set_ylabel("output so far")
plt.show()

# %% [markdown]
# ## Channels in, channels out
#
# A layer has C_out filters, and each filter spans all C_in input channels: its weight is
# (C_out, C_in, K, K). Output channel o is the sum over the input channels c of channel c
# convolved with filter slice (o, c), plus the bias b_o. Below: 1 channel -> 4, then 4 -> 6.

# %%
cnnlab.manual_seed(0)
first = nn.Conv2d(1, 4, 3, padding=1)
second = nn.Conv2d(4, 6, 3)
with cnnlab.no_grad():
    hidden = first(cnnlab.tensor(image.astype(np.float32)))  # (1, 4, 28, 28)
    out = second(hidden)  # (1, 6, 26, 26)
    channel_by_channel = sum(
        F.conv2d(hidden[:, c:c + 1], second.weight[0:1, c:c + 1]).data for c in range(4)
    ) + second.bias.data[0]
print(f"first:  weight {first.weight.shape}, output {hidden.shape}, "
      f"{sum(p.data.size for p in first.parameters())} parameters = 4*1*3*3 + 4")
print(f"second: weight {second.weight.shape}, output {out.shape}, "
      f"{sum(p.data.size for p in second.parameters())} parameters = 6*4*3*3 + 6")
print("output channel 0 against the sum over input channels:",
      np.abs(out.data[:, 0:1] - channel_by_channel).max())

# %% [markdown]
# ## Activation maps of a trained network
#
# The shipped CNN (`cnnlab train`, 0.925 test accuracy) has 32 filters of 3 x 3 in its first
# layer and 64 of 3 x 3 x 32 in its second, after a 2 x 2 max pooling. Each output channel is an
# activation map: where in the image its filter found its pattern. The first layer's maps are
# still images of the boot (edges of one direction or another, bright or dark regions); the
# second layer's, at half the resolution, respond to larger parts.

# %%
cnn, metadata, inputs = load_trained("pretrained:cnn-fashion-mnist")
print(cnn)
for name, maps in activation_maps(cnn, inputs.transform(test_set.images[:1])[0]):
    show(plots.save_image_grid(maps, pictures / f"activations_{name}.png", cmap="viridis",
                               columns=16, title=f"{name}: {len(maps)} activation maps of "
                               f"{maps.shape[1]} x {maps.shape[2]}"))

# %% [markdown]
# ## Stride, padding and the output size
#
# A filter of size K moved S pixels at a time over an input of width W padded with P zeros on
# each side fits (W - K + 2P)/S + 1 times, rounded down. Each row below computes that number
# and runs a real convolution on a 28 x 28 input to compare.

# %%
print(" K  S  P   (W - K + 2P)/S + 1      real output width")
for kernel, stride, padding in ((3, 1, 0), (3, 1, 1), (5, 1, 2), (3, 2, 1), (3, 2, 0),
                                (7, 3, 0), (28, 1, 0)):
    formula = (28 - kernel + 2 * padding) / stride + 1
    real = F.conv2d(np.zeros((1, 1, 28, 28), np.float32),
                    np.zeros((1, 1, kernel, kernel), np.float32), stride=stride,
                    padding=padding).shape[-1]
    print(f"{kernel:2d} {stride:2d} {padding:2d}   (28 - {kernel} + {2 * padding})/{stride} + 1 "
          f"= {formula:5.2f}   {real:3d}")

# %% [markdown]
# When the formula is not a whole number the last pixels that no window reaches are dropped;
# `summary` says which. When it is not positive, the convolution refuses, quoting the formula.

# %%
print(format_summary(summary(nn.Sequential(nn.Conv2d(1, 8, 3, stride=2)), (1, 28, 28)),
                     (1, 28, 28)))
try:
    F.conv2d(np.zeros((1, 1, 4, 4), np.float32), np.zeros((1, 1, 7, 7), np.float32))
except ValueError as error:
    print(error)

# %% [markdown]
# ## What trained filters look like
#
# The first layer's 32 filters, each rescaled to its own range (white large, black small),
# beside the same layer freshly initialised. With nine weights each, trained 3 x 3 filters are
# hard to tell from random ones by eye: any 3 x 3 filter with a bright side and a dark side is
# already an edge detector of some direction. The familiar pictures of oriented edges and
# colour blobs come from larger first-layer filters, such as AlexNet's 11 x 11 on colour
# photographs.

# %%
show(plots.save_image_grid(filter_images(first_conv_weight(cnn)), pictures / "filters.png",
                           columns=16, title="trained: the first convolution's 32 filters"))
cnnlab.manual_seed(0)
fresh = build_model("cnn")
show(plots.save_image_grid(filter_images(first_conv_weight(fresh)), pictures / "fresh.png",
                           columns=16, title="freshly initialised: the same layer"))
