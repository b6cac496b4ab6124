"""The native LRN kernel (csrc/lrn.c): compiled on first use with the system C compiler, cached, loaded with ctypes.

Why native: the Python `_FastLRN` makes about ten passes over memory per direction (one per window position, plus
pow and multiply); the C kernel makes one, with d^-beta computed where the data already is in cache.

Why plain C and ctypes rather than a torch extension: building against torch's headers takes minutes, a plain C file
compiles in under a second, and the kernel only needs the tensors' data pointers.

The library lives in `$ALEXNET_CACHE/native/lrn-<key>.so`. The key hashes the source, the flags, the compiler's
version and the CPU's flags (the code is built with -march=native), so an edited source, another compiler or another
machine sharing the cache folder gets its own build; a library built with another ABI is rebuilt.

A cached library is code this process will run, so it is trusted only as far as it can be shown to be this user's
own build (issue 9):

- the folder is created 0700 and refused when it is a symlink, belongs to another user, or it or a folder above it
  can be written by others (`files.private_dir`);
- a build goes through `files.atomic_write` (an exclusive temporary with an unpredictable name, renamed into place),
  and records the library's SHA-256 in `lrn-<key>.so.sha256` first, so a crash leaves at worst a record without a
  library, which the next run rebuilds; builds are serialised by a lock on the folder (torchrun ranks build once);
- loading reads the file's bytes once, checks its owner and mode on the opened descriptor, hashes the bytes, and
  dlopens a private in-memory copy of exactly those bytes (memfd), so the file cannot be swapped between the check
  and the load.

A library that fails any check (not recorded, another hash, another owner, writable by others) is not loaded and not
overwritten: a one-line warning says why and what to delete, and the Python kernel runs. Everything else (no
compiler, a failed build) falls back quietly to the Python kernel, with a debug log line.

ALEXNET_NATIVE_SANITIZE=1 builds with AddressSanitizer and UBSan (under another key). Such a library needs the ASan
runtime loaded first (`LD_PRELOAD=$(cc -print-file-name=libasan.so)`); without it the Python kernel runs, with a
warning, rather than let the ASan runtime abort the process.
"""

from __future__ import annotations

import _ctypes
import contextlib
import ctypes
import hashlib
import logging
import math
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from alexnet.data.cachedir import cache_root
from alexnet.errors import AlexNetError, ConfigError, short
from alexnet.files import FileWriteError, UnsafePathError, atomic_write, private_dir, remove_stale_temporaries

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "csrc" / "lrn.c"
ABI = 2  # ALEXNET_LRN_ABI in lrn.c
# -fno-math-errno lets sqrtf vectorise without -ffast-math for the whole file, whose reassociation would change the
# window sums; lrn.c asks for fast-math in its one d^-beta function only (approximate reciprocals, a few ulp).
# -fopenmp links libgomp.so.1, the soname of the runtime torch already loaded: one OpenMP thread pool, not two.
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-fPIC", "-shared")
LIBS = ("-lm",)  # after the source: libm brings libmvec (vector expf, logf) for the general beta
# -fno-sanitize-recover: UBSan's findings abort like ASan's instead of printing and running on; -g names the lines.
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g")
ENV_SWITCH = "ALEXNET_NATIVE_LRN"  # "0" turns the native kernel off
ENV_SANITIZE = "ALEXNET_NATIVE_SANITIZE"  # "1" builds (and loads) the sanitized kernel
DIGEST_SUFFIX = ".sha256"

# alexnet_lrn's return codes (LRN_* in lrn.c)
NO_MEMORY, BAD_ARGUMENT, TOO_LARGE = -1, -2, -3
C_INT_MAX = 2**31 - 1

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_kept_fds: list[int] = []  # memfds of loaded libraries, kept open so that no later copy reuses a loaded one's name
compiles = 0  # builds since start-up or `reset`: the tests check that a second process reuses the cached file


