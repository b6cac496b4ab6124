"""The run folder and its files: where each file lives (`RunPaths`), one writer (a lock held for the whole of `fit()`),
a refusal to train into a folder that is not a run, and the writers of its plain files (config.yaml, metrics.csv,
the PNG plots); checkpoints are alexnet.store.checkpoint's.

Layout:
    config.yaml  metrics.csv  log.txt  curves.png  filters.png  checkpoints/last.pt  checkpoints/best.pt

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

import csv
import errno
import fcntl
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.config import TrainConfig
from alexnet.errors import AlexNetError, DataError
from alexnet.files import FileWriteError, atomic_write, atomic_write_text, describe_os_error
from alexnet.inspect.plots import plot_curves, plot_filters

METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "seconds", "images_per_s",
    "data_wait_s", "data_wait_share",  # time the training loop waited for its next batch, and its share of the epoch
    "ema_val_top1",  # --ema-decay: the moving average's validation top-1 (empty without it)
]

LOCK_NAME = ".alexnet.lock"
# Everything alexnet itself writes into a run folder (train, eval's confusion matrix, export's default folder,
# `alexnet report`'s default file).
REPORT_NAME = "report.html"
RUN_NAMES = frozenset({
    "config.yaml", "metrics.csv", "log.txt", "curves.png", "filters.png", "checkpoints", "export",
    "confusion.csv", "confusion.png", "tensorboard", "lr_find.png", "train_curve.csv", REPORT_NAME, LOCK_NAME,
})


class RunFolderError(AlexNetError):
    """The run folder is in use by another process, or is not a run folder."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes each of its files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def filters(self) -> Path:
        return self.root / "filters.png"

    @property
    def curve(self) -> Path:
        return self.root / "train_curve.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def lr_find(self) -> Path:
        return self.root / "lr_find.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"


def default_output_dir(cfg: TrainConfig) -> str:
    return str(Path("runs") / f"{cfg.recipe or cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")


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
                raise _in_use(self.root, self.path, holder) from None
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


def refuse_if_locked(root: str | Path) -> None:
    """Refuse a folder whose lock a live process holds, naming it, before anything else in the folder is read: a
    `--resume` of a run that has not yet written its first checkpoint would otherwise be told only that there is no
    checkpoint. A probe that takes nothing: a shared flock, released at once, and no lock file or folder created
    (a missing lock file means no run ever held the folder)."""
    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return  # no lock file, or not one we may open: RunLock.acquire() says why if it matters
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise _in_use(Path(root), path, _read_pid(fd)) from None
    finally:
        os.close(fd)  # releases the shared lock, if it was taken


def _in_use(root: Path, lock: Path, holder: int | None) -> RunFolderError:
    who = f"pid {holder}" if holder else "another process"
    return RunFolderError(
        f"{root}: in use by another alexnet process ({who}, lock {lock}); one run folder has one writer: wait for "
        "it to finish, stop it (a stopped run can be continued with --resume), or choose another --output-dir")


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def truncate_metrics(path: Path, keep_epochs: int) -> list[dict[str, Any]]:
    """Rows of epochs 1..keep_epochs (a resumed run rewrites the later ones). A damaged file is an error naming
    the row, never rows silently dropped."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
            try:  # columns a run from an older version did not write stay empty
                rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()
                             if k is not None and v not in ("", None)})
                if "epoch" not in rows[-1]:
                    raise KeyError("epoch")
            except (ValueError, TypeError, KeyError) as e:
                raise DataError(f"{path}: line {number} is damaged ({e}); move the file away to resume without "
                                "the earlier epochs' rows") from None
    rows = [r for r in rows if r["epoch"] <= keep_epochs]
    write_metrics(path, rows)
    return rows


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k in METRIC_COLUMNS for v in [row.get(k, "")]})
    atomic_write_text(path, text.getvalue())


def draw_plots(paths: RunPaths, rows: list[dict[str, Any]], model: Any, cfg: TrainConfig) -> None:
    """curves.png and filters.png, each through the atomic writer (matplotlib picks the format from `.png`)."""
    title = f"{cfg.model.name} ({cfg.recipe or 'custom'})"
    atomic_write(paths.curves, lambda tmp: plot_curves(rows, tmp, title=title), suffix=".png")
    atomic_write(paths.filters, lambda tmp: plot_filters(model.conv1.weight, tmp, towers=model.towers,
                                                         title=f"{cfg.model.name} conv1 filters"), suffix=".png")
