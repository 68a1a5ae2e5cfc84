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

import pyarrow as pa


@lru_cache(maxsize=1)
def _trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Give the heap's and Arrow's free pages back to the system (glibc `malloc_trim`)."""
    pa.default_memory_pool().release_unused()
    trim = _trim()
    if trim is not None:
        trim(0)
