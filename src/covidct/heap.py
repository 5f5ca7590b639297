"""Handing freed heap memory back to the operating system (glibc's malloc_trim).

The analysis allocates many per-batch arrays below glibc's mmap threshold (which grows to
32 MB); once freed they stay in the process heap: 0.55 GB after a 300-slice series on
this project's test machine (benchmarks/heap_release.py ->
benchmarks/results/heap_release.txt). The export stage then allocates its large arrays
(DICOM SEG frames, NIfTI buffers) by mmap on top of that. Returning the free heap first
lowers the peak resident memory by as much.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():  # the libc function, or None where there is none (musl, macOS)
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_heap() -> bool:
    """Return free memory at the top and inside the heap to the OS (glibc malloc_trim(0)).

    Returns True when glibc released some memory, False when none was released or the C
    library has no malloc_trim. Never raises.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