class UntrustedLibrary(AlexNetError):
    """A cached library that this process cannot show to be this user's own build; it is not loaded."""


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def sanitized() -> bool:
    return os.environ.get(ENV_SANITIZE, "0") == "1"


def flags() -> tuple[str, ...]:
    """The compiler flags of this process's build (the sanitizers' flags added under ALEXNET_NATIVE_SANITIZE=1)."""
    return FLAGS + SANITIZE_FLAGS if sanitized() else FLAGS


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


def cache_folder() -> Path:
    """`$ALEXNET_CACHE/native`; not created here (`_build_and_load` creates it private)."""
    return Path(cache_root()) / "native"


def library_path(cc: list[str]) -> Path | None:
    """Where the build for this source, compiler, flags and CPU lives; None if the compiler does not answer."""
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    key = hashlib.sha256(
        "\0".join(
            [SOURCE.read_text(), " ".join(flags() + LIBS), " ".join(cc), version, platform.machine(), _cpu_flags()]
        ).encode()
    ).hexdigest()[:20]
    return cache_folder() / f"lrn-{key}.so"


def digest_path(library: Path) -> Path:
    """The record of `library`'s SHA-256, written by the build that made it."""
    return library.with_name(library.name + DIGEST_SUFFIX)


def digest_record(library: Path, data: bytes) -> str:
    """The record's text: the hash and the library's own name, so that a record copied beside another build (or
    renamed to another key) does not vouch for it."""
    return f"{hashlib.sha256(data).hexdigest()}  {library.name}\n"


def _read_own_file(path: Path, what: str) -> bytes | None:
    """The bytes of `path`, read through one descriptor whose owner and mode were checked; None if it is missing.

    O_NOFOLLOW: a symlink planted at the name is refused, not followed to a file someone else chose."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UntrustedLibrary(f"{path}: cannot open the {what} ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedLibrary(f"{path}: the {what} is not a regular file")
        if st.st_uid != os.getuid():
            raise UntrustedLibrary(f"{path}: the {what} belongs to user id {st.st_uid}, not to this user "
                                   f"({os.getuid()})")
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UntrustedLibrary(f"{path}: other users can write to the {what} (mode {stat.S_IMODE(st.st_mode):o})")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _verified_library(path: Path) -> bytes | None:
    """The cached library's bytes if they are the ones its build recorded; None if there is no library to check.

    Raises UntrustedLibrary for a library that is there but cannot be shown to be this user's build."""
    data = _read_own_file(path, "library")
    if data is None:
        return None
    record = _read_own_file(digest_path(path), "library's SHA-256 record")
    if record is None:
        raise UntrustedLibrary(f"{path}: no SHA-256 record ({digest_path(path).name}) of its build")
    if record.decode("utf-8", "replace") != digest_record(path, data):
        raise UntrustedLibrary(f"{path}: its SHA-256 is not the one its build recorded in {digest_path(path).name}")
    return data


class _BuildFailed(Exception):
    pass


