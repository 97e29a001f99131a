"""The BLAS that NumPy itself calls, reached directly: accumulating GEMM and thread control.

NumPy's wheels ship OpenBLAS (ILP64, symbols prefixed `scipy_`). Two things NumPy does not
offer are taken from it here by ctypes, each checked and with a fallback where the library is
not found (then NumPy does the work, or the thread count is left alone).
"""

import contextlib
import ctypes
import glob
import os

import numpy as np


class _NumpyBlas:
    """out += a @ b in one call to NumPy's own bundled OpenBLAS (GEMM with beta = 1).

    NumPy's matmul cannot accumulate into its output, so `out += a @ b` costs a temporary and
    an extra pass over memory; for the KH * KW products of the conv input gradient that is most
    of the time. NumPy's wheels ship OpenBLAS (ILP64, symbols prefixed `scipy_`); when that
    library is found and passes a self-test, `gemm_accumulate` calls its cblas_?gemm directly
    (the same library and threads NumPy uses). Anywhere else it falls back to NumPy.
    """

    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

    def __init__(self):
        self.functions, self.get_threads, self.set_threads = {}, None, None
        libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
        for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas64_*.so"))):
            try:
                library = ctypes.CDLL(path)
                pairs = [(np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)]
                for dtype, letter, scalar in pairs:
                    function = getattr(library, f"scipy_cblas_{letter}gemm64_")
                    integer, enum = ctypes.c_int64, ctypes.c_int
                    function.argtypes = [enum, enum, enum, integer, integer, integer, scalar,
                                         ctypes.c_void_p, integer, ctypes.c_void_p, integer,
                                         scalar, ctypes.c_void_p, integer]  # fmt: skip
                    function.restype = None
                    self.functions[np.dtype(dtype)] = function
                if self._self_test():
                    self._bind_thread_control(library)
                    return
            except (OSError, AttributeError):
                pass
            self.functions = {}

    def _bind_thread_control(self, library):
        try:
            get_threads = library.scipy_openblas_get_num_threads64_
            set_threads = library.scipy_openblas_set_num_threads64_
        except AttributeError:
            return
        get_threads.argtypes, get_threads.restype = [], ctypes.c_int
        set_threads.argtypes, set_threads.restype = [ctypes.c_int64], None
        self.get_threads, self.set_threads = get_threads, set_threads

    @contextlib.contextmanager
    def single_threaded(self):
        """Within the block, every BLAS call of this process runs on its caller's thread alone.

        For work already split over cnnlab's threads (cnnlab.threads): otherwise OpenBLAS would
        wake its own threads too, and they keep spinning on the cores for a while after each
        product, taking turns with the threads that should do the next copy.
        """
        if self.set_threads is None:
            yield
            return
        before = self.get_threads()
        if before != 1:
            self.set_threads(1)
        try:
            yield
        finally:
            if before != 1:
                self.set_threads(before)

    def _self_test(self):
        rng = np.random.default_rng(0)
        for dtype in self.functions:
            a, b = (
                rng.standard_normal((7, 5)).astype(dtype),
                rng.standard_normal((3, 5)).astype(dtype),
            )
            out = np.ones((7, 3), dtype)
            self.gemm_accumulate(a, b.T, out)
            if not np.allclose(out, 1 + a @ b.T, rtol=1e-4):
                return False
        return True

    def _operand(self, array):
        """(pointer, leading dimension, transposed?) of a 2-D array BLAS can read, else None."""
        item = array.itemsize
        if array.strides[1] == item and array.strides[0] >= max(array.shape[1], 1) * item:
            return array.ctypes.data, array.strides[0] // item, self.NO_TRANS
        if array.strides[0] == item and array.strides[1] >= max(array.shape[0], 1) * item:
            return array.ctypes.data, array.strides[1] // item, self.TRANS
        return None

    def gemm_accumulate(self, a, b, out):
        """out += a @ b for 2-D arrays: a (M, K), b (K, N), out (M, N)."""
        function = self.functions.get(out.dtype)
        operands = None
        if function is not None and a.dtype == b.dtype == out.dtype and min(a.shape + b.shape) > 0:
            operands = [self._operand(array) for array in (a, b)]
            target = self._operand(out)
            if None in operands or target is None or target[2] != self.NO_TRANS:
                operands = None
        if operands is None:
            out += a @ b
            return
        (a_ptr, lda, trans_a), (b_ptr, ldb, trans_b) = operands
        m, k = a.shape
        function(self.ROW_MAJOR, trans_a, trans_b, m, out.shape[1], k, 1.0, a_ptr, lda,
                 b_ptr, ldb, 1.0, out.ctypes.data, out.strides[0] // out.itemsize)  # fmt: skip


BLAS = _NumpyBlas()
