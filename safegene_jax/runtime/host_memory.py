"""The command line's process: large buffers go back to the OS when they are freed.

glibc raises its mmap threshold each time a large mmapped block is freed, so later buffers of that size come
from the heap, which does not shrink: a pipeline that trains, drops a model and loads the next keeps the
freed memory resident. Fixing the threshold at 1 MiB (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
adjustment off) keeps large buffers mmapped, returned on free. Measured on Gemma 3 270M (one run each): a
model loaded twice and one copy dropped, resident 2.87 -> 2.23 GiB by default, 2.75 -> 1.87 GiB fixed; the
align stage alone peaks at 9.49 GiB by default and 9.21 GiB fixed.

Only the ``safegene`` command calls :func:`release_freed_memory`; a library user's process is left as it is.
``MALLOC_MMAP_THRESHOLD_`` in the environment (glibc's own setting) takes precedence.

Example:
    >>> release_freed_memory() in (True, False)
    True
"""

from __future__ import annotations

import os
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
THRESHOLD = 1 << 20


def release_freed_memory(threshold: int = THRESHOLD) -> bool:
    """Fixes glibc's mmap threshold at ``threshold`` bytes; whether it was set (False off glibc, or when the
    environment sets it already)."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