def _compile(cc: list[str], target: Path) -> bytes | None:
    """Build `target` and its record; the library's bytes, or None if the compiler fails."""
    global compiles
    built: list[bytes] = []

    def write(tmp: str) -> None:
        try:
            result = subprocess.run(
                [*cc, *flags(), str(SOURCE), *LIBS, "-o", tmp], capture_output=True, text=True, timeout=300
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise _BuildFailed(f"cannot run {' '.join(cc)}: {err}") from None
        if result.returncode != 0:
            raise _BuildFailed(f"{' '.join(cc)} failed: {result.stderr.strip()[-2000:]}")
        data = Path(tmp).read_bytes()
        # The record goes first: a crash between the two renames leaves a record without a library (rebuilt next
        # time), never a library without a record (refused until someone deletes it).
        atomic_write(digest_path(target), lambda t: Path(t).write_text(digest_record(target, data)), mode=0o600)
        built.append(data)

    try:
        atomic_write(target, write, mode=0o700)
    except _BuildFailed as err:
        log.debug("native LRN: %s", err)
        return None
    except FileWriteError as err:
        log.debug("native LRN: cannot write the build: %s", err)
        return None
    compiles += 1
    return built[0]


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """One build at a time in `folder` across processes (torchrun ranks): a lock on the folder itself, which leaves
    no lock file behind. Without fcntl (not POSIX), builds still cannot tear a file: each is an atomic rename."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _dlopen_bytes(data: bytes, folder: Path) -> ctypes.CDLL:
    """dlopen exactly `data`: from an anonymous memory file (nobody else can reach it), else from a private copy in
    `folder` removed once mapped. Raises OSError if the bytes do not load."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("alexnet-lrn", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            # dlopen knows a loaded library by its path: this fd stays open while the library is loaded, so that
            # no later copy gets the same /proc/self/fd/N and with it this library instead of its own bytes.
            lib = ctypes.CDLL(f"/proc/self/fd/{fd}")
        except BaseException:
            os.close(fd)
            raise
        lib._alexnet_fd = fd
        _kept_fds.append(fd)
        return lib
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lrn-load.", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return ctypes.CDLL(tmp)
    finally:
        os.unlink(tmp)


def _unload(lib: ctypes.CDLL) -> None:
    # Its memfd stays open: should dlclose not really unload it (a library can pin itself), a closed fd's number
    # reused by the next copy would make dlopen hand back this library for the new bytes.
    _ctypes.dlclose(lib._handle)


def _open(data: bytes, path: Path) -> ctypes.CDLL | None:
    """The library from `data` (the verified bytes of `path`), if it loads and answers to this ABI."""
    try:
        lib = _dlopen_bytes(data, path.parent)
    except OSError as err:  # a build for another machine, say
        log.debug("native LRN: cannot load %s: %s", path, err)
        return None
    abi = getattr(lib, "alexnet_lrn_abi", lambda: None)()
    if abi != ABI:
        log.debug("native LRN: %s answers ABI %s, want %s", path, abi, ABI)
        _unload(lib)
        return None
    i64, f32, cint, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.alexnet_lrn.argtypes = [ptr, ptr, ptr, i64, i64, i64, cint, cint, cint, f32, f32, f32, cint]
    lib.alexnet_lrn.restype = cint
    return lib


def _asan_runtime_loaded() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return any("libasan" in line for line in f)
    except OSError:
        return False


def _build_and_load() -> ctypes.CDLL | None:
    cc = compiler()
    if cc is None:
        log.debug("native LRN: no C compiler on PATH")
        return None
    if sanitized() and not _asan_runtime_loaded():
        # dlopen of an ASan library without its runtime loaded first aborts the whole process.
        log.warning("native LRN: %s=1 needs the ASan runtime preloaded (LD_PRELOAD=$(cc -print-file-name=libasan.so)"
                    "); running the Python kernel instead", ENV_SANITIZE)
        return None
    path = library_path(cc)
    if path is None:
        return None
    try:
        private_dir(path.parent)
        with _folder_lock(path.parent):
            # Under the lock no other process is building here, so a temporary of this library is a killed build's.
            remove_stale_temporaries(path.parent, path.name)
            data = _verified_library(path)
            if data is not None and (lib := _open(data, path)) is not None:
                return lib
            # Missing, or our own build that no longer loads (another ABI): build a fresh one in its place.
            data = _compile(cc, path)
    except UntrustedLibrary as err:
        log.warning("native LRN kernel not loaded, the Python kernel runs instead: %s (if you did not put it there, "
                    "find out who did; delete it to let the toolkit rebuild it)", err)
        return None
    except (UnsafePathError, FileWriteError) as err:
        log.warning("native LRN kernel not loaded, the Python kernel runs instead: %s", err)
        return None
    except OSError as err:  # the lock or the folder could not be opened
        log.debug("native LRN: %s", err)
        return None
    return None if data is None else _open(data, path)


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
    """Forget the loaded library and the build count, so that the next `load` looks at the cache again (tests).

    The library stays mapped (ctypes never unloads it: functions of it may still be referenced)."""
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


def check_arguments(x: torch.Tensor, before: int, after: int, scale: float, beta: float, k: float,
                    grad: torch.Tensor | None) -> tuple[int, int]:
    """Refuse what the C kernel cannot take safely (ConfigError naming the argument); the window clamped to the
    channels.

    The C function trusts its pointers: x (and grad) must be float32 CPU memory of x's shape in a layout it knows,
    or it reads past them. Its widths are C ints: a larger Python int would reach it truncated, possibly negative.
    A window wider than the channels adds only zeros, so it is clamped to C - 1 each side (the same numbers)."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.device.type != "cpu":
        raise ConfigError(f"native LRN: x must be a float32 CPU tensor, got {short(getattr(x, 'dtype', x), 100)}")
    if x.dim() < 2 or x.numel() == 0 or layout(x) is None:
        raise ConfigError(f"native LRN: x must be non-empty, (N, C, ...), contiguous or channels_last; got shape "
                          f"{tuple(x.shape)}, strides {x.stride()}")
    if grad is not None and (
        not isinstance(grad, torch.Tensor) or grad.dtype != torch.float32 or grad.device.type != "cpu"
        or grad.shape != x.shape
    ):
        raise ConfigError(f"native LRN: grad must be a float32 CPU tensor of x's shape {tuple(x.shape)}, got "
                          f"{short(getattr(grad, 'shape', grad), 100)}")
    for name, value in (("before", before), ("after", after)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= C_INT_MAX:
            raise ConfigError(f"native LRN: {name} (channels of the window on that side) must be an int in "
                              f"[0, {C_INT_MAX}], got {short(value, 100)}")
    for name, value in (("scale", scale), ("beta", beta), ("k", k)):
        try:
            as_float32 = ctypes.c_float(float(value)).value  # what the C function receives
        except (TypeError, ValueError, OverflowError):
            as_float32 = math.nan
        if isinstance(value, bool) or not math.isfinite(as_float32) or as_float32 < 0:
            raise ConfigError(f"native LRN: {name} must be a finite number >= 0 in float32, got {short(value, 100)}")
    channels = x.shape[1]
    return min(before, channels - 1), min(after, channels - 1)


def lrn(
    x: torch.Tensor, before: int, after: int, scale: float, beta: float, k: float, grad: torch.Tensor | None = None
) -> torch.Tensor:
    """LRN(x), or with `grad` = dL/dLRN(x) the gradient dL/dx, in x's layout. x must pass `usable`."""
    before, after = check_arguments(x, before, after, scale, beta, k, grad)
    lib = load()
    if lib is None:
        raise ConfigError("native LRN: the kernel is not built (check `usable` first)")
    fmt = torch.channels_last if layout(x) == "nhwc" else torch.contiguous_format
    if grad is not None:
        grad = grad.contiguous(memory_format=fmt)  # a no-op unless autograd hands over another layout or an expand
    out = torch.empty(x.shape, dtype=x.dtype, memory_format=fmt)
    n, c = x.shape[0], x.shape[1]
    status = lib.alexnet_lrn(x.data_ptr(), None if grad is None else grad.data_ptr(), out.data_ptr(),
                             n, c, x.numel() // (n * c), int(fmt is torch.channels_last),  # sizes, layout
                             before, after, scale, beta, k, max(1, torch.get_num_threads()))
    if status == NO_MEMORY:
        raise MemoryError("native LRN: no memory for a thread's scratch rows")
    if status in (BAD_ARGUMENT, TOO_LARGE):
        what = "refused its arguments" if status == BAD_ARGUMENT else "found the tensor too large for its sizes"
        raise ConfigError(f"native LRN: the kernel {what} (shape {tuple(x.shape)}, window {before}+1+{after}, "
                          f"scale {scale}, beta {beta}, k {k})")
    if status != 0:
        raise ConfigError(f"native LRN: the kernel answered {status}, which this version does not know")
    return out

