"""One run folder, one writer: a lock held for the whole of `fit()`, and a refusal to train into a folder that is
not a run.

Two trainers writing into one folder would interleave checkpoints, metrics and logs from different runs, and a
`--resume` of a run that is still alive would fork it. `RunLock` takes an exclusive `fcntl.flock` on
`<run>/.alexnet.lock` and writes its pid there; the kernel releases the lock when the process ends, however it ends
(SIGKILL included), so a lock is never stale. The file itself is never deleted: a process that opened the old file
would otherwise lock an inode no one else sees.

`check_new_run_folder` refuses a folder that already holds anything alexnet does not write (`--output-dir .` in a
project folder, a typo naming a data folder), so that a run never clobbers unrelated files.

No torch import: the CLI may call this before torch is loaded.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from alexnet.errors import AlexNetError
from alexnet.files import FileWriteError, describe_os_error

LOCK_NAME = ".alexnet.lock"
# Everything alexnet itself writes into a run folder (train, eval's confusion matrix, export's default folder).
RUN_NAMES = frozenset({
    "config.yaml", "metrics.csv", "log.txt", "curves.png", "filters.png", "checkpoints", "export",
    "confusion.csv", "confusion.png", LOCK_NAME,
})


class RunFolderError(AlexNetError):
    """The run folder is in use by another process, or is not a run folder."""


def foreign_entries(root: Path) -> list[str]:
    """Names in `root` that alexnet did not write (its own atomic-write temporaries, `.name.XXXX...`, count as its)."""
    names = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in RUN_NAMES or any(name.startswith(f".{known}.") for known in RUN_NAMES):
            continue
        names.append(name)
    return names


def check_new_run_folder(root: str | Path) -> None:
    """A new run may go into a missing folder, an empty one, or one that holds only alexnet's own run files (a run
    killed before its first checkpoint); anything else is refused, naming what is there."""
    root = Path(root)
    if not root.exists():
        return
    if not root.is_dir():
        raise RunFolderError(f"{root}: exists and is not a folder; choose another --output-dir")
    try:
        foreign = foreign_entries(root)
    except OSError as e:
        raise RunFolderError(describe_os_error(e, root)) from None
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunFolderError(f"{root}: not empty and not an alexnet run folder (it holds {shown}); a run would "
                             "write among those files: choose a new or empty --output-dir")


class RunLock:
    """An exclusive, non-blocking flock on `<root>/.alexnet.lock`, held from `acquire()` to `release()`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise FileWriteError(describe_os_error(e, self.path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                who = f"pid {holder}" if holder else "another process"
                raise RunFolderError(
                    f"{self.root}: in use by another alexnet process ({who}, lock {self.path}); one run folder has "
                    "one writer: wait for it to finish, stop it (a stopped run can be continued with --resume), "
                    "or choose another --output-dir") from None
            raise FileWriteError(describe_os_error(e, self.path)) from None
        # Our pid, for the message of whoever is refused next; written after the lock is ours.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
