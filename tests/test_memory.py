"""alexnet.runtime.memory: a training process on CPU keeps freed blocks for the next step (glibc's malloc only)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the policy is glibc's; elsewhere keep_freed_memory leaves malloc alone")

# A 64 MiB block from libc's malloc: mallinfo2 says whether it was mmapped (hblkhd) and, once freed, whether the heap
# still holds it (fordblks) or gave it back to the system.
PROBE = textwrap.dedent("""
    import ctypes, os, sys
    from alexnet.runtime.memory import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallInfo2
    took = keep_freed_memory()
    size = 64 << 20
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    mapped = libc.mallinfo2().hblkhd >= size
    libc.free(block)
    kept = libc.mallinfo2().fordblks >= size
    print(took, mapped, kept)
""")


def probe(**env: str) -> list[str]:
    import os

    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return out.stdout.split()


def test_keep_freed_memory_serves_large_blocks_from_the_heap_and_keeps_them_after_free():
    assert probe() == ["True", "False", "True"]


def test_the_allocators_own_policy_maps_large_blocks_and_returns_them():
    # what the call changes, and the way out of it for a machine short of memory
    assert probe(ALEXNET_KEEP_FREED_MEMORY="0") == ["False", "True", "False"]
