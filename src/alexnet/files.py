"""The one writer: files appear whole or not at all, temporaries cannot be planted, folders of code are private.

Every file the toolkit writes (checkpoints, run-folder files, caches, exports, the native kernel) goes through
`atomic_write`: the bytes go to a temporary created exclusively (O_EXCL, unpredictable name, mode 0600, so a
symlink planted at a guessed name is never followed) in the target's own folder, are fsynced, then renamed over
the target. A reader or a crash at any instant sees the old complete file or the new complete file. An OSError
(a full disk, a read-only file system, no permission) becomes a `FileWriteError` that names the path and the
cause, which the CLI prints as one line.

`private_dir` is for caches that hold code or data others could tamper with: created 0700, and refused when it, or
a folder above it, can be written by another user (the sticky /tmp is fine, as it is for every Unix tool).

No torch import: the config layer and the CLI use this before torch is loaded.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from alexnet.errors import AlexNetError

TEMP_SUFFIX = ".tmp"


class FileWriteError(AlexNetError, OSError):
    """A file or folder could not be written; the message names the path and the cause."""


class UnsafePathError(AlexNetError):
    """A cache folder that another user could write to (or that belongs to another user)."""


def describe_os_error(e: OSError, path: str | Path | None = None) -> str:
    """'PATH: cause' in one line, e.g. 'runs/x/checkpoints/last.pt: No space left on device (ENOSPC)'."""
    where = path if path is not None else (e.filename or "")
    cause = e.strerror or str(e) or type(e).__name__
    code = errno.errorcode.get(e.errno or 0)
    return f"{where}: {cause}" + (f" ({code})" if code else "")


def atomic_write(path: str | Path, write: Callable[[str], None], suffix: str = TEMP_SUFFIX,
                 mode: int | None = None) -> None:
    """`write(tmp)` to an exclusive temporary in `path`'s folder, fsync, then rename over `path`.

    Same folder because a rename across file systems is a copy. `suffix` is for writers that insist on an extension
    (torch.export wants `.pt2`). `mode` is the final file's permission bits (default: an ordinary file, 0666 less
    the umask; caches pass 0o600). On any failure the temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, path.parent)) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, (0o666 & ~current_umask()) if mode is None else mode)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise FileWriteError(describe_os_error(e, path)) from None
    except Exception:
        # torch.save and safetensors report a full disk as their own errors (RuntimeError "unexpected pos",
        # SafetensorError); asked while the temporary still holds its blocks, the file system says what happened.
        full = _disk_full(path.parent)
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise FileWriteError(f"{path}: No space left on device (ENOSPC); the previous file, if any, is as it "
                                 "was") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except (OSError, AttributeError):  # statvfs is POSIX only
        return False


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), mode=mode)


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), mode=mode)


def read_small_json(path: str | Path, max_bytes: int):
    """A cache's JSON file, parsed, or None when it is missing, larger than `max_bytes`, unreadable or not JSON:
    a cache that cannot be trusted is measured or built again, never a crash. Its contents are still the caller's
    to check."""
    import json

    try:
        if Path(path).stat().st_size > max_bytes:
            return None
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable; not every platform lets a folder be opened, which is then skipped."""
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(folder: str | Path, name: str = "*", suffix: str = TEMP_SUFFIX) -> list[Path]:
    """Temporaries of `atomic_write` for `name` left by a process killed mid-write (SIGKILL cannot be caught).

    Only ours: regular files named `.{name}.XXXXXXXX{suffix}` that this user owns; returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".{name}.*{suffix}"):
        try:
            st = tmp.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def private_dir(path: str | Path) -> Path:
    """Create `path` (and missing parents) with mode 0700 and check that no other user can write into it.

    Raises UnsafePathError when `path` is not a real folder owned by this user, when it is group/world writable,
    or when a folder above it is writable by others without the sticky bit (someone could swap it)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, path)) from None
    check_private_dir(path)
    return path


def check_private_dir(path: str | Path) -> None:
    path = Path(path)
    try:
        st = path.lstat()
    except OSError as e:
        raise UnsafePathError(describe_os_error(e, path)) from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path}: not a real folder (a symlink or a file stands there)")
    if st.st_uid != os.getuid():
        raise UnsafePathError(f"{path}: belongs to user id {st.st_uid}, not to this user ({os.getuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(f"{path}: other users can write to it (mode {stat.S_IMODE(st.st_mode):o}); "
                              f"make it private with: chmod 700 {path}")
    for parent in path.resolve().parents:
        try:
            pst = parent.stat()
        except OSError:
            continue
        writable_by_others = pst.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable_by_others and not pst.st_mode & stat.S_ISVTX:
            raise UnsafePathError(f"{path}: the folder above it, {parent}, can be written by other users "
                                  f"(mode {stat.S_IMODE(pst.st_mode):o}, no sticky bit)")
        if pst.st_uid not in (0, os.getuid()):
            raise UnsafePathError(f"{path}: the folder above it, {parent}, belongs to another user ({pst.st_uid})")


def current_umask() -> int:
    """The process's umask (os.umask can only be read by setting it): the mode an ordinary new file gets."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
