"""Every path through conv2d and pooling, each forced by a named case and compared with PyTorch in
float64, forward and backward.

The random shapes of test_ops_conv_pool.py reach most paths in most runs; these cases reach each
one in every run. A case's name says which path it forces, by the code's own conditions
(cnnlab/ops/conv.py, cnnlab/ops/pool.py); where the code shows which path it took (the kept
column matrix, the cache blocks it asks for, the accumulating products it calls, the index
dtype), the test asserts that too. Every case runs with the batch in one cache block, in blocks
of one image and in blocks of two, and on one thread and on three (five images: shares of one
and two images). numpy.empty is replaced, in the two modules, by one that returns NaN (or all
bits set): a result that reads memory it never wrote cannot pass by luck. Also: only the
gradients asked for are computed, and integer inputs are computed in float32.
"""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlab
from cnnlab import threads
from cnnlab.blas import BLAS
from cnnlab.ops import conv, pool
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.pool import AvgPool2d, MaxPool2d
from test_ops_conv_pool import conv2d_naive, run, torch_run, with_layout

from helpers import relative_error

TOLERANCE = 1e-12  # float64 against PyTorch's float64: only the order of the sums differs
BATCH = 5


class PoisonedNumpy:
    """numpy, except that empty() returns arrays full of NaN (floats) or of set bits (others)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float, **options):
        array = np.empty(shape, dtype, **options)
        if array.dtype.kind == "f":
            array.fill(np.nan)
        else:
            array.view(np.uint8).fill(0xFF)
        return array


@pytest.fixture(autouse=True)
def poisoned_empty(monkeypatch):
    monkeypatch.setattr(conv, "np", PoisonedNumpy())
    monkeypatch.setattr(pool, "np", PoisonedNumpy())


@pytest.fixture(params=[1, 3], ids=["1 thread", "3 threads"])
def thread_count(request, monkeypatch):
    """Every pass split over `count` threads however small (shares of 1, 2, 2 of 5 images)."""
    monkeypatch.setattr(threads, "MIN_BYTES", 0)
    before = cnnlab.get_num_threads()
    cnnlab.set_num_threads(request.param)
    yield request.param
    cnnlab.set_num_threads(before)


@pytest.fixture
def blocks(monkeypatch):
    """Every cache_blocks(images, bytes_per_image) call of conv's passes, with its blocks."""
    calls, cache_blocks = [], conv.cache_blocks

    def recording(images, bytes_per_image):
        result = cache_blocks(images, bytes_per_image)
        calls.append((images, bytes_per_image, result))
        return result

    monkeypatch.setattr(conv, "cache_blocks", recording)
    return calls


@pytest.fixture
def products(monkeypatch):
    """The output shape of every accumulating GEMM (out += a @ b) the ops call."""
    shapes, gemm_accumulate = [], BLAS.gemm_accumulate

    def recording(a, b, out):
        shapes.append(out.shape)
        return gemm_accumulate(a, b, out)

    monkeypatch.setattr(BLAS, "gemm_accumulate", recording)
    return shapes


# ----- conv2d ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConvCase:
    c_in: int
    c_out: int
    hw: tuple
    kernel: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    bias: bool = True
    layout: str = "nchw"  # of the input, see test_ops_conv_pool.with_layout

    @property
    def width(self):  # columns of the column matrix: KH * KW * C_in
        return self.kernel[0] * self.kernel[1] * self.c_in


