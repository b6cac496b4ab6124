"""Scanning an image folder into labelled file lists: layouts, junk, bad files, symlink loops, stratified split.

Three layouts are recognised (checked in this order), folder names case-insensitively:

- split folders: a training folder (`train/`, `training/`, `training_set/`) with a validation one (`val/`, `valid/`,
  `validation/`, else `test/`, `testing/`, `test_set/`): the cats-vs-dogs note's layout and Kaggle's. Without a
  validation folder, the training one is split. Inside each, class folders, or a flat Kaggle folder (below).
- `ROOT/<class>/...`: class folders (searched recursively, like torchvision's ImageFolder), split stratified by class.
- `ROOT/cat.123.jpg`: a flat Kaggle folder; the label is the file name up to `.NUMBER` / `_NUMBER` / `-NUMBER`.

One wrapper folder is looked through (`ROOT/dataset/training_set/...`, the Kaggle zip's `training_set/training_set/`):
a folder that holds no images and one folder, which holds no images but folders. What could be read two ways is
refused, never guessed: two folders that could each be the training (or validation) set, and a class folder that
holds class folders (`mammals/cat/`, `mammals/dog/`: the classes are the top folders or the folders with the images;
`layout` "classes" or "leaves" picks one, see LAYOUTS in alexnet.config).

What is not data is *ignored* and listed (never an error, even with strict): hidden files and folders (`.DS_Store`,
`.ipynb_checkpoints`, `._name.jpg` AppleDouble files), `Thumbs.db`, `desktop.ini`, `__MACOSX`, files without an image
extension, a second path to a file already seen (symlinks). What looks like data but cannot be used is *skipped* and
listed with the reason (zero-byte, not an image, truncated, too small, decompression bomb, broken symlink); with
`strict=True` the first skip is a DataError naming the file. Each is logged once per file per process. A file or
folder that vanishes while the folder is scanned is skipped and listed ("vanished during the scan"), and class
folders are searched at most MAX_DEPTH (64) levels deep (a deeper folder is skipped and listed, never a RecursionError).

Class names are sorted (ImageFolder's order), so the label order does not depend on the file system.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import random
import re
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from alexnet.config import LAYOUTS
from alexnet.data.images import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    IMAGE_EXTENSIONS,
    decode_image,
    display_path,
)
from alexnet.data.limits import SealBroken, decode_workers, open_sealed_json, sealed_json
from alexnet.errors import AlexNetError, ConfigError, DataError, short
from alexnet.files import FileWriteError, atomic_write_text

log = logging.getLogger("alexnet.data")

TRAIN_FOLDER_NAMES = ("train", "training", "training_set")
VAL_FOLDER_NAMES = ("val", "valid", "validation")
TEST_FOLDER_NAMES = ("test", "testing", "test_set")  # the validation set when there is no val folder
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db"}
SYSTEM_FOLDERS = {"__macosx", "$recycle.bin", "system volume information", "@eadir"}
# cat.123.jpg, dog_7.png, golden-retriever-12.jpg -> cat, dog, golden-retriever
FLAT_LABEL = re.compile(r"^(?P<label>.+?)[._-]\d+$")

MAX_DEPTH = 64  # class folders nested deeper than this are not searched (a runaway tree, or a path near PATH_MAX)
VANISHED = "vanished during the scan (removed or renamed by another program)"

_reported: set[tuple[str, str]] = set()  # (path, reason) already logged in this process


def _vanished(e: OSError) -> bool:
    return e.errno in (errno.ENOENT, errno.ENOTDIR)


def report(kind: str, path: str, reason: str) -> None:
    """Logs a skipped/ignored/noted file once per process, with a path that is safe to print."""
    key = (path, reason)
    if key in _reported:
        return
    _reported.add(key)
    level = logging.WARNING if kind == "skipped" else logging.INFO
    log.log(level, "%s %s: %s", kind, display_path(path), reason)


@dataclass
class ScanResult:
    """What a folder holds: labelled files per split, and everything left out with the reason."""

    root: str
    layout: str  # "train/val (classes)", "train only, split (flat)", "classes", "flat", "leaves"; the folders read
    # when they are not plain train/ and val/ ("train/val (classes: training_set/ + test_set/)", "classes (in pets/)")
    class_names: list[str]
    train: list[tuple[str, int]]  # (path, label), sorted
    val: list[tuple[str, int]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # data that cannot be used
    ignored: list[tuple[str, str]] = field(default_factory=list)  # not data at all
    notes: list[tuple[str, str]] = field(default_factory=list)  # used, but worth knowing (animated GIF, ...)

    def files(self) -> list[str]:
        return [p for p, _ in self.train] + [p for p, _ in self.val]


class _Walker:
    """Lists candidate image files under a folder, following symlinks without looping or double counting."""

    def __init__(self, ignored: list[tuple[str, str]], skipped: list[tuple[str, str]]):
        self.ignored = ignored
        self.skipped = skipped
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
            if _vanished(e) and self.listings:  # a subfolder removed mid-scan; the root itself is an error
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
                elif _vanished(e):
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
            self.skip(path, VANISHED if _vanished(e) else f"cannot read ({e.strerror or e})")
            return None

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


def _flat_label(path: str) -> str | None:
    stem = os.path.splitext(os.path.basename(path))[0]
    m = FLAT_LABEL.match(stem)
    return m.group("label") if m else None


def _image_named(path: str) -> bool:
    """An image file by its name alone (no stat, no report): what the layout is recognised from."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower() not in SYSTEM_FILES and name.lower().endswith(IMAGE_EXTENSIONS)


