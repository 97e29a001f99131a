# %% [markdown]
# # 1. Scores from pixels
#
# A linear classifier turns an image into one score per class, `f(x) = Wx + b`, with `x` the
# image's pixels stretched into a column. This notebook computes such scores on Fashion-MNIST,
# judges them with the two losses of the lecture (softmax and multiclass SVM), adds
# regularisation, trains `W` by gradient descent, and looks at the rows of `W` as images.

# %% [markdown]
# Setup. The library's picture functions (`cnnlab.analysis.plots`) write PNG files; `show`
# displays one here. Everything else is drawn with Matplotlib directly.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import cnnlab
from cnnlab import nn, optim
from cnnlab.analysis import plots
from cnnlab.analysis.pictures import template_images
from cnnlab.data import DataLoader, channel_stats, load_dataset
from cnnlab.models import build_model
from cnnlab.nn import functional as F
from cnnlab.training import load_trained
from cnnlab.training.evaluation import evaluate, loss_function

pictures = Path(tempfile.mkdtemp(prefix="cnnlab-notebook-"))


def show(path):
    display(Image(filename=str(path)))

# %% [markdown]
# ## The data
#
# Fashion-MNIST: 60,000 training and 10,000 test images of clothes, 28 x 28 grey pixels, in
# 10 classes. Images are held as uint8 arrays of shape (N, C, H, W); here C = 1.

# %%
train_set, test_set = load_dataset("fashion-mnist")
classes = test_set.classes
print("train", train_set.images.shape, train_set.images.dtype, " test", test_set.images.shape)
first_of_class = np.array([np.flatnonzero(test_set.labels == k)[0] for k in range(10)])
show(plots.save_image_grid(test_set.images[first_of_class, 0] / 255, pictures / "classes.png",
                           titles=classes, columns=10, title="one test image of each class"))

# %% [markdown]
# ## Scores = Wx + b
#
# cnnlab ships a linear classifier trained on the whole training set (`cnnlab train --model
# linear`). It is `Flatten` then `Linear(784, 10)`: W has one row of 784 weights per class.
# Its input is the pixels scaled to [0, 1] and normalised with the training set's mean and
# standard deviation, which `inputs.transform` does.

# %%
linear_model, metadata, inputs = load_trained("pretrained:linear-fashion-mnist")
print(linear_model)
W, b = linear_model[1].weight.data, linear_model[1].bias.data
print("W", W.shape, " b", b.shape)

x = inputs.transform(test_set.images[:1])  # (1, 1, 28, 28) float32
scores = linear_model(cnnlab.tensor(x)).data[0]
by_hand = W @ x.reshape(-1) + b  # the lecture's formula, one image as a column of 784 numbers
print("scores from the model:", np.round(scores, 2))
print("largest difference from W @ x + b:", np.abs(scores - by_hand).max())

# %% [markdown]
# The ten scores of the first test image, the true class in orange: the classifier is right
# when the true class has the largest score.

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3), width_ratios=(1, 4))
left.imshow(test_set.images[0, 0], cmap="gray")
left.set_title(f"true class: {classes[test_set.labels[0]]}")
left.set_axis_off()
colours = ["tab:orange" if k == test_set.labels[0] else "tab:blue" for k in range(10)]
right.bar(range(10), scores, color=colours)
right.set_xticks(range(10), classes, rotation=30, ha="right")
right.set_ylabel("score")
plt.show()

# %% [markdown]
# ## Two losses
#
# The lecture's example: three classes (cat, car, frog) and an image of a cat with scores
# 3.2, 5.1 and -1.7. The multiclass SVM loss sums, over the wrong classes, how far each score
# comes within a margin of 1 of the true class's score:
# max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9. The softmax loss turns the scores
# into probabilities, exp(s_j) / sum_k exp(s_k), and takes -log of the true class's: 2.04.

# %%
cat_scores = cnnlab.tensor(np.array([[3.2, 5.1, -1.7]]))
cat = np.array([0])
print("probabilities:", np.round(F.softmax(cat_scores, dim=1).data, 3))
print(f"softmax loss {F.cross_entropy(cat_scores, cat).item():.2f}, "
      f"SVM loss {F.multiclass_hinge_loss(cat_scores, cat).item():.2f}")

# %% [markdown]
# A check the lecture recommends before training: with small random weights every score is
# near 0, so the softmax loss starts near log(10) = 2.30 and the SVM loss near 10 - 1 = 9
# (each of the 9 wrong classes is within the margin by about 1).

# %%
cnnlab.manual_seed(0)
untrained = build_model("linear")
for parameter in untrained.parameters():
    parameter.data *= 0.01  # "small" random weights
