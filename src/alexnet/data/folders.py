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
The walk itself is walk.py; the decoding of every file found, verify.py.

Class names are sorted (ImageFolder's order), so the label order does not depend on the file system.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
from dataclasses import dataclass, field

from alexnet.config import LAYOUTS
from alexnet.data.images import display_path
from alexnet.data.verify import FileChecks, verify_files
from alexnet.data.walk import MAX_DEPTH, Walker, image_named, report
from alexnet.errors import ConfigError, DataError, short

TRAIN_FOLDER_NAMES = ("train", "training", "training_set")
VAL_FOLDER_NAMES = ("val", "valid", "validation")
TEST_FOLDER_NAMES = ("test", "testing", "test_set")  # the validation set when there is no val folder
# cat.123.jpg, dog_7.png, golden-retriever-12.jpg -> cat, dog, golden-retriever
FLAT_LABEL = re.compile(r"^(?P<label>.+?)[._-]\d+$")
UNUSED_FOLDER = "folder beside train/ not used (to evaluate on it: alexnet eval --checkpoint RUN --data FOLDER)"


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


def _flat_label(path: str) -> str | None:
    stem = os.path.splitext(os.path.basename(path))[0]
    m = FLAT_LABEL.match(stem)
    return m.group("label") if m else None


def _image_folders(walker: Walker, folder: str, depth: int = 0, seen: set | None = None) -> list[str]:
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
    out = [folder] if any(image_named(f) for f in files) else []
    for d in dirs:
        out.extend(_image_folders(walker, d, depth + 1, seen))
    return out


def _wrapped(walker: Walker, folder: str) -> str | None:
    """The one folder inside `folder` when `folder` only wraps it (no images beside it, and it holds folders but
    no images): `dataset/` of `dataset/training_set/`, the outer `training_set/` of `training_set/training_set/`."""
    dirs, files = walker.visible_entries(folder)
    if len(dirs) != 1 or any(image_named(f) for f in files):
        return None
    inner_dirs, inner_files = walker.visible_entries(dirs[0])
    if not inner_dirs or any(image_named(f) for f in inner_files):
        return None
    return dirs[0]


def _class_name(path: str, base: str) -> str:
    return display_path(os.path.relpath(path, base)).replace(os.sep, "/")


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 8 else ", ".join(names[:8]) + f", ... ({len(names)} in all)"


def _refuse_nested(walker: Walker, folder: str, dirs: list[str], nested: dict[str, list[str]]) -> None:
    """A class folder that holds class folders: both readings, one line each, with the option that picks it. Each
    reading's classes are the ones that option gives (`_leaves` for leaves): a folder that is not itself nested may
    still hold its images one level down (`birds/owl/`), and its class is then `birds/owl`, not `birds`."""
    first, leaves = next(iter(nested.items()))
    inner = sorted({_class_name(leaf, first).split("/")[0] for leaf in leaves})
    top = sorted(_class_name(d, folder) for d in dirs)
    all_leaves = sorted({name for name, _ in _leaves(walker, folder, dirs)})
    raise DataError(
        f"{display_path(folder)}: class folder {_class_name(first, folder)!r} holds class folders ({_names(inner)}); "
        "the folder can be read two ways, pick one:\n"
        f"  --layout classes: {len(top)} classes ({_names(top)}), the images below each counted for it\n"
        f"  --layout leaves: {len(all_leaves)} classes ({_names(all_leaves)}), one per folder that holds images"
    )


def _collect_split(walker: Walker, folder: str, layout: str = "auto") -> tuple[str, str, dict[str, list[str]]]:
    """(kind, the folder read, files by class name) for one split folder: class folders if there are any, else
    labels from file names. A wrapper folder is looked through; `layout` says how class folders are read."""
    inner = _wrapped(walker, folder)
    if inner is not None:
        walker.claim(folder)
        folder = inner
    dirs, files = walker.visible_entries(folder)
    walker.claim(folder)
    if not dirs:
        return "flat", folder, _flat_classes(walker, files)
    for f in files:
        if walker.accept_file(f):
            walker.ignore(f, "image outside any class folder")
    if layout == "leaves":
        return "leaves", folder, _leaf_classes(walker, folder, dirs)
    if layout == "auto" and (nested := _nested_classes(walker, dirs)):
        _refuse_nested(walker, folder, dirs, nested)
    return "classes", folder, _folder_classes(walker, dirs)


def _leaf_classes(walker: Walker, folder: str, dirs: list[str]) -> dict[str, list[str]]:
    """`layout` leaves: one class per folder that holds images, named by its path below `folder`."""
    by_class: dict[str, list[str]] = {}
    for name, leaf in _leaves(walker, folder, dirs):
        images = [f for f in walker.visible_entries(leaf)[1] if walker.accept_file(f)] if leaf is not None else []
        by_class.setdefault(name, []).extend(images)
    return by_class


def _leaves(walker: Walker, folder: str, dirs: list[str]) -> list[tuple[str, str | None]]:
    """(class name, folder) of each class `layout` leaves gives: every folder below `dirs` that holds images,
    named by its path below `folder`; a folder of `dirs` with no image anywhere below it is an empty class (folder
    None), as with class folders. The nested-layout refusal names these same classes."""
    found = [(_class_name(leaf, folder), leaf) for leaf in sorted({leaf for d in dirs for leaf in _image_folders(walker, d)})]
    names = {name.split("/")[0] for name, _ in found}
    return found + [(_class_name(d, folder), None) for d in dirs if _class_name(d, folder) not in names]


def _nested_classes(walker: Walker, dirs: list[str]) -> dict[str, list[str]]:
    """The class folders that hold class folders (no images of their own, images in two separate folders below)."""
    nested = {}
    for d in dirs:
        if not any(image_named(f) for f in walker.visible_entries(d)[1]):  # images of its own: a class
            leaves = _image_folders(walker, d)
            if len(leaves) >= 2 and os.path.commonpath(leaves) not in leaves:
                nested[d] = leaves
    return nested


def _folder_classes(walker: Walker, dirs: list[str]) -> dict[str, list[str]]:
    """One class per folder in `dirs`, holding every image below it."""
    # Class folders are claimed first, so a link inside one class to another class's folder is not followed.
    live = [d for d in dirs if walker.claim(d)]  # a class folder that vanished since the listing is no class at all
    by_class: dict[str, list[str]] = {}
    for d in live:
        by_class.setdefault(display_path(os.path.basename(d)), []).extend(walker.walk_images(d, top=True))
    return by_class


def _flat_classes(walker: Walker, files: list[str]) -> dict[str, list[str]]:
    """A flat folder: the label of each file is its name up to `.NUMBER` (cat.123.jpg)."""
    by_class: dict[str, list[str]] = {}
    for f in files:
        if not walker.accept_file(f):
            continue
        label = _flat_label(f)
        if label is None:
            walker.skip(f, "no label in the file name (a flat folder needs names like cat.123.jpg)")
            continue
        by_class.setdefault(display_path(label), []).append(f)
    return by_class


def _split_folders(walker: Walker, folder: str) -> tuple[str | None, str | None]:
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


# --- scan_folder's steps, in the order it takes them ------------------------------------------------------------


@dataclass(frozen=True)
class _Base:
    """Where the layout starts (the root, or the one folder it wraps) and the split folders found there."""

    folder: str
    train_dir: str | None
    val_dir: str | None


@dataclass(frozen=True)
class _Collected:
    """Files by class as read: the given training and validation sets, or (`val` None) one pool that the seeded
    split divides; `train_where` and `val_where` name them in messages."""

    layout: str  # ScanResult.layout
    train: dict[str, list[str]]
    val: dict[str, list[str]] | None
    train_where: str
    val_where: str = ""

    def sets(self) -> list[tuple[str, dict[str, list[str]]]]:
        """(where, files by class) of the training set (or pool) first, then of the validation set if given."""
        return [(self.train_where, self.train)] + ([] if self.val is None else [(self.val_where, self.val)])


def _check_arguments(root: str, val_split: float, layout: str) -> None:
    shown = display_path(root)
    if not os.path.isdir(root):
        raise DataError(f"{shown}: not a folder" if os.path.exists(root) else f"{shown}: no such folder")
    if not 0.0 <= val_split < 1.0:
        raise DataError(f"val_split must be in [0, 1), got {val_split}")
    if layout not in LAYOUTS:
        raise ConfigError(f"field 'data.layout' must be one of {', '.join(LAYOUTS)}, got {short(layout)}")


def _find_base(walker: Walker, root: str) -> _Base:
    """The root's split folders; when it has none and only wraps one folder (dataset/ of dataset/training_set/),
    that folder and its split folders."""
    try:
        root_stat = os.stat(root)
    except OSError as e:
        raise DataError(f"{display_path(root)}: cannot read the folder ({e.strerror or e})") from None
    walker.seen_dirs.add((root_stat.st_dev, root_stat.st_ino))  # a link back to the root is never followed
    train_dir, val_dir = _split_folders(walker, root)
    if train_dir is None and (inner := _wrapped(walker, root)) is not None:
        walker.claim(inner)
        return _Base(inner, *_split_folders(walker, inner))
    return _Base(root, train_dir, val_dir)


def _collect(walker: Walker, root: str, base: _Base, layout: str) -> _Collected:
    """Files by class from the split folders, or from the base folder when there is no training folder."""

    def named(folder: str) -> str:
        return _class_name(folder, root) + "/"

    train_dir, val_dir = base.train_dir, base.val_dir
    if train_dir is not None and val_dir is not None:
        kind, train_read, train = _collect_split(walker, train_dir, layout)
        _, val_read, val = _collect_split(walker, val_dir, layout)
        unknown = sorted(set(val) - set(train))
        if unknown:
            raise DataError(
                f"{display_path(val_dir)}: classes {unknown} are not in {display_path(train_dir)} "
                f"(train has {sorted(train)})"
            )
        plain = (named(train_read), named(val_read)) in {("train/", n + "/") for n in VAL_FOLDER_NAMES}
        layout_name = f"train/val ({kind})" if plain else f"train/val ({kind}: {named(train_read)} + {named(val_read)})"
        return _Collected(layout_name, train, val, display_path(train_dir), display_path(val_dir))
    if train_dir is not None:
        kind, train_read, pool = _collect_split(walker, train_dir, layout)
        where = "" if named(train_read) == "train/" else f": {named(train_read)}"
        return _Collected(f"train only, split ({kind}{where})", pool, None, display_path(train_dir))
    kind, _, pool = _collect_split(walker, base.folder, layout)
    layout_name = kind if base.folder == root else f"{kind} (in {named(base.folder)})"
    return _Collected(layout_name, pool, None, display_path(root))


def _check_classes(collected: _Collected) -> None:
    """The training set (or pool) has classes, and every class folder holds image files."""
    if not collected.train:
        raise DataError(
            f"{collected.train_where}: no classes found (expected class folders, train/ and val/, or file names like "
            "cat.1.jpg)"
        )
    for where, by_class in collected.sets():
        for name, files in by_class.items():
            if not files:
                raise DataError(f"{where}: class folder {name!r} holds no image files")


def _unused_folders(walker: Walker, base: _Base) -> list[tuple[str, str]]:
    """Notes on the folders beside train/ that are not read (e.g. Kaggle's test1/ or a test/ split): said, not
    silently dropped."""
    if base.train_dir is None:
        return []
    others = sorted(set(walker.visible_entries(base.folder)[0]) - {base.train_dir, base.val_dir})
    for other in others:
        report("note", other, UNUSED_FOLDER)
    return [(other, UNUSED_FOLDER) for other in others]


def _drop_unusable(
    walker: Walker, root: str, collected: _Collected, strict: bool, checks: FileChecks
) -> tuple[_Collected, list[tuple[str, str]]]:
    """The content check: every candidate file is decoded once (verify.py); (what is left, notes on the files)."""
    candidates = sorted({f for _, by_class in collected.sets() for files in by_class.values() for f in files})
    results = verify_files(root, candidates, checks)
    bad, notes = set(), []
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
    train = _usable(collected.train, bad, collected.train_where)
    val = None if collected.val is None else _usable(collected.val, bad, None)
    return dataclasses.replace(collected, train=train, val=val), notes


def _usable(by_class: dict[str, list[str]], bad: set[str], where: str | None) -> dict[str, list[str]]:
    """`by_class` less the `bad` files; with `where` (the training set's name) a class left empty is an error."""
    kept = {name: [f for f in files if f not in bad] for name, files in by_class.items()}
    for name, files in kept.items():
        if not files and where is not None:
            raise DataError(
                f"{where}: class {name!r} has no usable images (all {len(by_class[name])} skipped, "
                f"first: {display_path(by_class[name][0])})"
            )
    return kept


def _split(collected: _Collected, val_split: float, seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training, validation) files by class: as given, or the pool split with the seeded stratified split."""
    if collected.val is None:
        return stratified_split(collected.train, val_split, seed)
    return collected.train, collected.val


def _missing_val_notes(root: str, train: dict[str, list[str]], val: dict[str, list[str]]) -> list[tuple[str, str]]:
    if not any(val.values()):  # with no validation set at all (val_split=0) there is nothing to point out
        return []
    return [(root, f"class {name!r} has no validation images") for name in sorted(train) if not val.get(name)]


def _labelled(
    train: dict[str, list[str]], val: dict[str, list[str]]
) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """(class names, sorted; (path, label) of every training file; of every validation file), each list sorted."""
    class_names = sorted(train)
    index = {name: i for i, name in enumerate(class_names)}
    labelled_train = sorted((f, index[c]) for c, fs in train.items() for f in fs)
    labelled_val = sorted((f, index[c]) for c, fs in val.items() for f in fs)
    return class_names, labelled_train, labelled_val


def scan_folder(
    root: str | os.PathLike,
    *,
    val_split: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    verify: bool = True,
    layout: str = "auto",
    checks: FileChecks = FileChecks(),
) -> ScanResult:
    """Scans an image folder in any of the three layouts (module docstring) into labelled train/val lists.

    `layout` (one of LAYOUTS) says how class folders inside class folders are read: refused (auto), the top ones
    (classes) or each folder that holds images (leaves). With `verify`, every file is decoded once under `checks`
    (verify.py) and the unusable ones are skipped."""
    root = os.fspath(root)
    _check_arguments(root, val_split, layout)
    walker = Walker()
    base = _find_base(walker, root)
    collected = _collect(walker, root, base, layout)
    _check_classes(collected)
    if strict and walker.skipped:
        p, reason = walker.skipped[0]
        raise DataError(f"{display_path(p)}: {reason} (strict mode: fix or remove the file)")
    notes = _unused_folders(walker, base)
    if verify:
        collected, file_notes = _drop_unusable(walker, root, collected, strict, checks)
        notes = notes + file_notes
    train_by_class, val_by_class = _split(collected, val_split, seed)
    notes = notes + _missing_val_notes(root, train_by_class, val_by_class)
    class_names, train, val = _labelled(train_by_class, val_by_class)
    if not train:
        raise DataError(f"{display_path(root)}: no usable training images ({len(walker.skipped)} skipped)")
    return ScanResult(root, collected.layout, class_names, train, val, walker.skipped, walker.ignored, notes)