def _image_folders(walker: _Walker, folder: str, depth: int = 0, seen: set | None = None) -> list[str]:
    """The folders at or below `folder` that hold image files directly; each real folder once, MAX_DEPTH deep."""
    seen = set() if seen is None else seen
    try:
        st = os.stat(folder)
    except OSError:
        return []  # the walk that follows lists it as vanished or unreadable
    if depth > MAX_DEPTH or (st.st_dev, st.st_ino) in seen:
        return []
    seen.add((st.st_dev, st.st_ino))
    dirs, files = walker.visible_entries(folder)
    out = [folder] if any(_image_named(f) for f in files) else []
    for d in dirs:
        out.extend(_image_folders(walker, d, depth + 1, seen))
    return out


def _wrapped(walker: _Walker, folder: str) -> str | None:
    """The one folder inside `folder` when `folder` only wraps it (no images beside it, and it holds folders but
    no images): `dataset/` of `dataset/training_set/`, the outer `training_set/` of `training_set/training_set/`."""
    dirs, files = walker.visible_entries(folder)
    if len(dirs) != 1 or any(_image_named(f) for f in files):
        return None
    inner_dirs, inner_files = walker.visible_entries(dirs[0])
    if not inner_dirs or any(_image_named(f) for f in inner_files):
        return None
    return dirs[0]


def _class_name(path: str, base: str) -> str:
    return display_path(os.path.relpath(path, base)).replace(os.sep, "/")


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 8 else ", ".join(names[:8]) + f", ... ({len(names)} in all)"


def _refuse_nested(folder: str, dirs: list[str], nested: dict[str, list[str]]) -> None:
    """A class folder that holds class folders: both readings, one line each, with the option that picks it."""
    first, leaves = next(iter(nested.items()))
    inner = sorted({_class_name(leaf, first).split("/")[0] for leaf in leaves})
    top = sorted(_class_name(d, folder) for d in dirs)
    all_leaves = sorted({_class_name(leaf, folder) for d in dirs for leaf in nested.get(d, [d])})
    raise DataError(
        f"{display_path(folder)}: class folder {_class_name(first, folder)!r} holds class folders ({_names(inner)}); "
        "the folder can be read two ways, pick one:\n"
        f"  --layout classes: {len(top)} classes ({_names(top)}), the images below each counted for it\n"
        f"  --layout leaves: {len(all_leaves)} classes ({_names(all_leaves)}), one per folder that holds images"
    )


