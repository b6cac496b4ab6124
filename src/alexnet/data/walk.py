"""Listing the image files below a folder safely, and saying once why each entry was left out.

The walk follows symlinks without looping or counting a file twice, searches at most MAX_DEPTH levels deep (a deeper
folder is skipped and listed, never a RecursionError), and lists an entry that vanishes while it runs ("vanished
during the scan") instead of failing. What it leaves out is *ignored* (not data: hidden and system entries, links to
what was already seen) or *skipped* (data that cannot be used), each with the reason, logged once per process.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

from alexnet.data.images import IMAGE_EXTENSIONS, display_path
from alexnet.errors import DataError

log = logging.getLogger("alexnet.data")

SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}
SYSTEM_FOLDERS = {"__macosx", "$recycle.bin", "system volume information", "@eadir"}
MAX_DEPTH = 64  # class folders nested deeper than this are not searched (a runaway tree, or a path near PATH_MAX)
VANISHED = "vanished during the scan (removed or renamed by another program)"

_reported: set[tuple[str, str]] = set()  # (path, reason) already logged in this process


def vanished(e: OSError) -> bool:
    return e.errno in (errno.ENOENT, errno.ENOTDIR)


def report(kind: str, path: str, reason: str) -> None:
    """Logs a skipped/ignored/noted file once per process, with a path that is safe to print."""
    key = (path, reason)
    if key in _reported:
        return
    _reported.add(key)
    level = logging.WARNING if kind == "skipped" else logging.INFO
    log.log(level, "%s %s: %s", kind, display_path(path), reason)


def image_named(path: str) -> bool:
    """An image file by its name alone (no stat, no report): what the layout is recognised from."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower() not in SYSTEM_FILES and name.lower().endswith(IMAGE_EXTENSIONS)


class Walker:
    """Lists candidate image files under a folder, following symlinks without looping or double counting.

    `ignored` and `skipped` collect (path, reason) for everything the walk left out, in the order it met them."""

    def __init__(self):
        self.ignored: list[tuple[str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files: dict[tuple[int, int], str] = {}
        self.listings: dict[str, tuple[list[str], list[str]]] = {}  # each folder listed (and reported) once

    def ignore(self, path: str, reason: str) -> None:
        self.ignored.append((path, reason))
        report("ignored", path, reason)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        report("skipped", path, reason)

    def visible_entries(self, folder: str) -> tuple[list[str], list[str]]:
        """(subfolders, files) directly in `folder`, sorted; hidden and system entries are ignored here."""
        if folder in self.listings:
            return self.listings[folder]
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if vanished(e) and self.listings:  # a subfolder removed mid-scan; the root itself is an error
                self.skip(folder, VANISHED)
                self.listings[folder] = ([], [])
                return self.listings[folder]
            raise DataError(f"{display_path(folder)}: cannot list the folder ({e.strerror or e})") from None
        dirs, files = [], []
        for entry in entries:
            name, path = entry.name, entry.path
            try:
                st = os.stat(path)  # follows symlinks
            except OSError as e:
                if entry.is_symlink():
                    reason = "symlink loop" if getattr(e, "errno", None) == 40 else "broken symlink"
                    self.skip(path, reason)
                elif vanished(e):
                    self.skip(path, VANISHED)
                else:
                    self.skip(path, f"cannot read ({e.strerror or e})")
                continue
            if stat.S_ISDIR(st.st_mode):
                if name.startswith("."):
                    self.ignore(path, "hidden folder, never a class")
                elif name.lower() in SYSTEM_FOLDERS:
                    self.ignore(path, "system folder")
                else:
                    dirs.append(path)
            elif stat.S_ISREG(st.st_mode):
                files.append(path)
            else:
                self.ignore(path, "not a regular file")
        self.listings[folder] = (dirs, files)
        return dirs, files

    def accept_file(self, path: str) -> bool:
        """Filters one file by name and identity (duplicates through symlinks); contents are checked later."""
        name = os.path.basename(path)
        lower = name.lower()
        if name.startswith("._"):
            self.ignore(path, "macOS AppleDouble metadata file, not an image")
            return False
        if name.startswith("."):
            self.ignore(path, "hidden file")
            return False
        if lower in SYSTEM_FILES:
            self.ignore(path, "system file")
            return False
        if not lower.endswith(IMAGE_EXTENSIONS):
            self.ignore(path, f"not an image extension ({os.path.splitext(name)[1] or 'none'})")
            return False
        st = self.stat_or_skip(path)
        if st is None:
            return False
        key = (st.st_dev, st.st_ino)
        if key in self.seen_files:
            self.ignore(path, f"same file as {display_path(self.seen_files[key])} (a link), counted once")
            return False
        self.seen_files[key] = path
        return True

    def stat_or_skip(self, path: str) -> os.stat_result | None:
        """os.stat, or None after listing `path` as skipped when it vanished (or became unreadable) mid-scan."""
        try:
            return os.stat(path)
        except OSError as e:
            self.skip(path, VANISHED if vanished(e) else f"cannot read ({e.strerror or e})")
            return None

    def claim(self, folder: str) -> bool:
        """Marks `folder` as visited, so that no link leads the walk into it again; False (listed) if it vanished."""
        st = self.stat_or_skip(folder)
        if st is not None:
            self.seen_dirs.add((st.st_dev, st.st_ino))
        return st is not None

    def walk_images(self, folder: str, top: bool = False, depth: int = 0) -> list[str]:
        """Every acceptable image file below `folder` (recursively), each real folder visited once, MAX_DEPTH deep."""
        if depth > MAX_DEPTH:
            self.skip(folder, f"folder nested more than {MAX_DEPTH} levels deep, not searched")
            return []
        st = self.stat_or_skip(folder)
        if st is None:
            return []
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs and not top:
            self.ignore(folder, "folder already visited (symlink loop or second link), not followed")
            return []
        self.seen_dirs.add(key)
        dirs, files = self.visible_entries(folder)
        out = [f for f in files if self.accept_file(f)]
        for d in dirs:
            out.extend(self.walk_images(d, depth=depth + 1))
        return out
