"""Host memory: keep freed blocks in the process instead of handing them back to the OS.

An S2AC update allocates and frees dozens of megabyte-sized activations (``[K, B·M, H]``,
2 MB each at the authors' MuJoCo settings). glibc's malloc serves such blocks from fresh
``mmap`` pages or returns the top of its heap to the OS once more than the trim threshold is
free, so the next update touches every page anew: a page fault and a zeroed page per 4 KiB,
several thousand per update. Raising the mmap and trim thresholds keeps the memory mapped
and reused; the price is a resident size that stays at the update's peak. ``tools/bench.py``
measures the difference (``--system-allocator``), the README gives the figures.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
"""Blocks below this come from the heap. 32 MiB is the largest value every glibc accepts
(older ones refuse more than half their heap size)."""
TRIM_THRESHOLD_BYTES = 2**30
"""Free memory at the top of the heap is returned to the OS only beyond this."""


def keep_freed_host_memory() -> bool:
    """Make glibc's malloc reuse freed blocks up to 32 MiB rather than return them to the OS.

    Process-wide and lasting; call it once at the start of a training or benchmark process.

    Returns:
        True if the C library took both settings; False where there is no glibc ``mallopt``
        (macOS, Windows, musl), which leaves the allocator as it was.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    took_mmap = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    took_trim = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return took_mmap and took_trim