batch = inputs.transform(test_set.images[:1000])
with cnnlab.no_grad():
    start_scores = untrained(cnnlab.tensor(batch))
print(f"softmax loss {F.cross_entropy(start_scores, test_set.labels[:1000]).item():.3f}"
      f" (log 10 = {np.log(10):.3f}),"
      f" SVM loss {F.multiclass_hinge_loss(start_scores, test_set.labels[:1000]).item():.3f}")

# %% [markdown]
# ## Regularisation
#
# The full loss adds a penalty on the weights, L = data loss + lambda R(W) with
# R(W) = sum of W squared. It prefers small, spread-out weights among those that fit the data
# equally well. `nn.l2_penalty(model, lambda)` computes lambda R(W) over the weight matrices
# (biases excluded).

# %%
print("R(W) of the trained classifier:", nn.l2_penalty(linear_model, 1.0).item())
print("lambda R(W) with lambda = 1e-3:", nn.l2_penalty(linear_model, 1e-3).item())

# %% [markdown]
# ## Gradient descent
#
# Training follows the negative gradient of the loss, one minibatch at a time. Below, three
# linear classifiers are trained for 5 epochs on 10,000 training images with minibatches of
# 100: the softmax loss without regularisation, the same with a strong one (lambda = 0.05), and
# the SVM loss. `loss.backward()` fills each parameter's `.grad`; `optimizer.step()` moves the
# parameters against it.

# %%
subset = train_set.subset(np.arange(10_000))
mean, std = channel_stats(subset)
test_loader = DataLoader(test_set, 1000, mean=mean, std=std)


def train_linear(loss_name, reg, epochs=5, lr=0.01):
    model = build_model("linear", generator=np.random.default_rng(0))
    loss = loss_function(loss_name)
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loader = DataLoader(subset, 100, shuffle=True, seed=0, mean=mean, std=std)
    history = []
    for _ in range(epochs):
        for images, labels in loader:
            total = loss(model(cnnlab.tensor(images)), labels) + nn.l2_penalty(model, reg)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            history.append(total.item())
    accuracy = evaluate(model, test_loader, loss, classes)["accuracy"]
    return model, np.array(history), accuracy


runs = {
    "softmax, lambda 0": train_linear("cross_entropy", 0.0),
    "softmax, lambda 0.05": train_linear("cross_entropy", 0.05),
    "SVM, lambda 0": train_linear("hinge", 0.0),
}
for name, (_, _, accuracy) in runs.items():
    print(f"{name:22s} test accuracy {accuracy:.3f}")

# %% [markdown]
# The loss after each step (averaged over 20 steps): it falls fast at first and then slowly.
# With regularisation the loss levels off higher, since it includes lambda R(W). The SVM loss
# counts margins rather than probabilities, so its values do not compare with the softmax
# loss's.

# %%
figure, axes = plt.subplots(figsize=(8, 3.5))
for name, (_, history, _) in runs.items():
    smoothed = history.reshape(-1, 20).mean(axis=1)
    axes.plot(np.arange(len(smoothed)) * 20, smoothed, label=name)
axes.set_xlabel("step (minibatch of 100)")
axes.set_ylabel("training loss")
axes.set_yscale("log")
axes.legend()
plt.show()

# %% [markdown]
# ## The templates
#
# Each row of W, reshaped to 28 x 28, is a template: the score of a class is the dot product of
# the image with its template. Bright pixels push the score up, dark ones down. The shipped
# classifier's templates show blurred outlines of each kind of garment.

# %%
show(plots.save_image_grid(template_images(W, (1, 28, 28)), pictures / "templates.png",
                           titles=classes, columns=5,
                           title="the shipped linear classifier: rows of W, rescaled per class"))

# %% [markdown]
# The same for the classifiers trained above: without regularisation the templates are noisy
# (single pixels that happened to help on 10,000 images); a strong L2 penalty smooths them.

# %%
for name in ("softmax, lambda 0", "softmax, lambda 0.05"):
    weight = runs[name][0][1].weight.data
    show(plots.save_image_grid(template_images(weight, (1, 28, 28)),
                               pictures / f"templates {name}.png", titles=classes, columns=10,
                               title=f"templates, {name}"))

# %% [markdown]
# Where the shipped linear classifier goes wrong, on the whole test set: rows are true
# classes, columns predictions. Shirts, T-shirts, pullovers and coats are confused with each
# other: one template per class cannot tell them apart.

# %%
full = evaluate(linear_model, inputs.loader(test_set, 1000), loss_function("cross_entropy"),
                classes)
print(f"test accuracy {full['accuracy']:.4f}")
show(plots.plot_confusion_matrix(np.array(full["confusion_matrix"]), classes,
                                 pictures / "confusion.png", title="linear classifier, test set"))