CONV_CASES = {
    # The weight gradient: the forward pass keeps the column matrix below 16 input channels and
    # the backward pass remakes it from the padded input from 16; the product is (C_out x width)
    # when C_out <= KH * KW * C_in, else (width x C_out).
    "kept columns, (C_out x width) product": ConvCase(3, 4, (6, 5), (3, 3), padding=(1, 1)),
    "kept columns, (width x C_out) product (C_out > KH*KW*C_in)": ConvCase(2, 9, (5, 6), (2, 2)),
    "kept columns at the threshold (C_in = 15)": ConvCase(15, 4, (4, 5), (2, 2)),
    "remade columns (C_in = 16), (C_out x width) product":
        ConvCase(16, 5, (5, 4), (3, 2), padding=(0, 1)),
    "remade columns, (width x C_out) product, 1x1 kernel (tap (0, 0) only)":
        ConvCase(16, 20, (4, 5), (1, 1)),
    "remade columns from strided windows, stride (2, 1), padding (1, 2)":
        ConvCase(17, 3, (7, 6), (3, 3), stride=(2, 1), padding=(1, 2)),
    # The input gradient: stride 1 sums shifted row ranges on the padded grid; other strides
    # go through column form and col2im.
    "shifted rows input gradient, kernel covers the padded input (one output pixel)":
        ConvCase(2, 3, (4, 3), (6, 5), padding=(1, 1)),
    "col2im input gradient, stride (2, 2), padding (1, 1)":
        ConvCase(3, 4, (7, 8), (3, 3), stride=(2, 2), padding=(1, 1)),
    "col2im input gradient, one axis strided (1, 3), padding (0, 2)":
        ConvCase(2, 3, (5, 7), (2, 3), stride=(1, 3), padding=(0, 2)),
    "col2im input gradient, stride above the kernel: windows skip pixels":
        ConvCase(2, 3, (8, 7), (2, 1), stride=(3, 2)),
    "no bias": ConvCase(3, 4, (5, 5), (3, 3), padding=(1, 1), bias=False),
    "NHWC input without padding: used in place, not copied":
        ConvCase(3, 4, (5, 6), (2, 3), layout="nhwc"),
    "input with gaps without padding: copied to NHWC":
        ConvCase(3, 4, (5, 6), (2, 3), layout="gaps"),
}


def conv_arrays(case, rng):
    x = rng.standard_normal((BATCH, case.c_in, *case.hw))
    weight = rng.standard_normal((case.c_out, case.c_in, *case.kernel))
    arrays = [x, weight] + ([rng.standard_normal(case.c_out)] if case.bias else [])
    options = {"stride": case.stride, "padding": case.padding}
    out_shape = TF.conv2d(torch.from_numpy(x), torch.from_numpy(weight), **options).shape
    upstream = rng.standard_normal(tuple(out_shape))
    return arrays, upstream


def forward_bytes_per_image(case, out_shape):
    """What conv's forward pass hands cache_blocks per image: its rows of the column matrix."""
    return out_shape[2] * out_shape[3] * case.width * np.dtype(np.float64).itemsize


@pytest.mark.parametrize("blocking", ["whole share", "one image", "two images"])
@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv2d_branch_matches_torch(name, blocking, thread_count, blocks, rng, monkeypatch):
    case = CONV_CASES[name]
    arrays, upstream = conv_arrays(case, rng)
    options = {"stride": case.stride, "padding": case.padding}
    reference, reference_grads = torch_run(lambda *t: TF.conv2d(*t, **options), arrays, upstream)
    if blocking != "whole share":
        per_image = forward_bytes_per_image(case, upstream.shape)
        monkeypatch.setattr(conv, "BLOCK_BYTES", 1 if blocking == "one image" else 2 * per_image)

    function = Conv2d([True] * len(arrays))
    x = with_layout(arrays[0], case.layout)
    out = function.forward(x, *arrays[1:], **options)
    forward_blocks = [block for _, _, result in blocks for block in result]
    grads = function.backward(upstream)

    assert relative_error(out, reference) <= TOLERANCE
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        assert relative_error(grad, reference_grad) <= TOLERANCE
    # The blocking asked for is the blocking taken.
    sizes = [block.stop - block.start for _, _, result in blocks for block in result]
    if blocking == "one image":
        assert set(sizes) == {1}
    elif blocking == "two images":
        assert max(block.stop - block.start for block in forward_blocks) == 2
        assert len(forward_blocks) >= 3  # five images: 2 + 2 + 1, or shares split further
    else:
        assert all(result == [images] for images, _, result in blocks)
        assert len(blocks) >= thread_count  # one call per share (and pass)
    # The memory layout asked for is the path taken (the saved padded input is the input).
    assert np.shares_memory(function.padded, x) == (case.layout == "nhwc")


