"""covidct.heap: freed heap memory handed back to the OS (glibc malloc_trim)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import numpy as np
import pytest

from covidct.export.outputs import _no_cyclic_gc
from covidct.heap import _malloc_trim, release_free_heap


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None,
                    reason="glibc's malloc_trim")
def test_freed_heap_blocks_go_back_to_the_os():
    # blocks of 64 KB (below glibc's mmap threshold: they come from the heap), each followed
    # by a kept 4 KB block, so that free() cannot shrink the heap: only malloc_trim returns
    # the holes
    blocks, pins = [], []
    for _ in range(3000):
        blocks.append(np.ones(16_000, np.float32))
        pins.append(np.ones(1_000, np.float32))
    del blocks
    before = _rss_mb()
    assert release_free_heap() is True
    assert _rss_mb() < before - 100  # of the 190 MB freed
    assert sum(float(p.sum()) for p in pins) == 3000 * 1000


def test_cyclic_gc_paused_and_restored():
    assert gc.isenabled()
    with _no_cyclic_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with _no_cyclic_gc():
            pass
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
