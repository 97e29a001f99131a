"""cnnlab.blas: BLAS.product, the product split into a stack of small ones where OpenBLAS has
small-matrix kernels.

What these tests prove:
- with an AVX-512 kernel named (as OpenBLAS reports SkylakeX), the stack's row count R is the
  largest power of two with R * K * N <= SMALL_PRODUCT, and none for K < 16 or where R would be
  below 8; with another kernel (Haswell) there is never a stack;
- either way the product equals a @ b (float32 and float64), rows left over after the last
  whole stack included, and outputs that are views with gaps are written in place.
"""

import numpy as np
import pytest

from cnnlab.blas import BLAS, SMALL_PRODUCT


@pytest.fixture(params=["SkylakeX", "Haswell"])
def core(request, monkeypatch):
    monkeypatch.setattr(BLAS, "core", request.param)
    return request.param


def test_the_stack_rows_follow_the_small_matrix_limit(core):
    if core == "Haswell":
        assert BLAS.small_rows(288, 32) is None
        return
    assert BLAS.small_rows(288, 32) == 64  # 64 * 288 * 32 = 589,824 <= 1e6 < 2 * that
    assert BLAS.small_rows(288, 64) == 32
    assert BLAS.small_rows(576, 64) == 16
    assert BLAS.small_rows(9, 32) is None  # K < 16: one product
    assert BLAS.small_rows(4096, 256) is None  # R would be below 8
    for k, n in [(27, 32), (288, 32), (576, 64), (100, 100)]:
        rows = BLAS.small_rows(k, n)
        assert rows * k * n <= SMALL_PRODUCT < 2 * rows * k * n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [1, 64, 640, 1000])  # 1000 = 15 stacks of 64 and 40 rows left
def test_the_product_equals_matmul(core, dtype, m):
    rng = np.random.default_rng(m)
    a, b = rng.standard_normal((m, 288)).astype(dtype), rng.standard_normal((288, 32)).astype(dtype)
    out = np.full((m, 32), np.nan, dtype)
    BLAS.product(a, b, out)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)


def test_an_output_with_gaps_is_written_in_place(core):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((256, 288)), rng.standard_normal((288, 32))
    wide = np.zeros((256, 64))
    BLAS.product(a, b, wide[:, ::2])
    np.testing.assert_allclose(wide[:, ::2], a @ b, rtol=1e-12)
    assert not wide[:, 1::2].any()
