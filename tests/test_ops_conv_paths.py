"""conv2d's two backward paths each reached on purpose, each equal to PyTorch.

What these tests prove:
- a stride-1 conv with C_out <= C_in takes both gradients from the upstream gradient's columns
  (`Conv2d._gradients_from_columns`), for every padding up to KH - 1 and any kernel shape; one
  with C_out > C_in, another stride, or a single gradient needed takes the other path;
- either way the output and every gradient equal PyTorch's (float64 and float32), for inputs
  and upstream gradients in the layouts networks hand over (NCHW, NHWC-physical), with one
  thread and with two (each thread sums its share of the weight gradient);
- the gradient-columns path keeps no padded copy of the input (the input's memory is kept);
- all of it whichever OpenBLAS kernel BLAS.product sees (SkylakeX: stacks of small products,
  the bias added after; Haswell: one product onto the bias).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlab
from cnnlab.blas import BLAS
from cnnlab.ops.conv import Conv2d

from helpers import TOLERANCE, relative_error


@pytest.fixture(params=["SkylakeX", "Haswell"], autouse=True)
def core(request, monkeypatch):
    monkeypatch.setattr(BLAS, "core", request.param)
    return request.param


def nhwc(array):
    """The same (N, C, H, W) values, NHWC in memory (what cnnlab's ops return)."""
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def conv_against_torch(shape, c_out, kernel, padding, stride, dtype, layout, seed=0):
    """Our conv's output and gradients against PyTorch in float64; returns the Conv2d."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    weight = rng.standard_normal((c_out, shape[1], *kernel)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    function = Conv2d([True, True, True])
    out = function.forward(layout(x), weight, bias, stride=stride, padding=padding)
    upstream = rng.standard_normal(out.shape).astype(dtype)
    grads = function.backward(layout(upstream))
    tensors = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, weight, bias)]
    reference = TF.conv2d(*tensors, stride=stride, padding=padding)
    reference.backward(torch.from_numpy(upstream.astype(np.float64)))
    assert relative_error(out, reference.detach().numpy()) <= TOLERANCE[dtype]
    for grad, tensor in zip(grads, tensors, strict=True):
        assert grad.dtype == dtype and grad.shape == tensor.shape
        assert relative_error(grad, tensor.grad.numpy()) <= TOLERANCE[dtype]
    return function


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", [np.ascontiguousarray, nhwc])
@pytest.mark.parametrize(
    "shape, c_out, kernel, padding",
    [((4, 32, 8, 8), 32, (3, 3), (1, 1)),  # cifar-cnn's 32->32, smaller
     ((3, 6, 7, 9), 4, (3, 2), (0, 1)),
     ((2, 5, 9, 6), 5, (5, 3), (4, 2)),  # the largest padding: KH - 1, KW - 1
     ((2, 3, 5, 5), 2, (1, 1), (0, 0))],
)  # fmt: skip
def test_stride_1_and_no_more_outputs_than_inputs_use_the_gradient_columns(
    shape, c_out, kernel, padding, dtype, layout, threads
):
    before = cnnlab.get_num_threads()
    cnnlab.set_num_threads(threads)
    try:
        function = conv_against_torch(shape, c_out, kernel, padding, (1, 1), dtype, layout)
    finally:
        cnnlab.set_num_threads(before)
    assert function.from_gradient_columns
    assert function.padded is None and function.columns is None
    assert function.x_nhwc.shape == (shape[0], *shape[2:], shape[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "shape, c_out, kernel, padding, stride",
    [((3, 4, 8, 8), 6, (3, 3), (1, 1), (1, 1)),  # more outputs than inputs
     ((3, 6, 9, 9), 4, (3, 3), (1, 1), (2, 2)),  # stride 2
     ((2, 4, 6, 6), 4, (2, 2), (2, 2), (1, 1)),  # padding beyond KH - 1
     ((2, 4, 6, 6), 4, (3, 2), (1, 2), (1, 1)),  # padding beyond KW - 1 only
     ((2, 4, 6, 7), 4, (3, 3), (1, 1), (1, 2))],  # one axis strided
)  # fmt: skip
def test_other_convs_keep_the_shifted_products_path(shape, c_out, kernel, padding, stride, dtype):
    function = conv_against_torch(shape, c_out, kernel, padding, stride, dtype, nhwc)
    assert not function.from_gradient_columns and function.x_nhwc is None


def test_a_conv_whose_input_needs_no_gradient_keeps_the_weight_gradients_path():
    rng = np.random.default_rng(1)
    x, weight = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((3, 4, 3, 3))
    function = Conv2d([False, True])
    out = function.forward(x, weight, padding=(1, 1))
    grads = function.backward(np.ones_like(out))
    assert not function.from_gradient_columns and grads[0] is None
    tensors = [torch.tensor(x), torch.tensor(weight, requires_grad=True)]
    TF.conv2d(*tensors, padding=1).sum().backward()
    assert relative_error(grads[1], tensors[1].grad.numpy()) <= 1e-8


@pytest.mark.parametrize("c_out", [3, 6], ids=["gradient columns", "shifted products"])
def test_each_gradient_comes_back_in_its_operands_dtype(c_out):
    """A float32 input with float64 weights computes in float64 and hands each gradient back
    in its operand's dtype, on both backward paths (as PyTorch's autograd would)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    weight = rng.standard_normal((c_out, 4, 3, 3))
    function = Conv2d([True, True])
    out = function.forward(x, weight, padding=(1, 1))
    assert out.dtype == np.float64 and function.from_gradient_columns == (c_out <= 4)
    upstream = rng.standard_normal(out.shape)
    grads = function.backward(upstream)
    assert (grads[0].dtype, grads[1].dtype) == (np.float32, np.float64)
    tensors = [torch.tensor(x.astype(np.float64), requires_grad=True),
               torch.tensor(weight, requires_grad=True)]
    TF.conv2d(*tensors, padding=1).backward(torch.from_numpy(upstream))
    assert relative_error(grads[0], tensors[0].grad.numpy()) <= 1e-6
    assert relative_error(grads[1], tensors[1].grad.numpy()) <= 1e-8


def test_to_nhwc_returns_a_view_of_an_nhwc_array_and_copies_otherwise():
    """What lets a conv read the previous layer's NHWC output without a copy."""
    from cnnlab.ops.conv import to_nhwc

    x = nhwc(np.random.default_rng(3).standard_normal((2, 3, 4, 5)).astype(np.float32))
    assert np.shares_memory(to_nhwc(x), x)
    assert np.shares_memory(to_nhwc(x, np.float32), x)
    for copied in (to_nhwc(x, np.float64), to_nhwc(np.ascontiguousarray(x))):
        assert not np.shares_memory(copied, x) and copied.flags.c_contiguous
        np.testing.assert_array_equal(copied, x.transpose(0, 2, 3, 1).astype(copied.dtype))
