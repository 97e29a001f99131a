# %% [markdown]
# # 2. Backpropagation
#
# Gradient descent needs the gradient of the loss with respect to every parameter.
# Backpropagation gets them all in one backward pass through the graph of small functions that
# computed the loss: each node multiplies the gradient arriving from above by its own local
# gradient (the chain rule) and passes the result down. This notebook does it by hand on a tiny
# graph, then lets `cnnlab.Tensor` do the same, looks at the gradients of a real network, and
# checks them numerically.

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import cnnlab
from cnnlab.analysis import plots
from cnnlab.analysis.pictures import template_images
from cnnlab.data import load_dataset
from cnnlab.models import build_model
from cnnlab.nn import functional as F
from cnnlab.training import load_trained

pictures = Path(tempfile.mkdtemp(prefix="cnnlab-notebook-"))


def show(path):
    display(Image(filename=str(path)))

# %% [markdown]
# ## A graph by hand
#
# The lecture's first example: f(x, y, z) = (x + y) z at x = -2, y = 5, z = -4. The forward
# pass computes q = x + y = 3, then f = q z = -12. The backward pass starts from df/df = 1:
# the product node sends df/dq = z = -4 to q and df/dz = q = 3 to z; the sum node passes its
# gradient unchanged to both inputs, so df/dx = df/dy = -4.

# %%
x, y, z = -2.0, 5.0, -4.0
q = x + y  # forward
f = q * z
df_df = 1.0  # backward, node by node
df_dq, df_dz = z * df_df, q * df_df
df_dx, df_dy = 1.0 * df_dq, 1.0 * df_dq
print(f"f = {f}; df/dx = {df_dx}, df/dy = {df_dy}, df/dz = {df_dz}")

# %% [markdown]
# ## The same with cnnlab.Tensor
#
# A tensor created with `requires_grad=True` records every operation applied to it. Calling
# `backward()` on the result walks that graph once in reverse order, applying each node's
# local gradient, and leaves dF/dv in `v.grad` for each such tensor.

# %%
tx = cnnlab.tensor(np.array(x), requires_grad=True)
ty = cnnlab.tensor(np.array(y), requires_grad=True)
tz = cnnlab.tensor(np.array(z), requires_grad=True)
tf = (tx + ty) * tz
tf.backward()
print(f"f = {tf.item()}; df/dx = {tx.grad}, df/dy = {ty.grad}, df/dz = {tz.grad}")

# %% [markdown]
# A larger graph: a sigmoid neuron, 1 / (1 + exp(-(w0 x0 + w1 x1 + b))), built from
# multiplications, a sum, a negation, exp, an addition and a division. The sigmoid's local
# gradient is sigma (1 - sigma), so the gradient for b is that and the gradient for each w_i
# is x_i times it.

# %%
w = cnnlab.tensor(np.array([2.0, -3.0]), requires_grad=True)
inputs = cnnlab.tensor(np.array([-1.0, -2.0]))
bias = cnnlab.tensor(np.array(-3.0), requires_grad=True)
out = 1 / (1 + (-(w * inputs).sum() - bias).exp())
out.backward()
sigma = out.item()
print(f"output {sigma:.3f}; dout/dw = {np.round(w.grad, 3)}, dout/db = {bias.grad:.3f}")
print(f"by hand: sigma (1 - sigma) = {sigma * (1 - sigma):.3f}, times x = "
      f"{np.round(sigma * (1 - sigma) * inputs.data, 3)}")

# %% [markdown]
# ## Gradients have the shapes of the parameters
#
# Now a real network: an MLP (784 -> 512 -> 256 -> 10) on 64 Fashion-MNIST images, softmax
# loss. After `loss.backward()` every parameter's `.grad` is an array of exactly its own
# shape, whatever the batch size: gradients from the 64 images are summed into it.

# %%
train_set, test_set = load_dataset("fashion-mnist")
_, _, pixel_inputs = load_trained("pretrained:linear-fashion-mnist")  # for its normalisation
images = pixel_inputs.transform(train_set.images[:64])
labels = train_set.labels[:64]

