"""2-D convolution (cross-correlation, as every deep-learning library): forward and backward.

x: (N, C_in, H, W), weight: (C_out, C_in, KH, KW), bias: (C_out,)
-> out: (N, C_out, H_out, W_out), H_out = floor((H - KH + 2 * padding) / stride) + 1.

How it is computed (the layout is the performance story; see PERFORMANCE.md):

- Activations are NCHW logically but NHWC in memory: the output is a transposed view of an
  (N, H_out, W_out, C_out) buffer. NumPy's ufuncs (ReLU, masks, bias adds) keep that memory
  order, so the next conv or pool reads its input as NHWC without a copy. Inputs of any other
  strides work too; they are copied into NHWC once.
- Forward: im2col by a strided window view of the zero-padded NHWC input, then the GEMM
  (N * H_out * W_out, KH * KW * C_in) @ (KH * KW * C_in, C_out), which is already NHWC,
  accumulated onto the broadcast bias, or, where OpenBLAS has small-matrix kernels, as a stack
  of small products (`BLAS.product`) with the bias added after (cifar-cnn's 32->32 conv
  forward, one thread, Intel Xeon: 41 -> 34 ms). Both run per cache block of images (BLOCK_BYTES):
  the block's columns are copied into a small buffer and multiplied while they are in the
  cache; the whole column matrix is kept only for the weight gradient of a conv with fewer
  than 16 input channels (small, and slow to copy again).
- Weight gradient: otherwise the same blocks made again from the saved padded input, each
  block's (C_out x rows) @ (rows x KH * KW * C_in) product accumulated (see
  `Conv2d._weight_grad`).
- Threads (cnnlab.threads): each pass is split into one share of the images per thread, and
  a share does its copies and its GEMMs on one core.
- Input gradient, stride 1: on the padded grid flattened to rows (N * Hp * Wp, C), kernel tap
  (i, j) moves a row by i * Wp + j, so the input gradient is the sum over taps of
  (upstream gradient @ weight[:, :, i, j]) shifted by that many rows: KH * KW GEMMs, each
  accumulated (BLAS beta = 1, see `cnnlab.blas`) into a contiguous row range of the result.
  No scatter, no strided adds (NumPy's ufuncs are about 4x slower on arrays with gaps than on
  contiguous ones). Measured against one GEMM into column form + col2im: 1.4-2x faster.
- Input gradient, other strides: one GEMM into column form, then col2im as KH * KW strided
  slice additions.
- Both gradients, stride 1 and C_out <= C_in (cifar-cnn's 32->32 and 64->64 convs): from one
  im2col of the padded upstream gradient, the forward's column matrix for the flipped kernel
  (see `Conv2d._gradients_from_columns`): the input gradient is its product with the flipped
  weights, the weight gradient its transpose times the input, both per cache block. One copy
  instead of the grid, the crop and the input's columns made again; the forward keeps the
  input (usually a view) instead of its padded copy. Intel Xeon (AVX-512), one thread,
  cifar-cnn training step: 353 -> 324 ms of CPU time, peak memory growth 222 -> 174 MB.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.blas import BLAS
from cnnlab.ops.function import Function
from cnnlab.shapes import output_hw
from cnnlab.threads import parallel_for

# Cache blocking. A share's images are taken a few at a time, each block's im2col copy (or
# gradient grid) about BLOCK_BYTES, so that its GEMMs read it back from the cache instead of
# memory. One thread, batch 128, against one copy and one GEMM for the whole batch:
# cifar-cnn's 32->32 conv forward 48 -> 32 ms, its 64->64 conv 36 -> 27 ms. Each block is
# still a product of thousands of rows (a 32 x 32 image is 1,024).
BLOCK_BYTES = 5 << 19  # 2.5 MB


def im2col_blocks(windows, work, into=None):
    """Call work(block, columns) for every cache block of images, on all threads: `block` a
    slice of images, `columns` their rows of the column matrix (images * H_out * W_out,
    KH * KW * C), copied from `windows` (N, H_out, W_out, KH, KW, C) into a buffer that each
    thread reuses for its blocks, or into the rows of `into`, a whole column matrix to keep."""
    per_image = windows[:1].size * windows.itemsize
    parallel_for(lambda images: for_each_block(windows, images, work, into), len(windows),
                 per_image * len(windows))


def for_each_block(windows, images, work, into=None, made=False):
    """im2col_blocks' work on one thread, for the images `images`; with `made`, `into` holds
    the columns already and nothing is copied."""
    n, h_out, w_out, kh, kw, c = windows.shape
    pixels, width = h_out * w_out, kh * kw * c
    buffer = None
    for block in cache_blocks(images, pixels * width * windows.itemsize):
        size = (block.stop - block.start) * pixels
        if into is not None:
            columns = into[block.start * pixels : block.stop * pixels]
        else:
            buffer = np.empty((size, width), windows.dtype) if buffer is None else buffer
            columns = buffer[:size]
        if not made:
            np.copyto(columns.reshape(windows[block].shape), windows[block])  # a strided copy
        work(block, columns)


def cache_blocks(images, bytes_per_image):
    """Consecutive sub-slices of the slice `images`, each about BLOCK_BYTES of work and at
    least one image (the last may hold fewer)."""
    step = max(1, BLOCK_BYTES // max(1, bytes_per_image))
    return [slice(start, min(start + step, images.stop))
            for start in range(images.start, images.stop, step)]


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
        weight_t = weight.transpose(2, 3, 1, 0).reshape(-1, c_out).astype(dtype, copy=False)
        out = np.empty((n * pixels, c_out), dtype)  # (N * H_out * W_out, C_out): NHWC

        def convolve_block(block, block_columns):
            rows = slice(block.start * pixels, block.stop * pixels)
            if bias is not None and BLAS.small_rows(*weight_t.shape) is None:
                out[rows] = bias  # the GEMM adds onto it (beta = 1): a pass less than += bias
                BLAS.gemm_accumulate(block_columns, weight_t, out[rows])
                return
            BLAS.product(block_columns, weight_t, out[rows])  # small products where faster
            if bias is not None:
                out[rows] += bias  # while the block is in the cache

        # The weight gradient makes the columns again from the padded input (see
        # _weight_grad), except for few input channels: a copy whose contiguous runs are so
        # short (C_in floats) is slow, and the column matrix small, so it is kept. Where both
        # gradients come from the upstream gradient's columns (see _gradients_from_columns),
        # the input itself is kept instead.
        needs = self.needs_input_grad
        self.from_gradient_columns = (
            needs[0] and needs[1] and stride == (1, 1) and c_out <= c_in
            and padding[0] < kh and padding[1] < kw
        )
        remake = needs[1] and not self.from_gradient_columns
        keep = np.empty((n * pixels, kh * kw * c_in), dtype) if remake and c_in < 16 else None
        im2col_blocks(windows, convolve_block, into=keep)

        self.x_shape, self.x_dtype, self.weight_shape = x.shape, x.dtype, weight.shape
        self.weight_dtype = weight.dtype
        self.stride, self.padding, self.out_hw = stride, padding, out_hw
        self.weight = weight.astype(dtype, copy=False) if needs[0] else None
        self.columns, self.padded = keep, padded if remake else None
        self.x_nhwc = to_nhwc(x, dtype) if self.from_gradient_columns else None
        return out.reshape(n, out_hw[0], out_hw[1], c_out).transpose(0, 3, 1, 2)

    def backward(self, grad_output):
        needs = self.needs_input_grad
        c_out, c_in, kh, kw = self.weight_shape
        grad_rows = to_nhwc(grad_output).reshape(-1, c_out)  # (N * H_out * W_out, C_out)
        grads = [None] * len(needs)
        if self.from_gradient_columns:
            grads[0], grads[1] = self._gradients_from_columns(grad_output)
            grads[0] = grads[0].astype(self.x_dtype, copy=False)
        elif needs[0]:
            grad_rows = grad_rows.astype(self.weight.dtype, copy=False)
            grad_x = self._input_grad(grad_rows, grad_output.shape)
            grads[0] = grad_x.astype(self.x_dtype, copy=False)
        if needs[1] and not self.from_gradient_columns:
            grads[1] = self._weight_grad(grad_rows)
        if len(needs) == 3 and needs[2]:
            # A GEMV with a ones vector: about 10x faster than grad_rows.sum(axis=0). Unsplit:
            # OpenBLAS sums a share of the columns in another order than all of them.
            with BLAS.single_threaded():
                grads[2] = np.ones(len(grad_rows), grad_rows.dtype) @ grad_rows
        return tuple(grads)

    def _gradients_from_columns(self, grad_output):
        """(dL/dx, dL/dweight) of a stride-1 conv, both from the upstream gradient's columns.

        The upstream gradient (N, C_out, H_out, W_out), padded by KH - 1 - PH rows and
        KW - 1 - PW columns, has a KH x KW window at every input pixel: its im2col G, rows
        (N * H * W, KH * KW * C_out), is the forward's column matrix for the full correlation
        with the flipped kernel. So dL/dx = G @ W_flipped, (N * H * W, C_in), already NHWC,
        and dL/dweight (flipped) = G^T @ x as rows (N * H * W, C_in): one im2col for both
        products, made block by block and used by both while in the cache, instead of the
        grid, the KH * KW shifted products and the crop of `_input_grad` plus the input's
        columns made again by `_weight_grad`. Chosen when C_out <= C_in (G no wider than the
        input's columns).
        """
        n, c_in, h, w = self.x_shape
        c_out, _, kh, kw = self.weight_shape
        dtype = self.weight.dtype
        padding = (kh - 1 - self.padding[0], kw - 1 - self.padding[1])
        windows = window_view(padded_nhwc(grad_output, padding, 0, dtype), (kh, kw), (1, 1), (h, w))
        flipped = np.ascontiguousarray(self.weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1))
        flipped = flipped.reshape(-1, c_in)  # (KH * KW * C_out, C_in)
        x_rows = self.x_nhwc.reshape(-1, c_in)
        grad_x = np.empty((n * h * w, c_in), dtype)
        pixels, sums = h * w, {}

        def sum_share(images):
            total = np.zeros((kh * kw * c_out, c_in), dtype)

            def both_products(block, block_columns):
                rows = slice(block.start * pixels, block.stop * pixels)
                BLAS.product(block_columns, flipped, grad_x[rows])
                BLAS.gemm_accumulate(block_columns.T, x_rows[rows], total)

            for_each_block(windows, images, both_products)
            sums[images.start] = total

        parallel_for(sum_share, n, windows[:1].size * n * dtype.itemsize)
        grad = sums.pop(0)
        for start in sorted(sums):
            grad += sums[start]
        grad = grad.reshape(kh, kw, c_out, c_in)[::-1, ::-1].transpose(2, 3, 0, 1)
        grad_x = grad_x.reshape(n, h, w, c_in).transpose(0, 3, 1, 2)
        return grad_x, np.ascontiguousarray(grad, self.weight_dtype)

    def _weight_grad(self, grad_rows):
        """dL/dweight (C_out, C_in, KH, KW) = the upstream gradient's rows (transposed) times
        the column matrix, summed block by block as `im2col_blocks` makes the columns again
        from the saved padded input (or taken from the columns the forward pass kept, for
        fewer than 16 input channels), each block's product accumulated (beta = 1) while the
        block is in the cache. Faster than one GEMM on columns kept from the forward pass
        (cifar-cnn's 32->32 conv on one thread: 34 against 39 ms, its 64->64 conv 28 against
        30, im2col included), and the forward pass writes no column matrix at all (150 MB for
        that conv at batch 128). The product is wide (shorter side first), about 10% faster
        than tall on one thread. Each thread sums its share of the images; the shares' sums
        are added in order, so a given thread count always gives the same bits.
        """
        c_out, c_in, kh, kw = self.weight_shape
        windows = window_view(self.padded, (kh, kw), self.stride, self.out_hw)
        made = self.columns is not None  # kept by the forward pass (few input channels)
        pixels, width = self.out_hw[0] * self.out_hw[1], kh * kw * c_in
        channels_first = c_out <= width
        sums = {}

        def accumulate(block, block_columns, total):
            upstream = grad_rows[block.start * pixels : block.stop * pixels]
            if channels_first:
                BLAS.gemm_accumulate(upstream.T, block_columns, total)  # (C_out, width)
            else:
                BLAS.gemm_accumulate(block_columns.T, upstream, total)  # (width, C_out)

        def sum_share(images):
            total = np.zeros((c_out, width) if channels_first else (width, c_out), grad_rows.dtype)
            for_each_block(windows, images, lambda block, cols: accumulate(block, cols, total),
                           into=self.columns, made=made)
            sums[images.start] = total

        parallel_for(sum_share, len(windows), windows[:1].size * len(windows) * grad_rows.itemsize)
        grad = sums.pop(0)
        for start in sorted(sums):
            grad += sums[start]
        if not channels_first:
            grad = grad.T
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
            grid = np.empty((n * pixels, c_out), dtype)
            grid_nhwc = grid.reshape(n, padded_h, padded_w, c_out)
            taps = np.ascontiguousarray(self.weight.transpose(2, 3, 0, 1))  # (KH, KW, C_out, C_in)
            grad_padded = np.empty((n * pixels, c_in), dtype)

            def input_grad_block(images):
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

            per_image = pixels * (c_out + c_in) * grid.itemsize

            def input_grad_share(images):
                for block in cache_blocks(images, per_image):
                    input_grad_block(block)

            parallel_for(input_grad_share, n, grid.nbytes + grad_padded.nbytes)
            grad_padded = grad_padded.reshape(n, padded_h, padded_w, c_in)
        else:
            weight_matrix = self.weight.transpose(0, 2, 3, 1).reshape(c_out, -1)
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
        return grad_x.transpose(0, 3, 1, 2)
