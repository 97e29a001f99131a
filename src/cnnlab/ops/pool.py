"""2-D max and average pooling: one window primitive, specialised by its reduction.

x: (N, C, H, W) -> out: (N, C, H_out, W_out), H_out = floor((H - KH + 2 * padding) / stride) + 1.
PyTorch semantics: max pooling pads with -infinity, average pooling with zeros that count in
the divisor (count_include_pad=True, always KH * KW); padding at most half the kernel; no
ceil mode.

Layout as in `cnnlab.ops.conv`: the work happens on an NHWC buffer and the output is an NCHW
view of it. The KH * KW kernel taps are gathered by one strided copy into a contiguous
(KH * KW, N, H_out, W_out, C) array, so the reductions run on contiguous slabs (NumPy's ufuncs
are several times slower on arrays with gaps). Max pooling keeps the index of the winning tap
(the first maximum in row-major window order, as PyTorch) for its backward. Without a graph it
needs no index: a running np.maximum over the strided tap views, no gathering copy (2x2 pooling
of 128 x 32 x 32 x 32: 3.9 ms instead of 5.5).
"""

import numpy as np

from cnnlab.ops.conv import contiguous, float_dtype, padded_nhwc, to_nhwc, window_view
from cnnlab.ops.function import Function
from cnnlab.shapes import output_hw
from cnnlab.threads import parallel_for


def _output_hw(op, x, kernel, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W), got {tuple(x.shape)}")
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(
            f"{op}: padding should be at most half of kernel size, got padding={padding},"
            f" kernel_size={kernel}"
        )
    return output_hw(x.shape[2], x.shape[3], kernel, stride, padding, op=op)


def _gather_taps(padded, kernel, stride, out_hw):
    """(N, Hp, Wp, C) -> contiguous (KH * KW, N, H_out, W_out, C): tap k = i * KW + j."""
    windows = window_view(padded, kernel, stride, out_hw).transpose(3, 4, 0, 1, 2, 5)
    n, c = padded.shape[0], padded.shape[3]
    return np.ascontiguousarray(windows).reshape(-1, n, out_hw[0], out_hw[1], c)


def _tap_slices(i, j, stride, out_hw):
    """Index of the input pixels that kernel tap (i, j) reads, on the padded NHWC grid."""
    return (
        slice(None),
        slice(i, i + stride[0] * (out_hw[0] - 1) + 1, stride[0]),
        slice(j, j + stride[1] * (out_hw[1] - 1) + 1, stride[1]),
    )


def _scatter_taps(tap_grad, dtype, x_shape, kernel, stride, padding, out_hw):
    """Sum per-tap gradients onto the input: tap_grad(k, share, out) writes tap k's gradient
    for the images `share`, (images, H_out, W_out, C), into `out`: straight into the input
    pixels the tap reads where windows do not overlap (each pixel is written once; 2x2 max
    pooling of 128 x 32 x 32 x 32, one thread: 6.7 -> 5.0 ms against a product then a copy),
    else into a buffer then added.

    Returns dL/dx as an (N, C, H, W) view of an NHWC buffer.
    """
    n, c, h, w = x_shape
    (pad_h, pad_w), (kh, kw) = padding, kernel
    padded_hw = (h + 2 * pad_h, w + 2 * pad_w)
    exact_tiling = all(
        stride[a] == kernel[a] and (padded_hw[a] - kernel[a]) % stride[a] == 0 for a in (0, 1)
    )
    allocate = np.empty if exact_tiling else np.zeros  # exact tiling writes every pixel once
    grad = allocate((n, *padded_hw, c), dtype=dtype)
    overlapping = stride[0] < kh or stride[1] < kw

    def scatter_share(share):
        part, buffer = grad[share], None
        for i in range(kh):
            for j in range(kw):
                index = _tap_slices(i, j, stride, out_hw)
                if overlapping:
                    if buffer is None:
                        buffer = np.empty((share.stop - share.start, *out_hw, c), dtype)
                    tap_grad(i * kw + j, share, buffer)
                    part[index] += buffer
                else:  # each input pixel is read by at most one window: written in place
                    tap_grad(i * kw + j, share, part[index])

    parallel_for(scatter_share, n, grad.nbytes)
    grad = grad[:, pad_h : pad_h + h, pad_w : pad_w + w]
    if pad_h or pad_w:
        grad = contiguous(grad)
    return grad.transpose(0, 3, 1, 2)


