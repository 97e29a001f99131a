"""2-D convolution (cross-correlation, as every deep-learning library): forward and backward.

x: (N, C_in, H, W), weight: (C_out, C_in, KH, KW), bias: (C_out,)
-> out: (N, C_out, H_out, W_out), H_out = floor((H - KH + 2 * padding) / stride) + 1.

How it is computed (the layout is the performance story; see PERFORMANCE.md):

- Activations are NCHW logically but NHWC in memory: the output is a transposed view of an
  (N, H_out, W_out, C_out) buffer. NumPy's ufuncs (ReLU, masks, bias adds) keep that memory
  order, so the next conv or pool reads its input as NHWC without a copy. Inputs of any other
  strides work too; they are copied into NHWC once.
- Forward: im2col by a strided window view of the zero-padded NHWC input (one copy into a
  reused workspace buffer, see `Workspace`), then one GEMM, (N * H_out * W_out, KH * KW * C_in)
  @ (KH * KW * C_in, C_out), which is already NHWC, accumulated onto the broadcast bias.
- Weight gradient: one GEMM of the upstream gradient with the saved column matrix, its output
  wide (see `Conv2d._weight_grad`).
- Threads (cnnlab.threads): each pass is split into one share per thread, by images (or, for
  the weight gradient, by its output's longer side), and a share does its copies and its part
  of the GEMM on one core: one GEMM per thread, no reduction split.
- Input gradient, stride 1: on the padded grid flattened to rows (N * Hp * Wp, C), kernel tap
  (i, j) moves a row by i * Wp + j, so the input gradient is the sum over taps of
  (upstream gradient @ weight[:, :, i, j]) shifted by that many rows: KH * KW GEMMs, each
  accumulated (BLAS beta = 1, see `cnnlab.blas`) into a contiguous row range of the result.
  No scatter, no strided adds (NumPy's ufuncs are about 4x slower on arrays with gaps than on
  contiguous ones). Measured against one GEMM into column form + col2im: 1.4-2x faster.
- Input gradient, other strides: one GEMM into column form, then col2im as KH * KW strided
  slice additions.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.blas import BLAS
from cnnlab.ops.function import Function
from cnnlab.shapes import output_hw
from cnnlab.threads import parallel_for


class Workspace:
    """Large scratch arrays kept for reuse between calls, at most one per (shape, dtype).

    A fresh array of 100 MB costs about 10 ms of page faults (the kernel zero-fills each page on
    first touch), more than the copy that fills it; glibc maps arrays above 32 MB freshly on
    every allocation. An op `take`s a buffer and `give_back`s it once nothing refers to it any
    more (at the end of the call, or when the Function that saved it for backward is freed), so
    two graphs alive at once never share one. Arrays under 1 MB are not kept; beyond
    `max_bytes` in all, the least recently returned go.
    """

    MIN_BYTES = 1 << 20

    def __init__(self, max_bytes=1 << 30):
        self.max_bytes, self.free = max_bytes, {}

    def take(self, shape, dtype):
        """An uninitialised C-contiguous array: a returned one when it fits, else a new one."""
        array = self.free.pop((tuple(shape), np.dtype(dtype)), None)
        return np.empty(shape, dtype) if array is None else array

    def give_back(self, array):
        if array is None or array.nbytes < self.MIN_BYTES or not array.flags.c_contiguous:
            return
        self.free[(array.shape, array.dtype)] = array  # newest last
        while sum(kept.nbytes for kept in self.free.values()) > self.max_bytes:
            del self.free[next(iter(self.free))]


WORKSPACE = Workspace()


def float_dtype(*arrays):
    """NumPy's promotion of the arrays' dtypes, at least float32 (integers become float32)."""
    dtype = np.result_type(*arrays)
    return dtype if dtype.kind == "f" and dtype.itemsize >= 4 else np.dtype(np.float32)


def to_nhwc(x, dtype=None):
    """(N, C, H, W) of any strides -> (N, H, W, C) C-contiguous (a view when it already is)."""
    nhwc = x.transpose(0, 2, 3, 1)
    dtype = x.dtype if dtype is None else dtype
    if nhwc.flags.c_contiguous and nhwc.dtype == dtype:
        return nhwc
    return contiguous(nhwc, dtype)


def contiguous(x, dtype=None):
    """A C-contiguous copy of `x` (of `dtype`), made on all threads (split over axis 0)."""
    out = np.empty(x.shape, dtype=x.dtype if dtype is None else dtype)
    parallel_for(lambda share: np.copyto(out[share], x[share], casting="unsafe"), len(x),
                 out.nbytes)
    return out


def padded_nhwc(x, padding, fill, dtype):
    """(N, C, H, W) -> (N, H + 2 PH, W + 2 PW, C) C-contiguous, borders set to `fill`.

    Only the border is written with `fill`; without padding an NHWC input is used as is.
    """
    pad_h, pad_w = padding
    if pad_h == 0 and pad_w == 0:
        return to_nhwc(x, dtype)
    n, c, h, w = x.shape
    out = np.empty((n, h + 2 * pad_h, w + 2 * pad_w, c), dtype=dtype)
    nhwc = x.transpose(0, 2, 3, 1)

    def fill_share(share):
        part = out[share]
        part[:, :pad_h] = fill
        part[:, pad_h + h :] = fill
        part[:, pad_h : pad_h + h, :pad_w] = fill
        part[:, pad_h : pad_h + h, pad_w + w :] = fill
        part[:, pad_h : pad_h + h, pad_w : pad_w + w] = nhwc[share]

    parallel_for(fill_share, n, out.nbytes)
    return out


def window_view(padded, kernel, stride, out_hw):
    """Read-only strided view (N, H_out, W_out, KH, KW, C) of the windows of an NHWC array."""
    n, _, _, c = padded.shape
    step_n, step_h, step_w, step_c = padded.strides
    return as_strided(
        padded,
        shape=(n, out_hw[0], out_hw[1], kernel[0], kernel[1], c),
        strides=(step_n, step_h * stride[0], step_w * stride[1], step_h, step_w, step_c),
        writeable=False,
    )


def check_input(op, x, channels_name="C"):
    if x.ndim != 4:
        raise ValueError(
            f"{op}: expected input of shape (N, {channels_name}, H, W), got {tuple(x.shape)}"
        )


class Conv2d(Function):
    """out = cross-correlation of x with weight (+ bias), as torch.nn.functional.conv2d.

    forward(x, weight, bias=None, *, stride=(1, 1), padding=(0, 0)):
        x: (N, C_in, H, W); weight: (C_out, C_in, KH, KW); bias: (C_out,) or omitted
        -> (N, C_out, H_out, W_out), H_out = floor((H - KH + 2 PH) / SH) + 1 (W_out likewise).
    backward(grad_output (N, C_out, H_out, W_out)) -> (grad_x, grad_weight[, grad_bias]).
    """

    def forward(self, x, weight, bias=None, *, stride=(1, 1), padding=(0, 0)):
        if x.ndim != 4:
            raise ValueError(
                f"conv2d: expected input of shape (N, C_in, H, W), got {tuple(x.shape)}"
            )
        if weight.ndim != 4:
            raise ValueError(
                f"conv2d: expected weight of shape (C_out, C_in, KH, KW), got {tuple(weight.shape)}"
            )
        n, c_in, h, w = x.shape
        c_out, weight_c_in, kh, kw = weight.shape
        if c_in != weight_c_in:
            raise ValueError(
                f"conv2d: input has {c_in} channels but weight {tuple(weight.shape)} expects"
                f" C_in = {weight_c_in}"
            )
        if bias is not None and bias.shape != (c_out,):
            raise ValueError(
                f"conv2d: expected bias of shape (C_out,) = ({c_out},), got {tuple(bias.shape)}"
            )
        kernel = (kh, kw)
        out_hw = output_hw(h, w, kernel, stride, padding, op="conv2d")
        dtype = float_dtype(x, weight)

        padded = padded_nhwc(x, padding, 0, dtype)
        windows = window_view(padded, kernel, stride, out_hw)
        pixels = out_hw[0] * out_hw[1]  # rows of the column matrix per image
        columns = WORKSPACE.take((n * pixels, kh * kw * c_in), dtype)
        blocks = columns.reshape(windows.shape)
        weight_t = weight.transpose(2, 3, 1, 0).reshape(-1, c_out).astype(dtype, copy=False)
        out = np.empty((columns.shape[0], c_out), dtype)  # (N * H_out * W_out, C_out): NHWC

        def convolve_share(images):
            rows = slice(images.start * pixels, images.stop * pixels)
            np.copyto(blocks[images], windows[images])  # im2col: one strided copy
            if bias is None:
                np.matmul(columns[rows], weight_t, out=out[rows])
            else:  # the GEMM adds onto the broadcast bias (beta = 1): a pass less than out += b
                out[rows] = bias
                BLAS.gemm_accumulate(columns[rows], weight_t, out[rows])

        parallel_for(convolve_share, n, columns.nbytes)

        needs = self.needs_input_grad
        self.x_shape, self.x_dtype, self.weight_shape = x.shape, x.dtype, weight.shape
        self.weight_dtype = weight.dtype
        self.stride, self.padding = stride, padding
        self.weight = weight.astype(dtype, copy=False) if needs[0] else None
        self.columns = columns if needs[1] else None
        if not needs[1]:
            WORKSPACE.give_back(columns)
        return out.reshape(n, out_hw[0], out_hw[1], c_out).transpose(0, 3, 1, 2)

    def __del__(self):
        # The saved column matrix goes back to the workspace once the graph lets go of it.
        columns = getattr(self, "columns", None)
        if columns is not None and WORKSPACE is not None:
            WORKSPACE.give_back(columns)

    def backward(self, grad_output):
        needs = self.needs_input_grad
        c_out, c_in, kh, kw = self.weight_shape
        grad_rows = to_nhwc(grad_output).reshape(-1, c_out)  # (N * H_out * W_out, C_out)
        grads = [None] * len(needs)
        if needs[0]:
            grad_rows = grad_rows.astype(self.weight.dtype, copy=False)
            grad_x = self._input_grad(grad_rows, grad_output.shape)
            grads[0] = grad_x.astype(self.x_dtype, copy=False)
        if needs[1]:
            grads[1] = self._weight_grad(grad_rows)
        if len(needs) == 3 and needs[2]:
            # A GEMV with a ones vector: about 10x faster than grad_rows.sum(axis=0). Unsplit:
            # OpenBLAS sums a share of the columns in another order than all of them.
            with BLAS.single_threaded():
                grads[2] = np.ones(len(grad_rows), grad_rows.dtype) @ grad_rows
        return tuple(grads)

    def _weight_grad(self, grad_rows):
        """dL/dweight (C_out, C_in, KH, KW): the upstream gradient's rows times the columns.

        The product reduces over all N * H_out * W_out rows, so it is split over its output
        instead: each thread takes a share of the longer output side (the column matrix's
        KH * KW * C_in columns, or the C_out channels), and every output element is one
        unsplit dot product. The output is made wide (shorter side first): one thread runs
        it about 10% faster than tall, e.g. 73 against 65 GFLOP/s for fmnist-cnn's second conv
        (the tall form was chosen for OpenBLAS's own threads, which no longer run here).
        """
        c_out, c_in, kh, kw = self.weight_shape
        columns = self.columns
        short, long = (grad_rows, columns) if c_out <= columns.shape[1] else (columns, grad_rows)
        wide = np.empty((short.shape[1], long.shape[1]), grad_rows.dtype)

        def share_product(part):
            np.matmul(short.T, long[:, part], out=wide[:, part])

        parallel_for(share_product, long.shape[1], columns.nbytes)
        grad = wide if short is grad_rows else wide.T  # (C_out, KH * KW * C_in)
        grad = grad.reshape(c_out, kh, kw, c_in).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(grad, self.weight_dtype)

    def _input_grad(self, grad_rows, out_shape):
        """dL/dx (N, C_in, H, W) from the upstream gradient as rows (N * H_out * W_out, C_out)."""
        n, c_in, h, w = self.x_shape
        _, c_out, h_out, w_out = out_shape
        kh, kw = self.weight_shape[2:]
        (pad_h, pad_w), (stride_h, stride_w) = self.padding, self.stride
        padded_h, padded_w = h + 2 * pad_h, w + 2 * pad_w
        grad_nhwc = grad_rows.reshape(n, h_out, w_out, c_out)
        dtype = grad_rows.dtype
        if (stride_h, stride_w) == (1, 1):
            # The upstream gradient placed on the padded grid, output (y, x) at row y * Wp + x;
            # each tap's product lands `shift` rows further on. A shift that crosses into the
            # next image reads rows y >= H_out of the grid, which are zero, so each share of
            # images needs its own rows only.
            pixels = padded_h * padded_w
            grid = WORKSPACE.take((n * pixels, c_out), dtype)
            grid_nhwc = grid.reshape(n, padded_h, padded_w, c_out)
            taps = np.ascontiguousarray(self.weight.transpose(2, 3, 0, 1))  # (KH, KW, C_out, C_in)
            grad_padded = WORKSPACE.take((n * pixels, c_in), dtype)

            def input_grad_share(images):
                part = grid_nhwc[images]
                part[:, :h_out, :w_out] = grad_nhwc[images]
                part[:, h_out:] = 0
                part[:, :h_out, w_out:] = 0
                rows = images.start * pixels, images.stop * pixels
                grid_rows, grad_part = grid[rows[0] : rows[1]], grad_padded[rows[0] : rows[1]]
                np.matmul(grid_rows, taps[0, 0], out=grad_part)  # tap (0, 0) shifts by 0 rows
                for i in range(kh):
                    for j in range(kw):
                        shift = i * padded_w + j
                        if 0 < shift < len(grid_rows):
                            BLAS.gemm_accumulate(grid_rows[:-shift], taps[i, j], grad_part[shift:])

            parallel_for(input_grad_share, n, grid.nbytes + grad_padded.nbytes)
            WORKSPACE.give_back(grid)
            workspace, grad_padded = grad_padded, grad_padded.reshape(n, padded_h, padded_w, c_in)
        else:
            weight_matrix = self.weight.transpose(0, 2, 3, 1).reshape(c_out, -1)
            workspace = None
            grad_padded = np.zeros((n, padded_h, padded_w, c_in), dtype=dtype)

            def input_grad_share(images):
                columns = grad_nhwc[images] @ weight_matrix  # (images, H_out, W_out, KH*KW*C_in)
                columns = columns.reshape(-1, h_out, w_out, kh, kw, c_in)
                part = grad_padded[images]
                for i in range(kh):  # col2im: KH * KW strided additions
                    for j in range(kw):
                        rows_hit = slice(i, i + stride_h * (h_out - 1) + 1, stride_h)
                        cols_hit = slice(j, j + stride_w * (w_out - 1) + 1, stride_w)
                        part[:, rows_hit, cols_hit] += columns[:, :, :, i, j]

            parallel_for(input_grad_share, n, grad_padded.nbytes)
        grad_x = grad_padded[:, pad_h : pad_h + h, pad_w : pad_w + w]
        if pad_h or pad_w:
            grad_x = contiguous(grad_x)  # gapped arrays slow every later ufunc
            WORKSPACE.give_back(workspace)
        return grad_x.transpose(0, 3, 1, 2)
