# %% [markdown]
# # 7. What the network looks at
#
# The shipped CNN labels 92.5% of the Fashion-MNIST test images correctly, but its accuracy
# does not say which parts of an image it used. This notebook asks two questions of it. For
# one image: which pixels made this score? Saliency, Grad-CAM and occlusion each answer with a
# map over the image. For one channel of a layer: what pattern does it respond to? Its most
# activating patches in the test set, and an image synthesised to excite it, answer with
# pictures. Last, a sanity check (Adebayo et al. 2018): a map that explains the model must
# change when the model's learned weights are replaced by random ones.

# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

import cnnlab
from cnnlab.analysis import summary
from cnnlab.analysis.plots import mosaic
from cnnlab.data import load_dataset
from cnnlab.explain import (
    crop_patches,
    feature_visualisation,
    grad_cam,
    layer_activations,
    occlusion,
    saliency,
    top_patches_per_channel,
)
from cnnlab.models import build_model
from cnnlab.nn import functional as F
from cnnlab.training import load_trained

train_set, test_set = load_dataset("fashion-mnist")
cnn, metadata, inputs = load_trained("pretrained:cnn-fashion-mnist")  # in eval mode
classes = metadata["classes"]
chosen = [107, 192, 118, 188, 27, 40]  # test images: boot, trouser, sneaker, coat, T-shirt, shirt
x = inputs.transform(test_set.images[chosen])  # (6, 1, 28, 28): normalised, as in training
pixels = test_set.images[chosen, 0] / 255  # (6, 28, 28) in [0, 1], for drawing
with cnnlab.no_grad():
    probabilities = F.softmax(cnn(cnnlab.tensor(x)), dim=1).data
predicted = probabilities.argmax(axis=1)
for index, label, row in zip(chosen, test_set.labels[chosen], probabilities, strict=True):
    print(f"test image {index:3d}: {classes[label]:11s} predicted {classes[row.argmax()]} "
          f"(p = {row.max():.3f})")


def draw_maps(maps, title, extent=None):
    """Each chosen image with a map laid over it: non-negative maps from 0 (black) to their
    largest value (yellow), signed maps on a blue-white-red scale around 0."""
    figure, axes = plt.subplots(1, len(maps), figsize=(2.1 * len(maps), 2.7))
    for panel, picture, heat, k in zip(axes, pixels, maps, predicted, strict=True):
        limit = np.abs(heat).max()
        signed = heat.min() < 0
        panel.imshow(picture, cmap="gray")
        panel.imshow(heat, cmap="RdBu_r" if signed else "inferno", alpha=0.6,
                     vmin=-limit if signed else 0, vmax=limit,
                     extent=extent or (-0.5, 27.5, 27.5, -0.5))
        panel.set_title(classes[k], fontsize=9)
        panel.set_axis_off()
    figure.suptitle(title)
    plt.show()

# %% [markdown]
# The images are among the first 200 of the test set, where the network is not quite sure
# (p below 0.99; on an image it is sure of, occlusion has nothing to show, as seen below). The
# last is one of its mistakes: a shirt taken for a T-shirt/top, its most frequent confusion.
# Every map below explains the predicted class, from the class's score: the logit before the
# softmax, except for occlusion, which reads the probability.
#
# ## Saliency: the gradient of the score
#
# Saliency (Simonyan et al. 2014) is |d score / d pixel|: how much the class score would move
# if that pixel alone changed a little. One forward and one backward pass give it for every
# pixel. It is a local, first-order answer, and it looks like it: speckle scattered over the
# garment and even the background, rather than solid regions.

# %%
draw_maps(saliency(cnn, x), "saliency |d score / d pixel|")

# %% [markdown]
# ## Grad-CAM: which places of the last convolution mattered
#
# Grad-CAM (Selvaraju et al. 2017) works on a layer's output A instead of the pixels, here
# relu2: 64 channels of 14 x 14. It weights each channel k by its mean gradient
# alpha_k = mean over (i, j) of d score / d A[k, i, j], sums, and keeps the positive part:
# ReLU(sum over k of alpha_k A_k). The raw map has one value per relu2 position (each sees an
# 8 x 8 receptive field, two pixels apart), so it is coarse; for the overlay it is resized
# bilinearly to 28 x 28. The blocks of the raw map are drawn where their positions lie.
#
# Two things to notice. Empty background lights up too (above the shoes, beside the T-shirt):
# where the garment is not counts as evidence. And the coat's map is empty: there the weighted
# sum is negative at every position, the ReLU leaves nothing, and Grad-CAM says nothing (this
# happens to 4% of the first 1,000 test images).

# %%
raw = grad_cam(cnn, x, "relu2", upsample=False)  # (6, 14, 14)
print("raw Grad-CAM maps", raw.shape, "; largest value of each:", np.round(raw.max(axis=(1, 2)), 3))
draw_maps(raw, "Grad-CAM on relu2, raw 14 x 14")
draw_maps(grad_cam(cnn, x, "relu2"), "Grad-CAM on relu2, upsampled to 28 x 28")

