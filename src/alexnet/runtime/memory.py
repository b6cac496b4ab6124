"""The C allocator's policy for a training process on CPU: keep freed memory for the next step instead of giving it
back to the operating system.

glibc's malloc serves large blocks (over its mmap threshold, 128 KiB to 32 MiB) with mmap and unmaps them on free.
A training step frees and asks again for the same activations and gradients every step, so each step page-faults
them in anew: the kernel zeroes every page, which shows as system time. That is why PyTorch's CPU performance
guide recommends jemalloc or tcmalloc. `keep_freed_memory` gets the same from glibc itself, without a preload:
no mmap for heap blocks and no trimming of the heap's top, so a block freed in one step is reused by the next.
The cost is that the process keeps its peak memory until it exits, which a training run reaches anyway.
Measured in benchmarks/README.md ("Where a CPU step's time goes").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers, from glibc's malloc.h
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed blocks rather than return them to the system. True when it took effect;
    False where the C library is not glibc (macOS, musl, Windows), which is left as it is, or where
    ALEXNET_KEEP_FREED_MEMORY=0 asks for the allocator's own policy (a machine short of memory)."""
    if os.environ.get("ALEXNET_KEEP_FREED_MEMORY", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success, 0 on failure; both must hold, or reused blocks could still be trimmed away
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
