"""Keep freed memory for reuse while deraining large images (glibc's malloc).

A forward pass over a large image allocates and frees activation buffers of tens to hundreds of
megabytes, layer after layer. glibc's malloc serves every block above its mmap threshold (at most
32 MiB by default) with a fresh ``mmap`` and returns it to the kernel on ``free``, so the next
layer's buffer is faulted in again, page by page: on a 2-core CPU a 1280 x 960 photo spent as much
time in the kernel (page faults) as in the model. [`keep_freed_memory`][keep_freed_memory] raises
the mmap and trim thresholds once, so large blocks come from the heap and freed ones stay there
for the next layer; [`release_freed_memory`][release_freed_memory] hands what is kept back to
the kernel (call it between images, so memory does not stay at the peak of the largest one).

Measured by ``benchmarks/bench_allocator.py`` (one full-resolution ``derain()`` per fresh process,
default model, 2-core AMD EPYC with nothing else running, 2026-12-01): at 1280 x 960 wall
72 -> 37 s, system time 62 -> 1 s, peak 2.35 -> 2.97 GB; at 4000 x 3000 wall 348 -> 160 s, system
time 305 -> 1.5 s, peak 2.73 -> 3.57 GB, since freed blocks are kept and the heap fragments.
Because of that peak, the command line does not call it: the memory budget does not yet count
what it keeps.

Both are no-ops (returning ``False``) where the C library is not glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import functools
import platform

__all__ = ["MMAP_THRESHOLD", "keep_freed_memory", "release_freed_memory"]

MMAP_THRESHOLD = 2_000_000_000
"""Bytes below which [`keep_freed_memory`][keep_freed_memory] has glibc serve blocks from its heap
(instead of its default of at most 32 MiB): every activation of a pass within the memory budget."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_TRIM_THRESHOLD = 2**31 - 1


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Have glibc keep freed large blocks for reuse instead of unmapping them (process-wide).

    Call it once before deraining large images. Memory freed by a pass then stays with the
    process until [`release_freed_memory`][release_freed_memory] is called.

    Returns:
        ``True`` when glibc accepted both settings; ``False`` elsewhere (nothing changed).
    """
    libc = _glibc()
    if libc is None:
        return False
    accepted = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    return libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and accepted


def release_freed_memory() -> bool:
    """Return the free memory glibc keeps to the kernel (``malloc_trim(0)``).

    Returns:
        ``True`` when glibc released some memory; ``False`` when there was none or the C
        library is not glibc.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False