def _collect_split(walker: _Walker, folder: str, layout: str = "auto") -> tuple[str, str, dict[str, list[str]]]:
    """(kind, the folder read, files by class name) for one split folder: class folders if there are any, else
    labels from file names. A wrapper folder is looked through; `layout` says how class folders are read."""
    inner = _wrapped(walker, folder)
    if inner is not None:
        st = walker.stat_or_skip(folder)
        if st is not None:
            walker.seen_dirs.add((st.st_dev, st.st_ino))
        folder = inner
    dirs, files = walker.visible_entries(folder)
    st = walker.stat_or_skip(folder)
    if st is not None:
        walker.seen_dirs.add((st.st_dev, st.st_ino))
    if dirs:
        by_class: dict[str, list[str]] = {}
        for f in files:
            if walker.accept_file(f):
                walker.ignore(f, "image outside any class folder")
        if layout == "leaves":
            for leaf in sorted({leaf for d in dirs for leaf in _image_folders(walker, d)}):
                images = [f for f in walker.visible_entries(leaf)[1] if walker.accept_file(f)]
                by_class.setdefault(_class_name(leaf, folder), []).extend(images)
            for d in dirs:  # a folder with no image anywhere below it is an empty class, as with class folders
                if not any(name.split("/")[0] == _class_name(d, folder) for name in by_class):
                    by_class[_class_name(d, folder)] = []
            return "leaves", folder, by_class
        if layout == "auto":
            nested = {}
            for d in dirs:
                if not any(_image_named(f) for f in walker.visible_entries(d)[1]):  # images of its own: a class
                    leaves = _image_folders(walker, d)
                    if len(leaves) >= 2 and os.path.commonpath(leaves) not in leaves:
                        nested[d] = leaves
            if nested:
                _refuse_nested(folder, dirs, nested)
        # Class folders are claimed first, so a link inside one class to another class's folder is not followed.
        live = []
        for d in dirs:
            st = walker.stat_or_skip(d)
            if st is not None:  # a class folder that vanished since the listing is no class at all
                walker.seen_dirs.add((st.st_dev, st.st_ino))
                live.append(d)
        for d in live:
            name = display_path(os.path.basename(d))
            images = walker.walk_images(d, top=True)
            if name in by_class:
                by_class[name].extend(images)
            else:
                by_class[name] = images
        return "classes", folder, by_class
    by_class = {}
    for f in files:
        if not walker.accept_file(f):
            continue
        label = _flat_label(f)
        if label is None:
            walker.skip(f, "no label in the file name (a flat folder needs names like cat.123.jpg)")
            continue
        by_class.setdefault(display_path(label), []).append(f)
    return "flat", folder, by_class


def _split_folders(walker: _Walker, folder: str) -> tuple[str | None, str | None]:
    """(training folder, validation folder) among `folder`'s subfolders; two candidates for one role are refused."""
    dirs = walker.visible_entries(folder)[0]

    def pick(names: tuple[str, ...], role: str) -> str | None:
        found = [d for d in dirs if os.path.basename(d).lower() in names]
        if len(found) > 1:
            both = " and ".join(display_path(os.path.basename(d)) + "/" for d in found)
            raise DataError(f"{display_path(folder)}: {both} could each be the {role} set; move or rename all but one")
        return found[0] if found else None

    train = pick(TRAIN_FOLDER_NAMES, "training")
    if train is None:
        return None, None
    return train, pick(VAL_FOLDER_NAMES, "validation") or pick(TEST_FOLDER_NAMES, "validation")


def _verify_files(
    root: str, paths: list[str], min_side: int, max_pixels: int, workers: int
) -> dict[str, tuple[str | None, list[str]]]:
    """Decodes every file once (JPEG at reduced scale, which still reads the whole stream) to find the bad ones.

    Results are remembered in $ALEXNET_CACHE/verify/ keyed by path, size and mtime, so a second scan of a large folder
    is instant. Returns path -> (reason it is unusable or None, notes).
    """
    store_path = _verify_store_path(root, min_side, max_pixels)
    store = _open_verify_store(store_path)

    def key_of(p: str) -> str:
        st = os.stat(p)
        return f"{display_path(os.path.realpath(p))}|{st.st_size}|{st.st_mtime_ns}"

    def check(p: str) -> tuple[str | None, list[str]]:
        try:
            decoded = decode_image(p, 3, min_side=min_side, max_pixels=max_pixels, draft=(32, 32))
        except DataError as e:
            # The message starts with the path; keep only the cause.
            msg = str(e)
            prefix = display_path(p) + ": "
            return (msg[len(prefix) :] if msg.startswith(prefix) else msg), []
        return None, decoded.notes

    results: dict[str, tuple[str | None, list[str]]] = {}
    todo: list[tuple[str, str]] = []
    for p in paths:
        try:
            k = key_of(p)
        except OSError as e:  # removed or made unreadable since it was listed
            results[p] = (VANISHED if _vanished(e) else f"cannot read ({e.strerror or e})", [])
            continue
        if k in store:
            results[p] = (store[k][0], list(store[k][1]))
        else:
            todo.append((p, k))
    if todo:
        with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL releases the GIL while decoding
            for (p, k), res in zip(todo, pool.map(lambda t: check(t[0]), todo), strict=True):
                results[p] = res
                store[k] = [res[0], res[1]]
        if store_path is not None:
            try:  # exclusive unpredictable temporary, 0600, renamed over the store: never a planted symlink
                atomic_write_text(store_path, sealed_json(store), mode=0o600)
            except FileWriteError as e:
                log.info("verification results not remembered: %s", e)  # a read-only cache only costs speed
    return results


