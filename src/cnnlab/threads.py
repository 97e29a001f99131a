"""The ops' work, split over the batch and run on several cores at once.

    cnnlab.set_num_threads(2)     # as torch.set_num_threads; get_num_threads() reads it

OpenBLAS runs the matrix products on every core, but NumPy runs each copy and elementwise pass
on one. Between the products a training step is such passes (im2col, padding, ReLU, pooling and
their gradients), bound by memory bandwidth, which one core does not saturate: on the 2-core
machine an im2col copy of 128 x 32 x 32 x 32 takes 8.6 ms on one thread and 5.4 ms on two, a
ReLU over it 1.6 and 1.0. NumPy releases the GIL inside these loops, so Python threads that each
take a contiguous share of the images run them side by side.

The matrix products are split the same way, each share on one BLAS thread: as fast as
OpenBLAS's own two threads (often faster: 117 against 109 GFLOP/s for the (131072 x 288) @
(288 x 32) product of a 32-channel conv), and OpenBLAS's threads then never wake, so they
never spin on a core that the next copy needs (after one of its products they spin for a
while, and a 2-thread ReLU then ran no faster than a 1-thread one).

No reduction is ever split: a copy or an elementwise pass gives bit-identical results for every
thread count, and a matrix product split by its shares agrees with the unsplit one to rounding
(OpenBLAS may sum a dot product in another order inside a smaller product). For a given thread
count everything is deterministic.

Passes made of many short NumPy calls are not split: the cache-blocked GELU, softmax and layer
norm (`in_blocks`), about 20 calls of 10-20 us on each block of 65536 values. Every call gives
the GIL back and takes it again, and a second thread running the same kind of pass then waits
for it at nearly every call: on the 2-core machine (other processes running) the worker's share
started only when the caller's had finished, and with each thread pinned to its own core the
two shares ran side by side at 40% of their speed alone (1.3 -> 3.3 ms of CPU each, the ViT's
GELU). Not splitting them took the ViT's benchmark from 1,560 to 1,720 images/s in inference
and from 480 to 535 in training with 2 threads (the matrix products, one long BLAS call per
share, still split).

The default thread count is CNNLAB_NUM_THREADS, else OPENBLAS_NUM_THREADS, else
OMP_NUM_THREADS, else the number of cores this process may run on: the same count as the
matrix products.

Passes may come from several threads at once, and a share may itself call `parallel_for`: that
nested pass runs inline, on the share's thread (its pool's workers may all be busy with the
shares that wait for it). A pass reads the thread count and takes its pool in one step, under
a lock; `set_num_threads` then never waits for a running pass and never takes its pool from
under it: the pass finishes on the pool it started with, whose workers leave afterwards.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from cnnlab.blas import BLAS

# Below this many bytes of work one thread does it: handing a share to another thread costs
# tens of microseconds, the time a core needs for about a megabyte.
MIN_BYTES = 1 << 20

_ENVIRONMENT = ("CNNLAB_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def _default_num_threads():
    for name in _ENVIRONMENT:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _ThreadState(threading.local):
    in_share = False  # True while this thread runs a share of a pass


_num_threads = _default_num_threads()
_pool, _pool_workers = None, 0
_lock = threading.Lock()  # the thread count and the pool change together, passes start alone
_this_thread = _ThreadState()


def _forget_the_pool():
    """In a forked child: the parent's workers (and whoever held the lock) are not there."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_the_pool)


def get_num_threads() -> int:
    """How many threads the ops' copies and elementwise passes use."""
    return _num_threads


def set_num_threads(count: int) -> None:
    """Use `count` threads (>= 1) for the ops' copies and elementwise passes from now on.

    The ops' matrix products are split over the same threads, each share on one BLAS thread.
    A pass already running finishes on the threads it started with.
    """
    global _num_threads, _pool
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    with _lock:
        _num_threads = count
        if _pool is not None and _pool_workers != count - 1:
            _pool.shutdown(wait=False)  # its queued shares still run, then its workers leave
            _pool = None


def parallel_for(function, length: int, nbytes: int) -> None:
    """Call function(share) for contiguous slices `share` that together cover range(length),
    one per thread, at once; all on this thread when `nbytes` (the work's size) is small or
    when this thread is itself running a share of a pass.

    BLAS calls inside run on their caller's thread alone (see `BLAS.single_threaded`): a
    matrix product is split by its share like any other pass. The shares must write disjoint
    memory. An exception in any share is raised here, after every share has finished.
    """
    with BLAS.single_threaded():
        first, futures = None, []
        if nbytes >= MIN_BYTES and not _this_thread.in_share:
            first, futures = _hand_out(function, length)
        if first is None:
            function(slice(0, length))
            return
        try:
            _run_share(function, first)
        finally:
            errors = [future.exception() for future in futures]
        for error in errors:
            if error is not None:
                raise error


def _hand_out(function, length):
    """Split range(length) by the thread count and submit every share but the first to the
    pool, both read under the lock. Returns (first share, futures), or (None, []) for one."""
    global _pool, _pool_workers
    with _lock:
        parts = min(_num_threads, length)
        if parts <= 1:
            return None, []
        if _pool is None:
            _pool_workers = _num_threads - 1
            _pool = ThreadPoolExecutor(_pool_workers, thread_name_prefix="cnnlab")
        bounds = [length * part // parts for part in range(parts + 1)]
        shares = [slice(bounds[part], bounds[part + 1]) for part in range(parts)]
        futures = [_pool.submit(_run_share, function, share) for share in shares[1:]]
    return shares[0], futures


def _run_share(function, share):
    _this_thread.in_share = True
    try:
        function(share)
    finally:
        _this_thread.in_share = False


def in_blocks(function, length: int, step: int) -> None:
    """Call function(block) for consecutive slices `block` of `step` (the last may be shorter)
    that together cover range(length), in order, on this thread: a pass made of many short
    NumPy calls over blocks that stay in cache, which two threads do no faster (see above)."""
    for start in range(0, length, step):
        function(slice(start, min(start + step, length)))