@pytest.mark.parametrize("name", list(CONV_CASES))
def test_conv2d_takes_the_branch_its_name_names(name, rng, blocks, products):
    """What the code shows of its choices: the kept columns (an attribute), the weight-gradient
    product (its accumulated output's shape), and the input-gradient path (only the stride-1
    path asks for cache blocks of its own)."""
    case = CONV_CASES[name]
    arrays, upstream = conv_arrays(case, rng)
    options = {"stride": case.stride, "padding": case.padding}

    weight_only = Conv2d([False, True])
    weight_only.forward(arrays[0], arrays[1], **options)
    assert (weight_only.columns is not None) == (case.c_in < 16)
    products.clear()
    weight_only.backward(upstream)
    wide = case.c_out > case.width  # the code's condition for the (width x C_out) product
    assert set(products) == {(case.width, case.c_out) if wide else (case.c_out, case.width)}

    input_only = Conv2d([True, False])
    input_only.forward(arrays[0], arrays[1], **options)
    assert input_only.columns is None and input_only.padded is None
    blocks.clear()
    products.clear()
    input_only.backward(upstream)
    shifted_rows = bool(blocks)  # the col2im path does no cache blocking
    assert shifted_rows == (case.stride == (1, 1))
    taps = case.kernel[0] * case.kernel[1]
    assert len(products) == (taps - 1 if shifted_rows else 0)  # tap (0, 0) is a plain matmul


def test_the_conv_cases_cover_every_combination_of_weight_gradient_paths():
    paths = {(case.c_in < 16, case.c_out > case.width) for case in CONV_CASES.values()}
    assert paths == {(True, True), (True, False), (False, True), (False, False)}
    assert {case.stride == (1, 1) for case in CONV_CASES.values()} == {True, False}


def test_conv2d_skips_gradients_nobody_needs(rng):
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    _, grads = run(Conv2d, [x, weight], np.ones((2, 4, 4, 4)), needs=[False, True])
    assert grads[0] is None and grads[1].shape == weight.shape
    _, grads = run(Conv2d, [x, weight], np.ones((2, 4, 4, 4)), needs=[True, False])
    assert grads[1] is None and grads[0].shape == x.shape
    bias = rng.standard_normal(4)
    _, grads = run(Conv2d, [x, weight, bias], np.ones((2, 4, 4, 4)), needs=[False, False, True])
    assert grads[0] is None and grads[1] is None
    np.testing.assert_allclose(grads[2], np.full(4, 2 * 4 * 4))
    _, grads = run(Conv2d, [x, weight, bias], np.ones((2, 4, 4, 4)), needs=[False, True, False])
    assert grads[0] is None and grads[1].shape == weight.shape and grads[2] is None
    function = Conv2d([False, False])  # no graph: nothing saved for a backward
    function.forward(x, weight, stride=(1, 1), padding=(0, 0))
    assert function.padded is None and function.weight is None


def test_integer_inputs_are_computed_in_float32(rng):
    x = rng.integers(0, 256, (2, 3, 6, 5)).astype(np.uint8)
    weight = rng.integers(-3, 4, (4, 3, 3, 3)).astype(np.int32)  # 4 bytes, but not a float
    out = Conv2d([False, False]).forward(x, weight, stride=(1, 1), padding=(1, 1))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, conv2d_naive(x, weight, None, (1, 1), (1, 1)))  # exact
    for function_class in (MaxPool2d, AvgPool2d):
        pooled = function_class([False]).forward(x.astype(np.int64), kernel_size=(2, 2),
                                                 stride=(2, 2), padding=(0, 0))
        assert pooled.dtype == np.float32


# ----- pooling --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class PoolCase:
    kind: str
    hw: tuple
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0)
    values: str = "normal"  # "negative": all below zero; "ties": small integers, many equal