def _verify_store_path(root: str, min_side: int, max_pixels: int) -> str | None:
    """$ALEXNET_CACHE/verify/<hash of the root and settings>.json, or None when the cache folder is unusable."""
    from alexnet.data.cachedir import cache_dir  # local: keeps this module importable without side effects

    settings = f"{display_path(os.path.realpath(root))}:{min_side}:{max_pixels}:v2"  # one small file per dataset
    try:
        folder = cache_dir("verify")
    except AlexNetError as e:  # unsafe or unwritable: scan without remembering, and say why once
        report("note", "verify", f"verification results are not remembered ({e})")
        return None
    return os.path.join(folder, hashlib.sha1(settings.encode()).hexdigest()[:16] + ".json")


def _open_verify_store(store_path: str | None) -> dict[str, list]:
    """The remembered verdicts {key: [reason or None, [notes]]}; a damaged store is dropped with a warning."""
    if store_path is None or not os.path.lexists(store_path):
        return {}
    try:
        store = open_sealed_json(store_path)
        if not isinstance(store, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 2 and (v[0] is None or isinstance(v[0], str))
            and isinstance(v[1], list) and all(isinstance(n, str) for n in v[1])
            for k, v in store.items()
        ):
            raise SealBroken("entries are not [reason, [notes]] pairs")
    except SealBroken as e:
        log.warning("verification store %s: %s; checking every file again", display_path(store_path), e)
        return {}
    return store


