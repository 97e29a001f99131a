"""Conv2d, MaxPool2d and AvgPool2d primitives on plain ndarrays.

What these tests prove:
- forward and every gradient equal PyTorch's (torch.nn.functional on torch.from_numpy) for many
  random shapes, strides and paddings, in float64 (rel. err <= 1e-8) and float32 (<= 2e-4);
- inputs and upstream gradients of any memory layout give the same numbers (contiguous NCHW,
  NHWC-physical transposed views, views with gaps);
- the analytic gradients match central differences (float64, small inputs);
- conv2d equals a naive loop reference, and conv2d / max_pool2d are translation equivariant;
- bad shapes raise ValueError naming the op, the expected and the received shape, and an empty
  output quotes the size formula with the numbers.
Each path through the two ops, forced by name: test_conv_pool_branches.py.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlab.blas import BLAS
from cnnlab.ops.conv import Conv2d
from cnnlab.ops.pool import AvgPool2d, MaxPool2d

TOLERANCE = {np.float64: 1e-8, np.float32: 2e-4}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----- helpers ------------------------------------------------------------------------------
def relative_error(ours, reference):
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = np.abs(reference).max() if reference.size else 0.0
    diff = np.abs(ours - reference).max() if reference.size else 0.0
    return diff / scale if scale > 0 else diff


def with_layout(array, layout):
    """The same (N, C, H, W) values in another memory layout."""
    if layout == "nchw":
        return np.ascontiguousarray(array)
    if layout == "nhwc":  # logical NCHW, physical NHWC: what cnnlab's ops return
        return np.ascontiguousarray(array.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if layout == "gaps":  # a view with gaps along W
        n, c, h, w = array.shape
        wide = np.zeros((n, c, h, 2 * w), dtype=array.dtype)
        wide[..., ::2] = array
        return wide[..., ::2]
    raise ValueError(layout)


def conv2d_naive(x, weight, bias, stride, padding):
    """Loop reference: out[n, o, y, x] = sum_{c,i,j} x_pad[n, c, yS + i, xS + j] w[o, c, i, j]."""
    n, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    padded = np.zeros((n, x.shape[1], h + 2 * ph, w + 2 * pw))
    padded[:, :, ph : ph + h, pw : pw + w] = x
    h_out, w_out = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, c_out, h_out, w_out))
    for b in range(n):
        for o in range(c_out):
            for y in range(h_out):
                for x_ in range(w_out):
                    window = padded[b, :, y * sh : y * sh + kh, x_ * sw : x_ * sw + kw]
                    out[b, o, y, x_] = np.sum(window * weight[o]) + (0 if bias is None else bias[o])
    return out


def numeric_gradient(fn, array, upstream, eps=1e-6):
    """Central differences of sum(fn(array) * upstream) with respect to array (float64)."""
    grad = np.zeros_like(array)
    flat, grad_flat = array.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        saved = flat[k]
        flat[k] = saved + eps
        plus = np.sum(fn(array) * upstream)
        flat[k] = saved - eps
        minus = np.sum(fn(array) * upstream)
        flat[k] = saved
        grad_flat[k] = (plus - minus) / (2 * eps)
    return grad


def run(function_class, arrays, upstream, needs=None, **options):
    function = function_class(needs if needs is not None else [True] * len(arrays))
    out = function.forward(*arrays, **options)
    return out, function.backward(upstream)


def torch_run(torch_fn, arrays, upstream, **options):
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).requires_grad_() for a in arrays]
    out = torch_fn(*tensors, **options)
    out.backward(torch.from_numpy(np.ascontiguousarray(upstream)))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def assert_close(ours, reference, dtype):
    assert ours.dtype == dtype, (ours.dtype, dtype)
    error = relative_error(ours, reference)
    assert error <= TOLERANCE[dtype], f"relative error {error:.3g}"


# ----- conv2d -------------------------------------------------------------------------------
@st.composite
def conv_cases(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.sampled_from([h for h in (3, 5, 7, 9, 11) if h + 2 * ph >= kh]))
    w = draw(st.sampled_from([w for w in (3, 5, 7, 9, 11) if w + 2 * pw >= kw]))
    return {
        "n": draw(st.integers(1, 3)),
        # From 16 input channels the weight gradient remakes the columns from the padded
        # input instead of keeping them: both paths.
        "c_in": draw(st.one_of(st.integers(1, 5), st.integers(16, 18))),
        "c_out": draw(st.integers(1, 5)),
        "hw": (h, w),
        "kernel": (kh, kw),
        "stride": (sh, sw),
        "padding": (ph, pw),
        "bias": draw(st.booleans()),
        "layout": draw(st.sampled_from(["nchw", "nhwc", "gaps"])),
        "grad_layout": draw(st.sampled_from(["nchw", "nhwc"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@SETTINGS
@given(case=conv_cases())
def test_conv2d_matches_torch(dtype, case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c_in"], *case["hw"])).astype(dtype)
    weight = rng.standard_normal((case["c_out"], case["c_in"], *case["kernel"])).astype(dtype)
    arrays = [x, weight] + (
        [rng.standard_normal(case["c_out"]).astype(dtype)] if case["bias"] else []
    )
    options = {"stride": case["stride"], "padding": case["padding"]}
    out_shape = TF.conv2d(*[torch.from_numpy(a) for a in arrays], **options).shape
    upstream = rng.standard_normal(tuple(out_shape)).astype(dtype)
    # PyTorch in float64 on the same (float32) numbers: the exact answer. Against PyTorch's own
    # float32 a sum that cancels (a bias gradient of one channel, say) fails a tolerance
    # relative to its small result through PyTorch's rounding, not ours.
    reference, reference_grads = torch_run(lambda *t: TF.conv2d(*t, **options),
                                           [a.astype(np.float64) for a in arrays],
                                           upstream.astype(np.float64))
    ours_inputs = [with_layout(x, case["layout"])] + arrays[1:]
    out, grads = run(Conv2d, ours_inputs, with_layout(upstream, case["grad_layout"]), **options)
    assert_close(out, reference, dtype)
    assert len(grads) == len(arrays)
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        assert grad.shape == reference_grad.shape
        assert_close(grad, reference_grad, dtype)


def test_conv2d_matches_naive_loops():
    rng = np.random.default_rng(1)
    for stride, padding, kernel in [((1, 1), (1, 1), (3, 3)), ((2, 3), (2, 0), (4, 2))]:
        x = rng.standard_normal((2, 3, 9, 8))
        weight = rng.standard_normal((4, 3, *kernel))
        bias = rng.standard_normal(4)
        out = Conv2d([False] * 3).forward(x, weight, bias, stride=stride, padding=padding)
        expected = conv2d_naive(x, weight, bias, stride, padding)
        assert relative_error(out, expected) <= 1e-12


@pytest.mark.parametrize("stride, padding, c_in", [
    ((1, 1), (1, 0), 2), ((2, 1), (0, 2), 2), ((3, 2), (1, 1), 2), ((1, 1), (1, 1), 16)])
def test_conv2d_gradients_match_central_differences(stride, padding, c_in):
    rng = np.random.default_rng(2)
    x, weight, bias = (
        rng.standard_normal((2, c_in, 5, 6)),
        rng.standard_normal((3, c_in, 3, 2)),
        rng.standard_normal(3),
    )
    options = {"stride": stride, "padding": padding}

    def conv(x=x, weight=weight, bias=bias):
        return Conv2d([False] * 3).forward(x, weight, bias, **options)

    upstream = rng.standard_normal(conv().shape)
    _, grads = run(Conv2d, [x, weight, bias], upstream, **options)
    numeric = [
        numeric_gradient(lambda a: conv(x=a), x.copy(), upstream),
        numeric_gradient(lambda a: conv(weight=a), weight.copy(), upstream),
        numeric_gradient(lambda a: conv(bias=a), bias.copy(), upstream),
    ]
    for analytic, expected in zip(grads, numeric, strict=True):
        assert relative_error(analytic, expected) <= 1e-7


def test_conv2d_dtypes_and_output_layout():
    rng = np.random.default_rng(4)
    x32 = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w32 = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    out, grads = run(
        Conv2d, [x32, w32], np.ones((2, 5, 8, 8), np.float32), padding=(1, 1), stride=(1, 1)
    )
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous  # logical NCHW, physical NHWC
    out64 = Conv2d([False, False]).forward(
        x32, w32.astype(np.float64), stride=(1, 1), padding=(0, 0)
    )
    assert out64.dtype == np.float64


def test_conv2d_translation_equivariance():
    rng = np.random.default_rng(5)
    x, weight = rng.standard_normal((1, 2, 16, 16)), rng.standard_normal((3, 2, 3, 3))
    shifted = np.roll(x, (2, 3), axis=(2, 3))
    conv = Conv2d([False, False])
    out = conv.forward(x, weight, stride=(1, 1), padding=(1, 1))
    out_shifted = Conv2d([False, False]).forward(shifted, weight, stride=(1, 1), padding=(1, 1))
    # Away from the borders (and the wrapped band), shifting the input shifts the output.
    np.testing.assert_allclose(out_shifted[..., 5:14, 6:14], out[..., 3:12, 3:11], atol=1e-12)
    # Stride 2: a shift by 2 input pixels is a shift by one output pixel.
    out = Conv2d([False, False]).forward(x, weight, stride=(2, 2), padding=(1, 1))
    shifted = np.roll(x, (2, 2), axis=(2, 3))
    out_shifted = Conv2d([False, False]).forward(shifted, weight, stride=(2, 2), padding=(1, 1))
    np.testing.assert_allclose(out_shifted[..., 2:7, 2:7], out[..., 1:6, 1:6], atol=1e-12)


def test_conv2d_quotes_the_size_formula():
    x, weight = np.zeros((1, 1, 8, 4)), np.zeros((1, 1, 7, 7))  # height fits, width does not
    with pytest.raises(ValueError) as error:
        Conv2d([False, False]).forward(x, weight, stride=(1, 1), padding=(0, 0))
    expected = "conv2d: output width (W - K + 2P)/S + 1 = (4 - 7 + 0)/1 + 1 = -2 is not positive"
    assert expected in str(error.value)


@pytest.mark.parametrize(
    "x_shape, weight_shape, bias_shape, message",
    [
        (
            (3, 28, 28),
            (32, 1, 3, 3),
            None,
            "conv2d: expected input of shape (N, C_in, H, W), got (3, 28, 28)",
        ),
        (
            (2, 3, 8, 8),
            (32, 1, 3, 3),
            None,
            "conv2d: input has 3 channels but weight (32, 1, 3, 3) expects C_in = 1",
        ),
        (
            (2, 1, 8, 8),
            (32, 1, 3),
            None,
            "conv2d: expected weight of shape (C_out, C_in, KH, KW), got (32, 1, 3)",
        ),
        (
            (2, 1, 8, 8),
            (32, 1, 3, 3),
            (16,),
            "conv2d: expected bias of shape (C_out,) = (32,), got (16,)",
        ),
    ],
)
def test_conv2d_rejects_bad_shapes(x_shape, weight_shape, bias_shape, message):
    arrays = [np.zeros(x_shape), np.zeros(weight_shape)] + (
        [np.zeros(bias_shape)] if bias_shape else []
    )
    with pytest.raises(ValueError) as error:
        Conv2d([False] * len(arrays)).forward(*arrays, stride=(1, 1), padding=(0, 0))
    assert message in str(error.value)


# ----- pooling ------------------------------------------------------------------------------
POOLS = {"max": (MaxPool2d, TF.max_pool2d), "avg": (AvgPool2d, TF.avg_pool2d)}


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    return {
        "shape": (
            draw(st.integers(1, 3)),
            draw(st.integers(1, 5)),
            draw(st.sampled_from([h for h in (3, 5, 7, 9, 11) if h + 2 * ph >= kh])),
            draw(st.sampled_from([w for w in (3, 5, 7, 9, 11, 12) if w + 2 * pw >= kw])),
        ),
        "kernel_size": (kh, kw),
        "stride": (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        "padding": (ph, pw),
        # "ties": ReLU'd small integers, so windows often hold several equal maxima.
        "values": draw(st.sampled_from(["normal", "ties"])),
        "layout": draw(st.sampled_from(["nchw", "nhwc", "gaps"])),
        "grad_layout": draw(st.sampled_from(["nchw", "nhwc"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@SETTINGS
@given(case=pool_cases())
def test_pool_matches_torch(kind, dtype, case):
    function_class, torch_fn = POOLS[kind]
    rng = np.random.default_rng(case["seed"])
    if case["values"] == "ties":
        x = np.maximum(rng.integers(-3, 3, case["shape"]), 0).astype(dtype)
    else:
        x = rng.standard_normal(case["shape"]).astype(dtype)
    options = {k: case[k] for k in ("kernel_size", "stride", "padding")}
    out_shape = torch_fn(torch.from_numpy(x), **options).shape
    upstream = rng.standard_normal(tuple(out_shape)).astype(dtype)
    reference, (reference_grad,) = torch_run(lambda t: torch_fn(t, **options), [x], upstream)
    ours = with_layout(x, case["layout"])
    out, (grad,) = run(
        function_class, [ours], with_layout(upstream, case["grad_layout"]), **options
    )
    assert_close(out, reference, dtype)
    assert_close(grad, reference_grad, dtype)
    no_graph = function_class([False]).forward(ours, **options)  # max: no index, no gather
    np.testing.assert_array_equal(no_graph, out)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(
    "kernel, stride, padding",
    [((2, 2), (2, 2), (0, 0)), ((3, 2), (1, 2), (1, 1)), ((3, 3), (2, 1), (1, 0))],
)
def test_pool_gradients_match_central_differences(kind, kernel, stride, padding):
    function_class = POOLS[kind][0]
    rng = np.random.default_rng(6)
    # Distinct values far apart (a shuffled grid) so a small step never changes a window's max.
    x = rng.permutation(2 * 2 * 5 * 6).reshape(2, 2, 5, 6) / 10.0
    options = {"kernel_size": kernel, "stride": stride, "padding": padding}

    def pool(a):
        return function_class([False]).forward(a, **options)

    upstream = rng.standard_normal(pool(x).shape)
    _, (grad,) = run(function_class, [x], upstream, **options)
    assert relative_error(grad, numeric_gradient(pool, x.copy(), upstream)) <= 1e-7


def test_max_pool_sends_tied_gradients_to_the_first_maximum():
    x = np.zeros((1, 1, 2, 2))  # four equal values: PyTorch picks the first, row-major
    _, (grad,) = run(
        MaxPool2d, [x], np.ones((1, 1, 1, 1)), kernel_size=(2, 2), stride=(2, 2), padding=(0, 0)
    )
    np.testing.assert_array_equal(grad[0, 0], [[1, 0], [0, 0]])


def test_max_pool_translation_equivariance():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 16, 16))
    options = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    out = MaxPool2d([False]).forward(x, **options)
    shifted = MaxPool2d([False]).forward(np.roll(x, (4, 2), axis=(2, 3)), **options)
    np.testing.assert_array_equal(shifted[..., 3:7, 2:7], out[..., 1:5, 1:6])


@pytest.mark.parametrize("kind, op", [("max", "max_pool2d"), ("avg", "avg_pool2d")])
def test_pool_rejects_bad_input(kind, op):
    function_class = POOLS[kind][0]
    options = {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}
    with pytest.raises(
        ValueError, match=rf"{op}: expected input of shape \(N, C, H, W\), got \(3, 8, 8\)"
    ):
        function_class([False]).forward(np.zeros((3, 8, 8)), **options)
    with pytest.raises(ValueError, match=f"{op}: padding should be at most half of kernel size"):
        function_class([False]).forward(np.zeros((1, 1, 8, 8)), **{**options, "padding": (2, 0)})
    with pytest.raises(ValueError, match=f"{op}: padding should be at most half of kernel size"):
        function_class([False]).forward(np.zeros((1, 1, 8, 8)), **{**options, "padding": (1, 2)})
    with pytest.raises(ValueError, match=rf"{op}: output width \(W - K \+ 2P\)/S \+ 1 = \(1 - 2"):
        function_class([False]).forward(np.zeros((1, 1, 4, 1)), **options)


def test_pool_keeps_float32_and_returns_nhwc_memory():
    x = np.random.default_rng(8).standard_normal((2, 3, 8, 8)).astype(np.float32)
    for function_class, _ in POOLS.values():
        out, (grad,) = run(
            function_class,
            [x],
            np.ones((2, 3, 4, 4), np.float32),
            kernel_size=(2, 2),
            stride=(2, 2),
            padding=(0, 0),
        )
        assert out.dtype == grad.dtype == np.float32
        assert out.transpose(0, 2, 3, 1).flags.c_contiguous


# ----- the accumulating GEMM behind the conv input gradient --------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_accumulate_matches_numpy(dtype):
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((40, 7)).astype(dtype), rng.standard_normal((7, 5)).astype(dtype)
    cases = [
        (a, b),  # plain row-major operands
        (np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T),  # transposed views
        (a[::2], b),  # rows with gaps: still BLAS-readable (leading dimension 14)
        (a[:, ::2], b[::2]),  # columns with gaps: NumPy fallback
        (a, b.astype(np.float64 if dtype == np.float32 else np.float32)),  # mixed: fallback
    ]
    for left, right in cases:
        out = np.ones((left.shape[0], 5 * 2), dtype)[:, ::2]  # gapped output: fallback
        expected = out + left @ right
        BLAS.gemm_accumulate(left, right, out)
        np.testing.assert_allclose(out, expected, rtol=1e-5)
        out = np.ones((left.shape[0], 5), dtype)
        expected = out + left @ right
        BLAS.gemm_accumulate(left, right, out)
        np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_conv2d_same_numbers_without_numpy_blas(monkeypatch):
    rng = np.random.default_rng(10)
    x, weight = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    upstream = rng.standard_normal((2, 4, 7, 7))
    options = {"stride": (1, 1), "padding": (1, 1)}
    _, (grad_x, _) = run(Conv2d, [x, weight], upstream, **options)
    monkeypatch.setattr(BLAS, "functions", {})
    _, (fallback_grad_x, _) = run(Conv2d, [x, weight], upstream, **options)
    assert relative_error(fallback_grad_x, grad_x) <= 1e-12


def test_backward_can_run_twice_for_retain_graph():
    rng = np.random.default_rng(11)
    x, weight = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    for function, arrays, options in [
        (Conv2d([True, True]), [x, weight], {"stride": (1, 1), "padding": (1, 1)}),
        (MaxPool2d([True]), [x], {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}),
        (AvgPool2d([True]), [x], {"kernel_size": (2, 2), "stride": (2, 2), "padding": (0, 0)}),
    ]:
        upstream = rng.standard_normal(function.forward(*arrays, **options).shape)
        first, second = function.backward(upstream), function.backward(upstream)
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)


# ----- two graphs alive at once -------------------------------------------------------------
def test_two_live_graphs_keep_their_own_saved_inputs():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((16, 8, 24, 24)).astype(np.float32)
    weight = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    upstream = rng.standard_normal((16, 4, 24, 24)).astype(np.float32)
    options = {"stride": (1, 1), "padding": (1, 1)}
    first, second = Conv2d([True, True]), Conv2d([True, True])
    first.forward(x, weight, **options)
    second.forward(x[::-1].copy(), weight, **options)  # another graph while the first is alive
    expected = Conv2d([True, True])
    expected.forward(x, weight, **options)
    for a, b in zip(first.backward(upstream), expected.backward(upstream), strict=True):
        np.testing.assert_array_equal(a, b)