class MaxPool2d(Function):
    """out = max over each KH x KW window, as torch.nn.functional.max_pool2d.

    forward(x, *, kernel_size, stride, padding): x (N, C, H, W) -> (N, C, H_out, W_out).
    backward(grad_output) -> (grad_x,): each window's gradient goes to its first maximum.
    """

    def forward(self, x, *, kernel_size, stride, padding):
        out_hw = _output_hw("max_pool2d", x, kernel_size, stride, padding)
        padded = padded_nhwc(x, padding, -np.inf, float_dtype(x))
        n, c = padded.shape[0], padded.shape[3]
        out = np.empty((n, *out_hw, c), dtype=padded.dtype)
        if not self.needs_input_grad[0]:  # no graph: no index, and no gathering copy
            windows = window_view(padded, kernel_size, stride, out_hw)

            def pool_share(share):
                taps = [windows[share, :, :, i, j] for i, j in np.ndindex(*kernel_size)]
                part = out[share]
                np.copyto(part, taps[0])
                for tap in taps[1:]:
                    np.maximum(part, tap, out=part)

            parallel_for(pool_share, n, padded.nbytes)
            return out.transpose(0, 3, 1, 2)
        kernel_taps = kernel_size[0] * kernel_size[1]
        index_dtype = np.uint8 if kernel_taps <= 256 else np.int32
        index = np.zeros(out.shape, dtype=index_dtype)

        def pool_share(share):
            taps = _gather_taps(padded[share], kernel_size, stride, out_hw)
            part, part_index = out[share], index[share]
            np.copyto(part, taps[0])
            better = np.empty(part.shape, dtype=bool)
            for k in range(1, kernel_taps):
                # Strict >: ties keep the earlier tap, as PyTorch. Since k grows, the new index
                # is max(index, k * better) (a few times faster than copyto(..., where=)).
                np.greater(taps[k], part, out=better)
                np.maximum(part, taps[k], out=part)
                np.maximum(part_index, better.view(np.uint8) * index_dtype(k), out=part_index)

        parallel_for(pool_share, n, padded.nbytes)
        self.index, self.x_shape = index, x.shape
        self.kernel, self.stride, self.padding, self.out_hw = kernel_size, stride, padding, out_hw
        return out.transpose(0, 3, 1, 2)

    def backward(self, grad_output):
        grad = to_nhwc(grad_output)
        index = self.index

        def tap_grad(k, share, out):  # a product: several times faster than np.where
            np.multiply(grad[share], index[share] == k, out=out)

        grad_x = _scatter_taps(
            tap_grad, grad.dtype, self.x_shape, self.kernel, self.stride, self.padding, self.out_hw
        )
        return (grad_x,)


class AvgPool2d(Function):
    """out = mean over each KH x KW window (padded zeros counted), as F.avg_pool2d.

    forward(x, *, kernel_size, stride, padding): x (N, C, H, W) -> (N, C, H_out, W_out).
    backward(grad_output) -> (grad_x,): each window spreads grad / (KH * KW) over its pixels.
    """

    def forward(self, x, *, kernel_size, stride, padding):
        out_hw = _output_hw("avg_pool2d", x, kernel_size, stride, padding)
        padded = padded_nhwc(x, padding, 0, float_dtype(x))
        taps = _gather_taps(padded, kernel_size, stride, out_hw)
        out = taps.sum(axis=0)
        out /= len(taps)
        self.x_shape = x.shape
        self.kernel, self.stride, self.padding, self.out_hw = kernel_size, stride, padding, out_hw
        return out.transpose(0, 3, 1, 2)

    def backward(self, grad_output):
        kh, kw = self.kernel
        share = to_nhwc(grad_output) / (kh * kw)
        grad_x = _scatter_taps(
            lambda k, images, out: np.copyto(out, share[images]), share.dtype, self.x_shape,
            self.kernel, self.stride, self.padding, self.out_hw,
        )
        return (grad_x,)
