"""Giving freed heap back to the system once the agent is idle.

glibc keeps memory that Python, numpy and LiteRT freed (request buffers, per-thread malloc arenas of
the request threads) mapped and resident, so an agent that served a burst and then idles shows the
burst's peak as its RSS. `malloc_trim(0)` returns the free pages of every arena (also those in the
middle of a heap, with MADV_DONTNEED). It walks the arenas under their locks, so it runs only when no
request has come for a while (agent.telemetry.collector), never on the request path. Elsewhere (musl,
macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import os
import logging
from typing import Callable

log = logging.getLogger(__name__)


def _libc(*, use_errno: bool = False) -> ctypes.CDLL:
    # The process's own symbols (dlopen(NULL)): libc is always among them, so no
    # ctypes.util.find_library, which runs ldconfig in a subprocess and keeps ctypes.util, subprocess,
    # tempfile and random resident in the daemon for good.
    return ctypes.CDLL(None, use_errno=use_errno)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = _libc()
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Return free heap pages to the system; True when the C library could release some."""
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))


_MADV_DONTNEED = 4


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    try:
        libc = _libc(use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def drop_file_pages(path: str | os.PathLike[str]) -> int:
    """Unmap from this process the resident pages of every mapping of `path` (bytes dropped).

    For a .tflite the interpreter maps: once XNNPACK has packed the weights into its own buffers, the
    file's pages are read again only by operators it did not take, so they need not stay in the
    agent's RSS. They stay in the page cache (clean, shared, reclaimable) and a later read faults
    them back in from there: nothing is lost, only the accounting moves.
    """
    madvise = _madvise()
    if madvise is None:
        return 0
    target = os.fsencode(os.path.realpath(path))
    dropped = 0
    try:
        with open("/proc/self/maps", "rb") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return 0
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5] != target:
            continue
        if b"w" in fields[1]:  # a writable private mapping would lose its writes: only read-only ones
            continue
        start, end = (int(x, 16) for x in fields[0].split(b"-"))
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            dropped += end - start
    return dropped


_M_ARENA_MAX = -8


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX does) for threads that allocate from now on; True
    when the C library took it. glibc gives a thread that meets a locked arena one of its own, up to
    8 per core, and each keeps its freed memory; the agent's threads rarely allocate at once, so a
    single arena serves them (bench/agent.py: about 2 MB less RSS after serving than glibc's default,
    0.6 MB less than 2 arenas, and no change in Predict's p50 measured)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    try:
        libc = _libc()
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(_M_ARENA_MAX, count) == 1
