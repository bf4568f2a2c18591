"""The process's memory policy for slskd's big download lists (glibc only; a no-op elsewhere).

Its own module, not the HTTP client's business: `tune_allocator` is process-wide (the agent calls
it once, at start), and `trim_heap` hands back what a big parse freed. It sits in the slskd layer
because the big transient blocks it is about are slskd's list bodies and their parse, and the
client (which the layer rules let import only core, foundation and slskd) trims after a read.
"""

from __future__ import annotations

import sys
from typing import Callable

TRIM_AFTER = 1 << 20  # bytes of body: below this a poll's garbage is too small to matter


def tune_allocator() -> None:
    """Keep the per-poll big buffers out of the heap, so idle memory does not ratchet up.

    Process-wide, so it is called by the long-running agent (Agent.start), never on import.

    Each poll allocates a few large transient blocks (the response body, orjson's scratch
    buffer of ~15x the body). glibc's first free of such a block raises its mmap threshold
    to the block's size, after which every later one is carved from the heap and stays
    resident after it is freed (measured: +4 MB RSS at 2,000 transfers, +5 MB at 10,000).
    Pinning the threshold at glibc's default (128 KiB) keeps them mmapped and returned.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; not on musl: harmless
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no ctypes, or not glibc
        pass


def trim_heap(body_size: int) -> None:
    """Hand the pages a big poll's parse freed back to the system (glibc only; else a no-op).

    The parse of a 5.6 MB list (10,000 transfers) builds a tree of ~150,000 objects and frees
    it at once; glibc keeps most of those pages, in the heap of each worker thread that ever
    polled, because a few live blocks sit above them. malloc_trim(0) releases every free page.
    Measured: idle RSS at 10,000 listed transfers 57 MB without it (benchmarks/idle.py).
    """
    if body_size < TRIM_AFTER or _malloc_trim is None:
        return
    _malloc_trim(0)


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once; None where there is no glibc (musl, macOS, no ctypes)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
        return trim
    except (ImportError, OSError, AttributeError):  # pragma: no cover - no ctypes, or not glibc (musl)
        return None


_malloc_trim = _find_malloc_trim()

__all__ = ["TRIM_AFTER", "trim_heap", "tune_allocator"]