# %% [markdown]
# Grad-CAM explains a class, so it can ask why not another. For the shirt taken for a
# T-shirt/top, the maps for the two classes put their weight on different parts of the
# garment: the evidence for each class, in the same image.

# %%
shirt = x[-1:]
figure, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
axes[0].imshow(pixels[-1], cmap="gray")
axes[0].set_title(f"p(T-shirt) {probabilities[-1, 0]:.2f}, p(Shirt) {probabilities[-1, 6]:.2f}",
                  fontsize=9)
for panel, target in zip(axes[1:], (0, 6), strict=True):
    heat = grad_cam(cnn, shirt, "relu2", target=target)[0]
    panel.imshow(pixels[-1], cmap="gray")
    panel.imshow(heat, cmap="inferno", alpha=0.6, vmin=0, vmax=heat.max() or 1)
    panel.set_title(f"Grad-CAM for {classes[target]}", fontsize=9)
for panel in axes:
    panel.set_axis_off()
plt.show()

# %% [markdown]
# ## Occlusion: hide a patch, watch the probability
#
# Occlusion (Zeiler & Fergus 2014) asks the network directly: set a 4 x 4 patch to 0 (the mean
# pixel, after normalisation), slide it in steps of 2 pixels, and record how much the
# predicted class's probability drops. That is 13 x 13 = 169 forward passes per image instead
# of one backward pass, but it needs no gradient and measures a real change, not a
# derivative. Red: hiding the patch lowers the probability; blue: it raises it. Each value is
# drawn as the 2 x 2 square at the centre of its patch. A prediction the network is sure of
# survives every single patch: for test image 0 (p = 1.000) no patch lowers it by even 0.01,
# so there the map would be empty.

# %%
drops = occlusion(cnn, x, patch=4, stride=2)  # (6, 13, 13)
print("occlusion maps", drops.shape, "; largest drop in each:", np.round(drops.max(axis=(1, 2)), 2))
sure = inputs.transform(test_set.images[:1])  # test image 0, an ankle boot, p = 1.000
print(f"test image 0: largest drop {occlusion(cnn, sure).max():.4f}")
draw_maps(drops, "occlusion: drop in p(predicted class)", extent=(0.5, 26.5, 26.5, 0.5))

# %% [markdown]
# ## What a channel responds to, found in data
#
# The maps above explain one image. A channel of a layer can be explained across many:
# collect its largest activations over the test images and cut out, for each, the part of the
# image it sees, its receptive field (Zeiler & Fergus 2014). For conv2 that is 8 x 8 pixels
# (rf 8, jump 2 in the summary), so each conv2 activation answers to a small patch.
# `top_patches_per_channel` ranks every channel's activations in one pass; here over the
# first 2,000 test images, to stay quick.

# %%
records = {record.name: record for record in summary(cnn, (1, 28, 28))}
conv2 = records["conv2"]
print(f"conv2: output {conv2.output_shape}, receptive field {conv2.receptive_field}, "
      f"jump {conv2.jump}")
pool = inputs.transform(test_set.images[:2000])
best = top_patches_per_channel(cnn, pool, "conv2", k=8)  # 64 lists of 8 (n, y0, x0, y1, x1, a)
channels = [3, 7, 11, 23, 30, 57]

# %% [markdown]
# Each row is one channel: on the left, its best activation's receptive field on its whole
# image (red box); then its eight best patches, cut out at 8 x 8. Patches at the border are
# padded with black where the receptive field leaves the image. Each channel answers to a
# local pattern: bright above dark (3), a thin diagonal stroke (7), curves and dotted prints
# (11), checks and vertical bars (23), a vertical edge (30), a dark wedge into a bright area
# (57).

# %%
figure, axes = plt.subplots(len(channels), 2, figsize=(7, 1.35 * len(channels)),
                            gridspec_kw={"width_ratios": [1, 4.5]})
for (whole, strip), channel in zip(axes, channels, strict=True):
    patches = best[channel]
    index, y0, x0, y1, x1, value = patches[0]
    whole.imshow(test_set.images[index, 0], cmap="gray")
    whole.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                  color="red", linewidth=1.5))
    crops = crop_patches(test_set.images / 255, patches, conv2.receptive_field)  # (8, 1, 8, 8)
    strip.imshow(mosaic(crops[None, :, 0]), cmap="gray", vmin=0, vmax=1)
    strip.set_title(f"conv2 channel {channel}: best activation {value:.2f}", fontsize=9)
    whole.set_axis_off()
    strip.set_axis_off()
plt.show()

