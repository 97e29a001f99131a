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

The default thread count is CNNLAB_NUM_THREADS, else OPENBLAS_NUM_THREADS, else
OMP_NUM_THREADS, else the number of cores this process may run on: the same count as the
matrix products.
"""

import os
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


_num_threads = _default_num_threads()
_executor, _executor_pid = None, None


def get_num_threads() -> int:
    """How many threads the ops' copies and elementwise passes use."""
    return _num_threads


def set_num_threads(count: int) -> None:
    """Use `count` threads (>= 1) for the ops' copies and elementwise passes from now on.

    The ops' matrix products are split over the same threads, each share on one BLAS thread.
    """
    global _num_threads, _executor
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    if count != _num_threads and _executor is not None:
        _executor.shutdown()
        _executor = None
    _num_threads = count


def parallel_for(function, length: int, nbytes: int) -> None:
    """Call function(share) for contiguous slices `share` that together cover range(length),
    one per thread, at once; all on this thread when `nbytes` (the work's size) is small.

    BLAS calls inside run on their caller's thread alone (see `BLAS.single_threaded`): a
    matrix product is split by its share like any other pass. The shares must write disjoint
    memory. An exception in any share is raised here, after every share has finished.
    """
    parts = min(_num_threads, length) if nbytes >= MIN_BYTES else 1
    with BLAS.single_threaded():
        if parts <= 1:
            function(slice(0, length))
        else:
            _run_shares(function, length, parts)


def _run_shares(function, length, parts):
    global _executor, _executor_pid
    if _executor is None or _executor_pid != os.getpid():  # a forked child has no workers
        _executor = ThreadPoolExecutor(_num_threads - 1, thread_name_prefix="cnnlab")
        _executor_pid = os.getpid()
    bounds = [length * part // parts for part in range(parts + 1)]
    shares = [slice(bounds[part], bounds[part + 1]) for part in range(parts)]
    futures = [_executor.submit(function, share) for share in shares[1:]]
    try:
        function(shares[0])
    finally:
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error
