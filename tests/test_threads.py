"""Work split over threads: copies and elementwise passes give bit-identical results, matrix
products split by share agree with the unsplit ones to rounding."""

import contextlib
import json
import logging
import os
import pathlib
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import cnnlab
import cnnlab.nn.functional as F
from cnnlab import threads
from cnnlab.threads import parallel_for


@pytest.fixture
def split_everything(monkeypatch):
    """Let every call split, however small, and restore the thread count afterwards."""
    monkeypatch.setattr(threads, "MIN_BYTES", 0)
    before = cnnlab.get_num_threads()
    yield
    cnnlab.set_num_threads(before)


def _outputs_and_grads(op, arrays):
    tensors = [cnnlab.tensor(a, requires_grad=True) for a in arrays]
    out = op(*tensors)
    upstream = np.random.default_rng(1).standard_normal(out.shape).astype(out.data.dtype)
    out.backward(upstream)
    return [out.data] + [t.grad for t in tensors]


OPS = {  # name: (op, input shapes)
    "conv2d padded": (
        lambda x, w, b: F.conv2d(x, w, b, padding=1), [(5, 3, 9, 8), (4, 3, 3, 3), (4,)]),
    "conv2d strided": (
        lambda x, w: F.conv2d(x, w, stride=2, padding=(1, 0)), [(5, 2, 9, 8), (3, 2, 3, 2)]),
    "conv2d wide": (
        lambda x, w, b: F.conv2d(x, w, b, padding=2), [(6, 1, 7, 7), (9, 1, 5, 3), (9,)]),
    "conv2d 1x1": (lambda x, w: F.conv2d(x, w), [(7, 3, 4, 4), (2, 3, 1, 1)]),
    "relu": (F.relu, [(6, 3, 5, 5)]),
    "max_pool2d 2x2": (lambda x: F.max_pool2d(x, 2), [(5, 3, 8, 6)]),
    "max_pool2d overlapping padded": (
        lambda x: F.max_pool2d(x, 3, stride=2, padding=1), [(5, 2, 9, 7)]),
    "avg_pool2d padded": (lambda x: F.avg_pool2d(x, 3, stride=1, padding=1), [(5, 2, 6, 6)]),
    "batch_norm": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        [(6, 3, 5, 4), (3,), (3,)]),
    "batch_norm 1d eval": (
        lambda x, w, b: F.batch_norm(x, np.zeros(4), np.ones(4), w, b), [(7, 4), (4,), (4,)]),
    "matmul tall": (lambda a, b: a @ b, [(9, 7), (7, 5)]),
    "matmul wide": (lambda a, b: a @ b, [(3, 7), (7, 11)]),
    "linear": (F.linear, [(6, 5), (4, 5), (4,)]),
    "batched matmul": (lambda a, b: a @ b, [(5, 2, 3, 4), (5, 2, 4, 3)]),
    "layer_norm (matvec sums)": (
        lambda x, w, b: F.layer_norm(x, 6, w, b), [(5, 7, 6), (6,), (6,)]),
    "softmax (matvec sums)": (lambda x: F.softmax(x, -1), [(5, 3, 7)]),
    "gelu": (F.gelu, [(6, 3, 5, 5)]),
    "self_attention (batched matmul, matvec sums)": (
        lambda qkv: F.self_attention(qkv, 2), [(5, 4, 12)]),
    "conv relu pool": (
        lambda x, w: F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2),
        [(6, 2, 8, 8), (4, 2, 3, 3)]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_thread_count_gives_the_same_bits(split_everything, name, dtype):
    op, shapes = OPS[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    if name.startswith("max_pool2d"):
        arrays[0] = np.round(arrays[0])  # ties: the first maximum must win in every share
    cnnlab.set_num_threads(1)
    reference = _outputs_and_grads(op, arrays)
    # OpenBLAS may order a dot product differently in a smaller product (another kernel for
    # the edge of a share), so what passes through a GEMM agrees to rounding; the rest exactly.
    gemm = any(word in name for word in ("conv", "matmul", "linear", "matvec"))
    rtol = 0 if not gemm else 1e-6 if dtype == np.float32 else 1e-14
    for count in (2, 3, 8):  # 8 threads on 5-7 images: some shares hold a single image
        cnnlab.set_num_threads(count)
        for got, want in zip(_outputs_and_grads(op, arrays), reference, strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            scale = np.abs(want).max()
            assert np.abs(got - want).max() <= rtol * scale, f"{name} with {count} threads"


@pytest.mark.parametrize("name", [name for name in OPS if "conv" in name])
def test_cache_blocks_of_single_images_give_the_same_results(monkeypatch, name):
    from cnnlab.ops import conv

    op, shapes = OPS[name]
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(shape) for shape in shapes]  # float64
    reference = _outputs_and_grads(op, arrays)
    monkeypatch.setattr(conv, "BLOCK_BYTES", 1)  # every image its own block
    for got, want in zip(_outputs_and_grads(op, arrays), reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    with cnnlab.no_grad():  # inference: the columns go through one block-sized buffer
        np.testing.assert_allclose(op(*map(cnnlab.tensor, arrays)).data, reference[0],
                                   rtol=1e-13, atol=1e-13)


def test_threads_keep_the_nhwc_memory_order_of_conv_outputs(split_everything):
    cnnlab.set_num_threads(2)
    x = cnnlab.tensor(np.ones((4, 3, 6, 6), np.float32))
    w = cnnlab.tensor(np.ones((5, 3, 3, 3), np.float32))
    out = F.max_pool2d(F.relu(F.conv2d(x, w, padding=1)), 2)
    assert out.data.transpose(0, 2, 3, 1).flags.c_contiguous


def test_training_steps_agree_with_one_and_two_threads(split_everything):
    def train(count):
        cnnlab.set_num_threads(count)
        cnnlab.manual_seed(0)
        model = cnnlab.nn.Sequential(
            cnnlab.nn.Conv2d(1, 4, 3, padding=1), cnnlab.nn.ReLU(), cnnlab.nn.MaxPool2d(2),
            cnnlab.nn.Flatten(), cnnlab.nn.Linear(4 * 4 * 4, 3),
        )
        optimizer = cnnlab.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((9, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 3, 9)
        for _ in range(3):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(cnnlab.tensor(x)), cnnlab.tensor(y))
            loss.backward()
            optimizer.step()
        return [p.data.copy() for p in model.parameters()]

    for one, two in zip(train(1), train(2), strict=True):
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6)


def test_parallel_for_covers_the_range_once_in_contiguous_shares(split_everything):
    cnnlab.set_num_threads(3)
    seen = np.zeros(10, int)
    shares = []

    def work(share):
        shares.append(share)
        seen[share] += 1

    parallel_for(work, 10, nbytes=1)
    assert seen.tolist() == [1] * 10
    assert sorted((s.start, s.stop) for s in shares) == [(0, 3), (3, 6), (6, 10)]


@pytest.mark.parametrize("a_shape, b_shape, axis", [
    ((6, 8), (8, 4), 0),  # 6 rows of the result against 4 columns: split the rows
    ((3, 8), (8, 5), 1),  # 3 rows against 5 columns: split the columns
])
def test_matrix_products_split_the_longer_side_of_the_result(split_everything, monkeypatch, rng,
                                                             a_shape, b_shape, axis):
    from cnnlab.ops import matmul

    cnnlab.set_num_threads(3)
    shares, split = [], matmul.parallel_for

    def recording(function, length, nbytes):
        split(lambda share: (shares.append(share), function(share)), length, nbytes)

    monkeypatch.setattr(matmul, "parallel_for", recording)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_allclose(matmul.product(a, b), a @ b, rtol=1e-14)
    longer = a_shape[0] if axis == 0 else b_shape[1]
    expected = [(longer * k // 3, longer * (k + 1) // 3) for k in range(3)]
    assert sorted((s.start, s.stop) for s in shares) == expected
    shares.clear()  # the accumulating product (Linear's, after its bias) splits alike
    start = rng.standard_normal((a_shape[0], b_shape[1]))
    out = start.copy()
    matmul.add_product(a, b, out)
    np.testing.assert_allclose(out, start + a @ b, rtol=1e-14)
    assert sorted((s.start, s.stop) for s in shares) == expected


def test_in_blocks_covers_the_range_in_order_on_the_calling_thread(split_everything):
    cnnlab.set_num_threads(3)
    calls = []
    threads.in_blocks(lambda block: calls.append((block, threading.get_ident())), 10, 4)
    assert [block for block, _ in calls] == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert {thread for _, thread in calls} == {threading.get_ident()}
    threads.in_blocks(calls.append, 0, 4)
    assert len(calls) == 3


def test_small_work_stays_on_the_calling_thread(monkeypatch):
    before = cnnlab.get_num_threads()
    try:
        cnnlab.set_num_threads(4)
        shares = []
        parallel_for(shares.append, 100, nbytes=threads.MIN_BYTES - 1)
        assert shares == [slice(0, 100)]
    finally:
        cnnlab.set_num_threads(before)


def test_an_error_in_any_share_is_raised_after_all_shares_finish(split_everything):
    cnnlab.set_num_threads(2)
    finished = []

    def work(share):
        if share.start > 0:
            raise ValueError("second share failed")
        finished.append(share)

    with pytest.raises(ValueError, match="second share failed"):
        parallel_for(work, 4, nbytes=1)
    assert finished == [slice(0, 2)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="set_num_threads: expected a positive int"):
        cnnlab.set_num_threads(bad)


def test_the_default_follows_the_environment(monkeypatch):
    for name in threads._ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert threads._default_num_threads() == 3
    monkeypatch.setenv("CNNLAB_NUM_THREADS", "5")
    assert threads._default_num_threads() == 5
    monkeypatch.setenv("CNNLAB_NUM_THREADS", "zero")  # not a count: the next one decides
    assert threads._default_num_threads() == 3


def test_blas_runs_single_threaded_inside_shares_and_is_restored_after(split_everything):
    from cnnlab.blas import BLAS

    if BLAS.set_threads is None:
        pytest.fail("NumPy's bundled OpenBLAS was not found: cnnlab cannot control its threads")
    before = BLAS.get_threads()
    BLAS.set_threads(2)
    try:
        cnnlab.set_num_threads(2)
        seen = []
        parallel_for(lambda share: seen.append(BLAS.get_threads()), 4, nbytes=1)
        assert seen == [1, 1]
        assert BLAS.get_threads() == 2
        with pytest.raises(RuntimeError, match="inside"):
            with BLAS.single_threaded():
                assert BLAS.get_threads() == 1
                raise RuntimeError("inside")
        assert BLAS.get_threads() == 2
    finally:
        BLAS.set_threads(before)


def test_a_forked_child_gets_its_own_workers(split_everything):
    import multiprocessing

    cnnlab.set_num_threads(2)
    parallel_for(lambda share: None, 4, nbytes=1)  # the parent's workers exist
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:
        # Without its own workers the child would wait for ever on the parent's (gone) ones.
        result = pool.apply_async(_relu_in_a_child).get(timeout=30)
    assert result == [0.0, 0.0, 1.0, 2.0]


def _relu_in_a_child():
    return F.relu(cnnlab.tensor(np.array([-1.0, 0.0, 1.0, 2.0]))).data.tolist()


def _run_python(code):
    """Run `code` in a fresh interpreter and return its stdout: a pass that deadlocks is killed
    by the timeout (and fails the test) instead of hanging the suite and its exit."""
    source = pathlib.Path(cnnlab.__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(source)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_parallel_for_inside_a_share_runs_inline_on_that_share_s_thread():
    output = _run_python("""
        import json, threading
        import cnnlab
        from cnnlab import threads

        threads.MIN_BYTES = 0
        cnnlab.set_num_threads(2)  # one worker: a nested pass queued behind it would wait forever
        seen = []

        def outer(outer_share):
            name = threading.current_thread().name
            def inner(share):
                seen.append([outer_share.start, share.start, share.stop,
                             threading.current_thread().name == name])
            threads.parallel_for(inner, 4, nbytes=1)

        threads.parallel_for(outer, 2, nbytes=1)
        print(json.dumps(sorted(seen)))
    """)
    assert json.loads(output) == [[0, 0, 4, True], [1, 0, 4, True]]


def test_set_num_threads_during_a_pass_lets_it_finish_on_the_pool_it_started_with(
    split_everything,
):
    cnnlab.set_num_threads(2)
    running, changed = threading.Barrier(3, timeout=30), threading.Event()
    shares, waited = [], []

    def work(share):
        running.wait()  # both shares are running, one of them on a worker
        waited.append(changed.wait(timeout=10))
        shares.append((share.start, share.stop))

    thread = threading.Thread(target=parallel_for, args=(work, 4), kwargs={"nbytes": 1})
    thread.start()
    running.wait()
    cnnlab.set_num_threads(1)  # must neither wait for the pass nor take its workers
    changed.set()
    thread.join(timeout=30)
    assert waited == [True, True] and sorted(shares) == [(0, 2), (2, 4)]
    shares.clear()
    parallel_for(lambda share: shares.append((share.start, share.stop)), 4, nbytes=1)
    assert shares == [(0, 4)]  # the next pass has the new count


def test_set_num_threads_from_another_thread_as_a_pass_begins_cannot_break_it(
    split_everything, monkeypatch,
):
    from cnnlab.blas import BLAS

    cnnlab.set_num_threads(2)
    parallel_for(lambda share: None, 4, nbytes=1)  # the pool of one worker exists
    single_threaded = BLAS.single_threaded

    @contextlib.contextmanager
    def switch_to_one_thread():  # lands where a thread switch could: as the pass begins
        other = threading.Thread(target=cnnlab.set_num_threads, args=(1,))
        other.start()
        other.join(timeout=30)
        with single_threaded():
            yield

    monkeypatch.setattr(threads.BLAS, "single_threaded", switch_to_one_thread)
    shares = []
    parallel_for(lambda share: shares.append((share.start, share.stop)), 4, nbytes=1)
    assert shares == [(0, 4)] and cnnlab.get_num_threads() == 1


def test_passes_and_set_num_threads_racing_in_two_threads_never_lose_a_share(split_everything):
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to meet every race
    errors, counts = [], np.zeros(7, int)

    def passes():
        try:
            for _ in range(1000):
                parallel_for(lambda share: np.add.at(counts, np.arange(7)[share], 1), 7, 1)
        except Exception as error:
            errors.append(error)

    try:
        thread = threading.Thread(target=passes)
        thread.start()
        for index in range(1_000_000):  # 1 and 2 in turn until the passes are done
            if not thread.is_alive():
                break
            cnnlab.set_num_threads(1 + index % 2)
        thread.join(timeout=60)
    finally:
        sys.setswitchinterval(switch_interval)
    assert not thread.is_alive() and errors == [] and counts.tolist() == [1000] * 7


def test_describe_says_in_one_line_whether_the_single_threaded_blas_path_is_active(tmp_path):
    from cnnlab.blas import BLAS, _NumpyBlas, describe

    line = describe()
    assert "\n" not in line and line.startswith("BLAS: single-threaded path")
    assert ("path active" in line) == (BLAS.set_threads is not None)
    # NumPy's wheel on Linux carries the library: here the path must be active.
    assert "path active" in line and "libscipy_openblas64_" in line, line
    missing = _NumpyBlas(folder=str(tmp_path)).describe()
    assert missing.startswith("BLAS: single-threaded path off (not a Linux wheel's NumPy: no")
    assert str(tmp_path) in missing and "through NumPy" in missing


def test_the_blas_line_is_logged_once_at_debug_when_first_used(caplog, split_everything):
    from cnnlab.blas import _NumpyBlas

    caplog.set_level(logging.DEBUG, logger="cnnlab")
    blas = _NumpyBlas()
    assert caplog.records == []  # loading (and its self-test) logs nothing
    with blas.single_threaded():
        blas.gemm_accumulate(np.ones((2, 3)), np.ones((3, 2)), np.zeros((2, 2)))
    with blas.single_threaded():
        pass
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("cnnlab", "DEBUG", blas.describe())
    ]