mlp = build_model("mlp", generator=np.random.default_rng(0))
loss = F.cross_entropy(mlp(cnnlab.tensor(images)), labels)
loss.backward()
print(f"loss {loss.item():.3f}")
for name, parameter in mlp.named_parameters():
    print(f"{name:10s} parameter {str(parameter.shape):12s} gradient {parameter.grad.shape}")

# %% [markdown]
# A gradient of a linear classifier's W has W's shape (10, 784), so each row can be shown as an
# image, like the templates. For the softmax loss, row k is the mean over the batch of
# (p_k - [y = k]) x, with p_k the predicted probability of class k: a step against the
# gradient adds the images of class k to template k and subtracts those that class k wrongly
# claimed.

# %%
cnnlab.manual_seed(0)
linear = build_model("linear")
F.cross_entropy(linear(cnnlab.tensor(images)), labels).backward()
gradient = linear[1].weight.grad
print("W", linear[1].weight.shape, " dL/dW", gradient.shape)
show(plots.save_image_grid(template_images(-gradient, (1, 28, 28)), pictures / "gradient.png",
                           titles=train_set.classes, columns=10,
                           title="minus dL/dW for 64 training images, one row per class"))

# %% [markdown]
# ## Checking gradients numerically
#
# A derivative is a limit, (f(v + h) - f(v - h)) / 2h for a small h. It is slow (two forward
# passes per number) but needs no backward at all, so it checks one. First by hand, for the
# sigmoid neuron's w0:

# %%
def neuron(w0):
    return 1 / (1 + np.exp(-(w0 * -1.0 + -3.0 * -2.0 + -3.0)))  # w1 = -3, x = (-1, -2), b = -3


h = 1e-5
print(f"numerical {(neuron(2.0 + h) - neuron(2.0 - h)) / (2 * h):.6f}, "
      f"backward {w.grad[0]:.6f}")

# %% [markdown]
# The step h trades two errors: too large and the difference quotient is not the derivative,
# too small and rounding in float64 dominates. The relative error of the numerical derivative
# of w0 against the analytic one, for h from 1e-1 to 1e-13:

# %%
steps = 10.0 ** -np.arange(1, 14)
numerical = (neuron(2.0 + steps) - neuron(2.0 - steps)) / (2 * steps)
error = np.abs(numerical - w.grad[0]) / abs(w.grad[0])
figure, axes = plt.subplots(figsize=(6, 3.5))
axes.loglog(steps, error, "o-")
axes.set_xlabel("h")
axes.set_ylabel("relative error")
axes.set_title("central difference against backward(), float64")
plt.show()

# %% [markdown]
# `cnnlab.gradcheck(fn, inputs)` does this for every element of every input that requires a
# gradient, in float64, after projecting the output onto a random direction. Here it checks a
# small convolution, max pooling, ReLU and softmax loss together: `True` means every gradient
# matched.

# %%
generator = np.random.default_rng(0)
image = cnnlab.tensor(generator.standard_normal((2, 1, 6, 6)), requires_grad=True)
weight = cnnlab.tensor(generator.standard_normal((3, 1, 3, 3)), requires_grad=True)
head = cnnlab.tensor(generator.standard_normal((4, 27)), requires_grad=True)


def network(image, weight, head):
    maps = F.max_pool2d(F.relu(F.conv2d(image, weight, padding=1)), 2)  # (2, 3, 3, 3)
    return F.cross_entropy(F.linear(maps.reshape(2, 27), head), np.array([1, 3]))


print("gradcheck:", cnnlab.gradcheck(network, (image, weight, head)))

# %% [markdown]
# A wrong backward is caught. `detach()` cuts a tensor out of the graph, so in v * v.detach()
# backward sees only one of the two factors and reports v where the derivative of v squared is
# 2v.

# %%
v = cnnlab.tensor(generator.standard_normal(5), requires_grad=True)
print("gradcheck of v * v.detach():", cnnlab.gradcheck(lambda v: v * v.detach(), v))
try:
    cnnlab.gradcheck(lambda v: v * v.detach(), v, raise_exception=True)
except ValueError as error:
    print(error)
