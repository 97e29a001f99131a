"""cnnlab keeps freed large arrays for reuse (glibc), so a training step stops page-faulting.

Proved by counting, never by the clock: glibc's own statistics (mallinfo2) say whether a large
array came from the heap or from a fresh mmap and whether its memory stayed in the heap once
freed, and the kernel counts this thread's page faults. Each measurement is also made with the
setting off (in a fresh process), where it must come out the other way.
"""

import ctypes
import ctypes.util
import json
import os
import resource
import subprocess
import sys

import numpy as np

from cnnlab.allocator import keep_freed_memory

NBYTES = 48 << 20  # above glibc's largest automatic mmap threshold (32 MB)
REUSES = 10


class MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33 and later): sizes in bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def mallinfo():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


def thread_page_faults():
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt  # this thread's only


def allocate_touch_free(times):
    for _ in range(times):
        array = np.empty(NBYTES, np.uint8)
        array[::4096] = 1  # touch every page
        del array


def measure():
    """mmapped bytes added while one large array is alive, heap bytes left free after it is
    freed, and the page faults of REUSES more allocations of it."""
    before = mallinfo().hblkhd
    array = np.empty(NBYTES, np.uint8)
    mmapped = mallinfo().hblkhd - before
    del array
    free_in_heap = mallinfo().fordblks
    allocate_touch_free(1)
    start = thread_page_faults()
    allocate_touch_free(REUSES)
    return {"mmapped": mmapped, "free_in_heap": free_in_heap,
            "faults": thread_page_faults() - start}


def measure_in_fresh_process(keep):
    """measure() in a new interpreter that imports cnnlab with CNNLAB_KEEP_FREED_MEMORY=keep."""
    code = "import cnnlab, test_allocator, json; print(json.dumps(test_allocator.measure()))"
    environment = {**os.environ, "CNNLAB_KEEP_FREED_MEMORY": keep,
                   "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    result = subprocess.run([sys.executable, "-c", code], env=environment, check=True,
                            capture_output=True, text=True)
    return json.loads(result.stdout)


def test_large_arrays_come_from_the_heap_and_stay_there_for_reuse():
    assert keep_freed_memory()  # glibc: importing cnnlab already did this
    measured = measure()
    assert measured["mmapped"] == 0, measured  # from the heap, not a fresh mmap
    assert measured["free_in_heap"] >= NBYTES, measured  # freed, kept: not trimmed
    # Reusing heap memory touches pages that are already mapped: fewer faults than reuses
    # (with the setting off every reuse faults at least once, see the test below).
    assert measured["faults"] < REUSES, measured


def test_the_same_measurements_differ_with_the_setting_off():
    """What the test above asserts fails without the setting: the measurements can tell."""
    off, on = measure_in_fresh_process("0"), measure_in_fresh_process("1")
    assert off["mmapped"] >= NBYTES and off["faults"] >= REUSES, off
    assert on["mmapped"] == 0 and on["faults"] < REUSES, on


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CNNLAB_KEEP_FREED_MEMORY", "0")
    assert not keep_freed_memory()
