"""cnnlab keeps freed large arrays for reuse (glibc), so a training step stops page-faulting."""

import resource

import numpy as np

from cnnlab.allocator import keep_freed_memory


def _faults_while(work):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    work()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _allocate_touch_free(times, nbytes):
    for _ in range(times):
        array = np.empty(nbytes, np.uint8)
        array[::4096] = 1  # touch every page
        del array


def test_freed_large_arrays_are_reused_without_new_page_faults():
    assert keep_freed_memory()  # glibc: importing cnnlab already did this
    nbytes = 48 << 20  # above glibc's largest automatic mmap threshold (32 MB)
    _allocate_touch_free(1, nbytes)
    faults = _faults_while(lambda: _allocate_touch_free(10, nbytes))
    pages = nbytes // 4096
    assert faults < pages // 10, f"{faults} page faults for 10 reuses of {pages} pages"


def test_it_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("CNNLAB_KEEP_FREED_MEMORY", "0")
    assert not keep_freed_memory()