POOL_CASES = {
    # The gradient's scatter: windows that tile the padded input exactly write every pixel once
    # (an uninitialised buffer); others start from zeros; overlapping windows add, others copy.
    "max, exact tiling (stride = kernel, divides the input)":
        PoolCase("max", (8, 6), (2, 2), (2, 2)),
    "max, exact tiling of the padded input": PoolCase("max", (6, 4), (2, 2), (2, 2), (1, 1)),
    "max, stride = kernel leaving a remainder": PoolCase("max", (7, 5), (2, 2), (2, 2)),
    # stride = kernel = 3, padding 1: one axis tiles exactly, along the other the last real
    # row (column) is in no window and its gradient must be 0, not left unwritten.
    "max, the last real row in no window, the columns tiled exactly":
        PoolCase("max", (6, 4), (3, 3), (3, 3), (1, 1)),
    "max, the last real column in no window, the rows tiled exactly":
        PoolCase("max", (4, 6), (3, 3), (3, 3), (1, 1)),
    "max, stride above the kernel: windows skip pixels": PoolCase("max", (8, 8), (2, 2), (3, 3)),
    "max, overlapping windows, padding, all inputs negative (padding is -inf)":
        PoolCase("max", (6, 7), (3, 3), (1, 1), (1, 1), "negative"),
    "max, windows overlap along one axis only": PoolCase("max", (7, 6), (3, 2), (1, 2), (1, 0)),
    "max, ties: the first maximum in row-major order takes the gradient":
        PoolCase("max", (7, 7), (3, 3), (2, 2), (1, 1), "ties"),
    "max, more than 256 taps (int32 index)": PoolCase("max", (17, 18), (16, 17), (1, 1)),
    "max, 256 taps: the most a uint8 index holds": PoolCase("max", (16, 18), (16, 16), (1, 1)),
    "max, 257 taps: one more than a uint8 index holds": PoolCase("max", (2, 259), (1, 257),
                                                                   (1, 1)),
    "max, 1x1 kernel": PoolCase("max", (4, 5), (1, 1), (1, 1)),
    "avg, exact tiling": PoolCase("avg", (8, 6), (2, 2), (2, 2)),
    "avg, exact tiling of the padded input (zeros counted)": PoolCase("avg", (6, 4), (2, 2), (2, 2),
                                                                      (1, 1)),
    "avg, stride = kernel leaving a remainder": PoolCase("avg", (7, 5), (2, 2), (2, 2)),
    "avg, stride above the kernel": PoolCase("avg", (8, 8), (2, 2), (3, 3)),
    "avg, overlapping windows, padding (zeros counted in the divisor)":
        PoolCase("avg", (6, 7), (3, 3), (1, 1), (1, 1), "negative"),
    "avg, windows overlap along one axis only": PoolCase("avg", (7, 6), (3, 2), (1, 2), (1, 0)),
}
POOLS = {"max": (MaxPool2d, TF.max_pool2d), "avg": (AvgPool2d, TF.avg_pool2d)}


def pool_input(case, rng):
    shape = (BATCH, 3, *case.hw)
    if case.values == "ties":
        return np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float64)
    if case.values == "negative":
        return -rng.uniform(1, 2, shape)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("name", list(POOL_CASES))
def test_pool_branch_matches_torch(name, thread_count, rng):
    case = POOL_CASES[name]
    function_class, torch_fn = POOLS[case.kind]
    options = {"kernel_size": case.kernel, "stride": case.stride, "padding": case.padding}
    x = pool_input(case, rng)
    out_shape = torch_fn(torch.from_numpy(x), **options).shape
    upstream = rng.standard_normal(tuple(out_shape))
    reference, (reference_grad,) = torch_run(lambda t: torch_fn(t, **options), [x], upstream)

    function = function_class([True])
    out = function.forward(x, **options)
    (grad,) = function.backward(upstream)
    assert relative_error(out, reference) <= TOLERANCE
    assert relative_error(grad, reference_grad) <= TOLERANCE
    if case.values == "ties":  # ties decided as PyTorch decides them: the same pixels, exactly
        np.testing.assert_array_equal(grad != 0, reference_grad != 0)
    if case.kind == "max":
        taps = case.kernel[0] * case.kernel[1]
        assert function.index.dtype == (np.uint8 if taps <= 256 else np.int32)

    # Without a graph, max pooling takes its other path: no index, no gathered taps.
    no_graph = function_class([False])
    np.testing.assert_array_equal(no_graph.forward(x, **options), out)
    assert not hasattr(no_graph, "index")
