"""Keep large CPU tensor allocations in the heap (glibc), so a batch does not page-fault afresh.

PyTorch has no caching allocator for CPU tensors: every tensor is a ``malloc`` and a ``free``.
glibc serves a request above its mmap threshold (dynamic, at most 32 MiB by default) with a
fresh ``mmap`` and returns it with ``munmap``, so each such tensor is zero-filled by the kernel,
one page fault per 4 KiB page, every time. A batch of requests crosses that threshold where a
single request does not: scoring 8 episodes of 5 frames (320x240) in one call builds 74 MB of
pixel values, and the Qwen2-VL processor alone then took 34,000 page faults and 0.12 s per call,
against 0.08 s for the same 8 episodes one call each (``benchmarks/vector_reward.py``).

:func:`retain_cpu_memory` raises the mmap threshold to 1 GiB and the trim threshold to 2 GiB,
so such allocations come from the heap and freed memory is reused rather than handed back. This
is what jemalloc or tcmalloc do, which PyTorch's CPU performance guides recommend preloading; a
library cannot preload an allocator, but it can set glibc's parameters. The setting is
process-wide: the process keeps its peak heap instead of shrinking after each batch. It is a
no-op (False) where the C library is not glibc. On GPUs, PyTorch's caching allocator already
reuses memory, and the backend does not call this.

Limits: glibc releases before ~2.30 accept at most 32 MiB for the mmap threshold; it is then
set to that (:data:`applied_threshold` says which). Threads other than the main one allocate
from their own arenas, whose heaps hold at most 64 MiB each, so there a single allocation above
64 MiB is still mapped afresh (e.g. the batch of pixel values when ``EQARMVectorReward`` scores
in its background thread, or in ``eqarm serve``'s batcher thread); smaller ones are retained.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30
LEGACY_MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = (1 << 31) - 1  # an int parameter: its largest value, ~2 GiB

_done: bool | None = None
#: The mmap threshold set by :func:`retain_cpu_memory` (bytes), or None.
applied_threshold: int | None = None


def retain_cpu_memory() -> bool:
    """Set glibc's mmap and trim thresholds (see module doc) once per process; True if set."""
    global _done, applied_threshold
    if _done is not None:
        return _done
    _done = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        for threshold in (MMAP_THRESHOLD, LEGACY_MMAP_THRESHOLD):  # older glibc: 32 MiB at most
            if libc.mallopt(M_MMAP_THRESHOLD, threshold):
                applied_threshold = threshold
                break
        _done = applied_threshold is not None and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError) as err:  # no loadable libc or no mallopt: leave it
        log.debug("mallopt unavailable: %s", err)
    if _done:
        log.info(
            "glibc malloc: mmap threshold %d MiB, trim threshold %d MiB (CPU batches reuse heap)",
            (applied_threshold or 0) >> 20,
            TRIM_THRESHOLD >> 20,
        )
    return _done
