"""Where the data layer keeps what it generates: `$ALEXNET_CACHE` (default `~/.cache/alexnet`), privately.

Everything under it is data a training run trusts (decoded images, verdicts on files, colour statistics, the
built-in dataset), so its folders are created 0700 and refused when another user could write into them
(`files.private_dir`), and every file in them is written by `files.atomic_write` (exclusive, unpredictable
temporary names, never a guessable `NAME.PID.tmp` that a planted symlink could redirect).

`build_lock` serialises the builders of one cache entry (DDP ranks, two shells): the second waits, then finds the
entry built. Only a holder of the lock removes temporaries left by a crashed builder, so it never deletes the
temporary of a build that is still running.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from alexnet.files import FileWriteError, describe_os_error, private_dir

try:  # POSIX; elsewhere builders are not serialised (each still writes whole files through atomic_write)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def cache_root() -> str:
    """The cache folder, honouring ALEXNET_CACHE so tests and shared machines can point it elsewhere."""
    return os.path.expanduser(os.environ.get("ALEXNET_CACHE") or os.path.join("~", ".cache", "alexnet"))


def cache_dir(*parts: str) -> str:
    """A private (0700) sub-folder of the cache, created on first use; UnsafePathError if others could write it.

    A folder an earlier version created 0755 is ours and not writable by others (private_dir checked both): it is
    narrowed to 0700, so that the decoded images in it are no longer readable by every user either."""
    path = private_dir(os.path.join(cache_root(), *parts))
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, path)) from None
    return str(path)


@contextlib.contextmanager
def build_lock(folder: str | os.PathLike, name: str, *, wait: bool = True) -> Iterator[bool]:
    """Holds an exclusive lock on `folder/.NAME.lock` (created 0600, symlinks refused) for the block.

    Yields True when held; with `wait=False` it yields False at once if another process holds it."""
    path = os.path.join(folder, f".{name}.lock")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, path)) from None
    try:
        held = True
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = False
        yield held
    finally:
        os.close(fd)  # closing releases the flock