def stratified_split(
    by_class: dict[str, list[str]], val_split: float, seed: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Seeded per-class split; independent of listing order. A class of n >= 2 gives at least one image to each side."""
    rng = random.Random(seed)
    train, val = {}, {}
    for name in sorted(by_class):
        files = sorted(by_class[name])
        rng.shuffle(files)
        n = len(files)
        n_val = round(n * val_split)
        if val_split > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        val[name] = sorted(files[:n_val])
        train[name] = sorted(files[n_val:])
    return train, val


def scan_folder(
    root: str | os.PathLike,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    verify: bool = True,
    workers: int | None = None,
    layout: str = "auto",
) -> ScanResult:
    """Scans an image folder in any of the three layouts (module docstring) into labelled train/val lists.

    `layout` (one of LAYOUTS) says how class folders inside class folders are read: refused (auto), the top ones
    (classes) or each folder that holds images (leaves)."""
    root = os.fspath(root)
    shown = display_path(root)
    if not os.path.isdir(root):
        raise DataError(f"{shown}: not a folder" if os.path.exists(root) else f"{shown}: no such folder")
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1), got {val_split}")
    if layout not in LAYOUTS:
        raise ConfigError(f"field 'data.layout' must be one of {', '.join(LAYOUTS)}, got {short(layout)}")
    skipped: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    walker = _Walker(ignored, skipped)
    try:
        root_stat = os.stat(root)
    except OSError as e:
        raise DataError(f"{shown}: cannot read the folder ({e.strerror or e})") from None
    walker.seen_dirs.add((root_stat.st_dev, root_stat.st_ino))  # a link back to the root is never followed

    base = root  # where the layout starts: the root, or the one folder it wraps (dataset/ of dataset/training_set/)
    train_dir, val_dir = _split_folders(walker, root)
    if train_dir is None and (inner := _wrapped(walker, root)) is not None:
        base = inner
        if (st := walker.stat_or_skip(base)) is not None:
            walker.seen_dirs.add((st.st_dev, st.st_ino))
        train_dir, val_dir = _split_folders(walker, base)
    subdirs = walker.visible_entries(base)[0]

    def named(folder: str) -> str:
        return _class_name(folder, root) + "/"

    # Either both given splits (train_by_class, val_by_class) or one pool to split (all_by_class).
    train_by_class = val_by_class = all_by_class = None
    if train_dir is not None and val_dir is not None:
        kind, train_read, train_by_class = _collect_split(walker, train_dir, layout)
        _, val_read, val_by_class = _collect_split(walker, val_dir, layout)
        unknown = sorted(set(val_by_class) - set(train_by_class))
        if unknown:
            raise DataError(
                f"{display_path(val_dir)}: classes {unknown} are not in {display_path(train_dir)} "
                f"(train has {sorted(train_by_class)})"
            )
        plain = (named(train_read), named(val_read)) in {("train/", n + "/") for n in VAL_FOLDER_NAMES}
        layout_name = f"train/val ({kind})" if plain else f"train/val ({kind}: {named(train_read)} + {named(val_read)})"
    elif train_dir is not None:
        kind, train_read, all_by_class = _collect_split(walker, train_dir, layout)
        where = "" if named(train_read) == "train/" else f": {named(train_read)}"
        layout_name = f"train only, split ({kind}{where})"
    else:
        kind, _, all_by_class = _collect_split(walker, base, layout)
        layout_name = kind if base == root else f"{kind} (in {named(base)})"

    train_where = display_path(train_dir) if train_dir is not None else shown
    pools = {train_where: train_by_class, display_path(val_dir or ""): val_by_class}
    if all_by_class is not None:
        pools = {train_where: all_by_class}
    for where, by_class in pools.items():
        if not by_class and where == train_where:
            raise DataError(
                f"{where}: no classes found (expected class folders, train/ and val/, or file names like cat.1.jpg)"
            )
        for name, files in by_class.items():
            if not files:
                raise DataError(f"{where}: class folder {name!r} holds no image files")

    if strict and skipped:
        p, reason = skipped[0]
        raise DataError(f"{display_path(p)}: {reason} (strict mode: fix or remove the file)")

    # Content check: every candidate file is decoded once (remembered by size and mtime).
    notes: list[tuple[str, str]] = []
    if train_dir is not None:  # e.g. Kaggle's test1/ or a test/ split: said, not silently dropped
        for other in sorted(set(subdirs) - {train_dir, val_dir}):
            notes.append((other, "folder beside train/ not used (to evaluate on it: alexnet eval --checkpoint RUN --data FOLDER)"))
            report("note", other, notes[-1][1])
    if verify:
        candidates = sorted({f for by_class in pools.values() for files in by_class.values() for f in files})
        results = _verify_files(root, candidates, min_side, max_pixels, decode_workers(workers))
        bad = set()
        for p in candidates:
            reason, file_notes = results[p]
            if reason is not None:
                if strict:
                    raise DataError(f"{display_path(p)}: {reason} (strict mode: fix or remove the file)")
                walker.skip(p, reason)
                bad.add(p)
            for n in file_notes:
                notes.append((p, n))
                report("note", p, n)
        for where, by_class in pools.items():
            for name in by_class:
                kept = [f for f in by_class[name] if f not in bad]
                if not kept and where == train_where:
                    raise DataError(
                        f"{where}: class {name!r} has no usable images (all {len(by_class[name])} skipped, "
                        f"first: {display_path(by_class[name][0])})"
                    )
                by_class[name] = kept

    if all_by_class is not None:
        train_by_class, val_by_class = stratified_split(all_by_class, val_split, seed)
    if any(val_by_class.values()):  # with no validation set at all (val_split=0) there is nothing to point out
        for name in sorted(train_by_class):
            if not val_by_class.get(name):
                notes.append((root, f"class {name!r} has no validation images"))

    class_names = sorted(train_by_class)
    index = {name: i for i, name in enumerate(class_names)}
    train = sorted((f, index[c]) for c, fs in train_by_class.items() for f in fs)
    val = sorted((f, index[c]) for c, fs in val_by_class.items() for f in fs)
    if not train:
        raise DataError(f"{shown}: no usable training images ({len(skipped)} skipped)")
    return ScanResult(root, layout_name, class_names, train, val, skipped, ignored, notes)


def count_by_class(samples: Iterable[tuple[str, int]], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for _, label in samples:
        counts[label] += 1
    return counts
