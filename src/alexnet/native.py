"""The native LRN kernel (csrc/lrn.c): compiled on first use with the system C compiler, cached, loaded with ctypes.

Why native: the Python `_FastLRN` makes about ten passes over memory per direction (one per window position, plus
pow and multiply); the C kernel makes one, with d^-beta computed where the data already is in cache.

Why plain C and ctypes rather than a torch extension: building against torch's headers takes minutes, a plain C file
compiles in under a second, and the kernel only needs the tensors' data pointers.

The library lives in `$ALEXNET_CACHE/native/lrn-<key>.so`. The key hashes the source, the flags, the compiler's
version and the CPU's flags (the code is built with -march=native), so an edited source, another compiler or another
machine sharing the cache folder gets its own build. It is compiled under a temporary name in the same folder and
renamed into place, so two processes compiling at once (torchrun ranks) never load a half-written file; a file that
will not load, or answers to another ABI, is rebuilt.

Everything here fails quietly to None (a debug log line says why): the caller then runs the Python kernel.
"""

from __future__ import annotations

import _ctypes
import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from alexnet.data.paths import cache_dir

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "lrn.c"
ABI = 1  # ALEXNET_LRN_ABI in lrn.c
# -fno-math-errno lets sqrtf vectorise without -ffast-math for the whole file, whose reassociation would change the
# window sums; lrn.c asks for fast-math in its one d^-beta function only (approximate reciprocals, a few ulp).
# -fopenmp links libgomp.so.1, the soname of the runtime torch already loaded: one OpenMP thread pool, not two.
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-fPIC", "-shared")
LIBS = ("-lm",)  # after the source: libm brings libmvec (vector expf, logf) for the general beta
ENV_SWITCH = "ALEXNET_NATIVE_LRN"  # "0" turns the native kernel off

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
compiles = 0  # builds since start-up or `reset`: the tests check that a second process reuses the cached file


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def compiler() -> list[str] | None:
    """The C compiler command: $CC if set, else the first of cc, gcc, clang on PATH."""
    if os.environ.get("CC"):
        cmd = shlex.split(os.environ["CC"])
        return cmd if cmd and shutil.which(cmd[0]) else None
    for name in ("cc", "gcc", "clang"):
        if path := shutil.which(name):
            return [path]
    return None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def library_path(cc: list[str]) -> Path | None:
    """Where the build for this source, compiler and CPU lives; None if the compiler does not answer."""
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    key = hashlib.sha256(
        "\0".join(
            [SOURCE.read_text(), " ".join(FLAGS + LIBS), " ".join(cc), version, platform.machine(), _cpu_flags()]
        ).encode()
    ).hexdigest()[:20]
    return Path(cache_dir("native")) / f"lrn-{key}.so"


def _compile(cc: list[str], target: Path) -> bool:
    global compiles
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [*cc, *FLAGS, str(SOURCE), *LIBS, "-o", tmp], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            log.debug("native LRN: %s failed: %s", " ".join(cc), result.stderr.strip()[-2000:])
            return False
        os.replace(tmp, target)  # atomic: other processes see the old file, no file, or the whole new one
        compiles += 1
        return True
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("native LRN: cannot run %s: %s", " ".join(cc), err)
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _open(path: Path) -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:  # truncated or foreign file
        log.debug("native LRN: cannot load %s: %s", path, err)
        return None
    abi = getattr(lib, "alexnet_lrn_abi", lambda: None)()
    if abi != ABI:
        log.debug("native LRN: %s answers ABI %s, want %s", path, abi, ABI)
        # Unload it: dlopen would otherwise hand back this same library for the rebuilt file at the same path.
        _ctypes.dlclose(lib._handle)
        return None
    i64, f32, cint, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.alexnet_lrn.argtypes = [ptr, ptr, ptr, i64, i64, i64, cint, cint, cint, f32, f32, f32, cint]
    lib.alexnet_lrn.restype = cint
    return lib


def _build_and_load() -> ctypes.CDLL | None:
    cc = compiler()
    if cc is None:
        log.debug("native LRN: no C compiler on PATH")
        return None
    path = library_path(cc)
    if path is None:
        return None
    if path.exists() and (lib := _open(path)) is not None:
        return lib
    # Missing or unusable (corrupt, half-copied, another ABI): build a fresh one in its place.
    if not _compile(cc, path):
        return None
    return _open(path)


def load() -> ctypes.CDLL | None:
    """The loaded kernel library, building it on first use; None if it cannot be built (once per process)."""
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _lib = _build_and_load()
                _tried = True
    return _lib


def reset() -> None:
    """Forget the loaded library and the build count, so that the next `load` looks at the cache again (tests)."""
    global _lib, _tried, compiles
    with _lock:
        _lib, _tried, compiles = None, False, 0


def layout(x: torch.Tensor) -> str | None:
    """The layout the kernel reads x in, "nchw" or "nhwc"; None if it cannot take x as it lies in memory."""
    if x.is_contiguous():
        return "nchw"  # (N, C, everything else): also 3-d and 5-d inputs
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return "nhwc"
    return None


def usable(x: torch.Tensor) -> bool:
    """Whether the native kernel takes x: float32 on the CPU, a layout it knows, switched on and built."""
    return (
        x.dtype == torch.float32
        and x.device.type == "cpu"
        and x.numel() > 0
        and layout(x) is not None
        and enabled()
        and load() is not None
    )


def lrn(
    x: torch.Tensor, before: int, after: int, scale: float, beta: float, k: float, grad: torch.Tensor | None = None
) -> torch.Tensor:
    """LRN(x), or with `grad` = dL/dLRN(x) the gradient dL/dx, in x's layout. x must pass `usable`."""
    fmt = torch.channels_last if layout(x) == "nhwc" else torch.contiguous_format
    if grad is not None:
        grad = grad.contiguous(memory_format=fmt)  # a no-op unless autograd hands over another layout or an expand
    out = torch.empty(x.shape, dtype=x.dtype, memory_format=fmt)
    n, c = x.shape[0], x.shape[1]
    status = load().alexnet_lrn(
        x.data_ptr(),
        None if grad is None else grad.data_ptr(),
        out.data_ptr(),
        n,
        c,
        x.numel() // (n * c),
        int(fmt is torch.channels_last),
        before,
        after,
        scale,
        beta,
        k,
        torch.get_num_threads(),
    )
    if status != 0:
        raise MemoryError("native LRN: no memory for a thread's scratch rows")
    return out
