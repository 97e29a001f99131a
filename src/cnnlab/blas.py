"""The BLAS that NumPy itself calls, reached directly: accumulating GEMM and thread control.

NumPy's wheels ship OpenBLAS (ILP64, symbols prefixed `scipy_`). Two things NumPy does not
offer are taken from it here by ctypes, each checked and with a fallback where the library is
not found (then NumPy does the work, or the thread count is left alone).

The single-threaded BLAS path (the products inside a share of `cnnlab.threads` run on one
OpenBLAS thread, see `single_threaded`) is active when NumPy came from a Linux wheel: the
library is `numpy.libs/libscipy_openblas64_*.so`, it passes a GEMM self-test, and it exports
`openblas_set_num_threads`. It is off for NumPy built against another BLAS (conda's MKL, a
distribution's OpenBLAS) and for the macOS and Windows wheels, whose library lies elsewhere
under another name. Off, the results are the same; OpenBLAS may then wake its own threads
inside cnnlab's shares (more threads than cores, and slower), and conv's `out += a @ b`
costs a temporary. `describe()` says in one line which it is and why; the line is logged
once, at DEBUG on the "cnnlab" logger, the first time a pass or a GEMM uses the BLAS.
"""

import contextlib
import ctypes
import glob
import logging
import os
import threading

import numpy as np

LIBRARY = "libscipy_openblas64_*.so"
# OpenBLAS kernels with small-matrix GEMM kernels (no packing) for products of at most
# SMALL_PRODUCT multiply-adds: the AVX-512 ones. Elsewhere the permit is off.
SMALL_MATRIX_CORES = ("SkylakeX", "Cooperlake", "SapphireRapids")
SMALL_PRODUCT = 1_000_000
NUMPY_LIBS = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")


class _NumpyBlas:
    """out += a @ b in one call to NumPy's own bundled OpenBLAS (GEMM with beta = 1).

    NumPy's matmul cannot accumulate into its output, so `out += a @ b` costs a temporary and
    an extra pass over memory; for the KH * KW products of the conv input gradient that is most
    of the time. NumPy's wheels ship OpenBLAS (ILP64, symbols prefixed `scipy_`); when that
    library is found and passes a self-test, `gemm_accumulate` calls its cblas_?gemm directly
    (the same library and threads NumPy uses). Anywhere else it falls back to NumPy.
    """

    ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

    def __init__(self, folder=NUMPY_LIBS):
        self.functions, self.get_threads, self.set_threads, self.core = {}, None, None, None
        self.path, self.problem = None, f"not a Linux wheel's NumPy: no {LIBRARY} in {folder}"
        self._logged, self._log_lock = True, threading.Lock()  # not during the self-test
        self._load(folder)
        self._logged = False

    def _load(self, folder):
        for path in sorted(glob.glob(os.path.join(folder, LIBRARY))):
            self.path = path
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
                self.problem = f"{path} failed the GEMM self-test"
            except (OSError, AttributeError) as error:
                self.problem = f"{path} did not load: {error}"
            self.functions = {}

    def _bind_thread_control(self, library):
        try:
            get_threads = library.scipy_openblas_get_num_threads64_
            set_threads = library.scipy_openblas_set_num_threads64_
        except AttributeError:
            self.problem = f"{self.path} has no scipy_openblas_set_num_threads64_"
            return
        self.problem = None
        try:
            core_name = library.scipy_openblas_get_corename64_
            core_name.argtypes, core_name.restype = [], ctypes.c_char_p
            self.core = core_name().decode()
        except (AttributeError, UnicodeDecodeError):
            self.core = None
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
        self._log_once()
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

    def small_rows(self, k, n):
        """R, the rows of each product in the stack `product` makes of an (M, K) @ (K, N)
        product, or None where it makes one product (see there)."""
        if self.core not in SMALL_MATRIX_CORES or k < 16:
            return None
        rows = 8
        while rows * 2 * k * n <= SMALL_PRODUCT:
            rows *= 2
        return rows if rows * k * n <= SMALL_PRODUCT else None

    def product(self, a, b, out):
        """out = a @ b for 2-D arrays a (M, K), b (K, N), out (M, N).

        Where OpenBLAS has small-matrix kernels (`SMALL_MATRIX_CORES`), as a stack of products
        of R rows each, R the largest power of two with R * K * N <= SMALL_PRODUCT (NumPy hands
        the stack to BLAS one matrix at a time, in C): those kernels skip the packing of the
        operands that a large product pays for. Cached blocks of an im2col matrix, one thread,
        Intel Xeon (OpenBLAS SkylakeX): (2048 x 288) @ (288 x 32) 95-99 -> 131 GFLOP/s,
        (2048 x 288) @ (288 x 64) 116 -> 141; (1024 x 576) @ (576 x 64) unchanged (R = 16).
        One product elsewhere, where R would be below 8, and for K < 16, where the product is
        bound by writing its output (fmnist-cnn's first conv, K = 9: 0.94x as a stack).
        """
        rows = self.small_rows(*b.shape)
        whole = 0 if rows is None else len(a) - len(a) % rows
        if whole == 0 or not (a.flags.c_contiguous and out.flags.c_contiguous):
            np.matmul(a, b, out=out)
            return
        k, n = b.shape
        np.matmul(a[:whole].reshape(-1, rows, k), b, out=out[:whole].reshape(-1, rows, n))
        if whole < len(a):
            np.matmul(a[whole:], b, out=out[whole:])

    def describe(self):
        """One line: whether the single-threaded BLAS path is active, and why."""
        gemm = "through ctypes" if self.functions else "through NumPy (out += a @ b)"
        if self.problem is not None:
            return (f"BLAS: single-threaded path off ({self.problem}): OpenBLAS may use its own "
                    f"threads inside cnnlab's; accumulating GEMM {gemm}")  # fmt: skip
        return (f"BLAS: single-threaded path active: NumPy's OpenBLAS {self.path} through "
                f"ctypes, 1 thread inside cnnlab's shares, {self.get_threads()} outside; "
                f"accumulating GEMM {gemm}")  # fmt: skip

    def _log_once(self):
        if self._logged:
            return
        with self._log_lock:
            if not self._logged:
                self._logged = True
                logging.getLogger("cnnlab").debug(self.describe())

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
        self._log_once()
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


def describe() -> str:
    """One line: whether the single-threaded BLAS path is active, and why (see the module)."""
    return BLAS.describe()