# %% [markdown]
# ## What a channel responds to, synthesised
#
# Feature visualisation (Olah et al. 2017) builds the image instead of searching for it:
# start from faint noise and climb the gradient of the channel's mean activation over the
# whole image, with jitter and a little blur every few steps so that the result stays an
# image and not high-frequency noise, and pixels kept between black and white. Since the
# objective is the mean over all positions, the channel's pattern is repeated across the
# picture: horizontal bars for channel 3, diagonal ones for 7, vertical ones for 23 and 30.
# The printout compares the mean activation reached with the best test image's: the
# synthesised images excite their channels more than any of the 2,000.

# %%
prep = metadata["preprocessing"]
bounds = ((0 - prep["mean"][0]) / prep["std"][0], (1 - prep["mean"][0]) / prep["std"][0])
synthesised = feature_visualisation(cnn, "conv2", channels, (1, 28, 28),
                                    np.random.default_rng(0), bounds=bounds)  # (6, 1, 28, 28)
reached = layer_activations(cnn, synthesised, "conv2")[np.arange(len(channels)), channels]
in_data = layer_activations(cnn, pool, "conv2")[:, channels].mean(axis=(2, 3)).max(axis=0)
figure, axes = plt.subplots(1, len(channels), figsize=(2.2 * len(channels), 2.6))
for panel, picture, channel in zip(axes, synthesised, channels, strict=True):
    panel.imshow(picture[0], cmap="gray", vmin=bounds[0], vmax=bounds[1])
    panel.set_title(f"conv2 channel {channel}", fontsize=9)
    panel.set_axis_off()
plt.show()
for channel, mean, data in zip(channels, reached.mean(axis=(1, 2)), in_data, strict=True):
    print(f"channel {channel:2d}: mean activation of its image {mean:6.2f}, "
          f"of the best of 2,000 test images {data:6.2f}")

# %% [markdown]
# ## A sanity check: maps from random weights
#
# A map can look convincing and still say little about the model: an edge detector run on the
# image would also outline the garment. Adebayo et al. (2018, "Sanity Checks for Saliency
# Maps") test this by replacing the trained weights with fresh random ones (same
# architecture) and computing the same maps again. If the maps barely change, they describe
# the image, not what the network learned. Below, the trained and the re-initialised network's
# saliency and Grad-CAM maps of the same images, for the same classes (the trained network's
# predictions). By eye the saliency rows are hard to tell apart, and the random network's
# Grad-CAM outlines the trouser and the T-shirts: a picture that could pass for an explanation,
# from a network that has learned nothing.

# %%
random_cnn = build_model("cnn", generator=np.random.default_rng(0)).eval()
maps = {
    "saliency, trained": saliency(cnn, x, predicted),
    "saliency, random weights": saliency(random_cnn, x, predicted),
    "Grad-CAM, trained": grad_cam(cnn, x, "relu2", predicted),
    "Grad-CAM, random weights": grad_cam(random_cnn, x, "relu2", predicted),
}
figure, axes = plt.subplots(len(maps), len(chosen), figsize=(2.2 * len(chosen), 9.2))
for row, (name, heats) in zip(axes, maps.items(), strict=True):
    for panel, picture, heat in zip(row, pixels, heats, strict=True):
        panel.imshow(picture, cmap="gray")
        panel.imshow(heat, cmap="inferno", alpha=0.6, vmin=0, vmax=heat.max() or 1)
        panel.set_xticks([])
        panel.set_yticks([])
    row[0].set_ylabel(name, fontsize=9)
plt.show()

# %% [markdown]
# The pictures are compared with a number: Spearman's rank correlation between the trained
# and the random network's map of the same image (the correlation of the pixels' ranks, so
# only their order matters, not the scale), averaged over 200 test images. 1 would mean the
# same ordering of pixels; both methods come out near 0, so both pass: their maps depend on
# the learned weights (the two saliency maps' speckle lies in different places). A Grad-CAM
# map can be all zero after its ReLU; such pairs have no rank correlation and are left out.

# %%
def ranks(values):
    """Ranks of a 1-D array's values, 0..n-1; tied values share their mean rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - counts + (counts - 1) / 2)[inverse]


def rank_correlations(maps, others):
    """Spearman's correlation of each pair of maps whose values are not all equal."""
    return np.array([np.corrcoef(ranks(a.ravel()), ranks(b.ravel()))[0, 1]
                     for a, b in zip(maps, others, strict=True) if min(np.ptp(a), np.ptp(b)) > 0])


sample = pool[:200]
with cnnlab.no_grad():
    targets = cnn(cnnlab.tensor(sample)).data.argmax(axis=1)
for name, method in (("saliency", lambda model: saliency(model, sample, targets)),
                     ("Grad-CAM on relu2", lambda model: grad_cam(model, sample, "relu2",
                                                                  targets))):
    correlations = rank_correlations(method(cnn), method(random_cnn))
    print(f"{name:17s} trained against random weights: rank correlation "
          f"{correlations.mean():.3f} (mean of {len(correlations)} images)")
