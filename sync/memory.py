"""Freed memory handed back to the system between batches.

glibc's allocator keeps the pages a batch freed for the next one, in pieces a batch of a
different shape cannot always reuse, so a long run's resident memory creeps up batch after
batch although what it holds does not grow; Arrow's own pool (mimalloc or jemalloc) keeps what
it freed too. Trimming both after each batch keeps the peak at what one batch needs. Elsewhere
(macOS, musl) glibc's trim does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache


M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3
"""glibc's `mallopt` parameters (malloc.h)."""
STEADY_HEAPS = 2
LARGE_BLOCK = 128 * 1024
"""glibc's own starting mmap threshold, kept fixed."""


@lru_cache(maxsize=1)
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def steady_allocator() -> None:
    """Set the allocators for a long batch-by-batch run, once, before its threads start.

    glibc raises its mmap threshold each time a large block is freed, up to 32 MiB, so after
    the first batches a batch's arrays come from the heap, where freed pieces of one shape do
    not fit the next batch's; and every thread that allocates (read-ahead, write-behind) gets
    a heap of its own. A fixed threshold (glibc's initial 128 KiB) gives every large array
    back to the system when freed, and two heaps serve all threads. Arrow allocates from the
    same heap instead of its own pool (mimalloc), which kept what a whole-project export's
    parse had freed (30,000 subjects: 15 MiB, against 8 from glibc).

    Measured on kit copies of the bench's project, one full sync each on the same machine:
    10,000 subjects 332 -> 264 MiB peak, 30,000 subjects 357 -> 298 MiB (glibc settings
    alone); the cut of 10,000 subjects 299 -> 273 MiB with Arrow on the heap, no slower.
    `ecrf sync` and `ecrf export` set it (not the embedded server); it is process-wide, so
    library callers choose for themselves."""
    import pyarrow as pa

    libc = _glibc()
    if libc is None:
        return
    libc.mallopt(M_ARENA_MAX, STEADY_HEAPS)
    libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
    pa.set_memory_pool(pa.system_memory_pool())


def release_freed_memory() -> None:
    """Give the heap's and Arrow's free pages back to the system (glibc `malloc_trim`)."""
    import pyarrow as pa  # here: the `ecrf` command imports this module

    pa.default_memory_pool().release_unused()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
