"""One function turns a `--data` value into train/val datasets with class names: `build_datasets`.

Sources:
- None or "shapes": the built-in dataset (synthetic.py), generated under $ALEXNET_CACHE/datasets on first use;
- "mnist", "fashion-mnist", "cifar10": torchvision's layout under `root` (downloaded with download=True);
- a folder of IDX files (MNIST names, raw or .gz);
- an image folder: split folders (train/ + val/, Kaggle's training_set/ + test_set/, ...), class folders (stratified
  split), or a flat Kaggle folder, optionally inside one wrapper folder (folders.py).

The returned DataBundle says everything needed to rebuild the same split later (`describe()`), which a checkpoint
stores so that `eval` and `predict` see the same classes, normalisation and validation images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from dataclasses import asdict, dataclass, field

import numpy as np

from alexnet.data.cachedir import cache_dir
from alexnet.data.datasets import ArrayDataset, ImageFileDataset
from alexnet.data.folders import scan_folder, stratified_split
from alexnet.data.idx import find_idx_files, read_idx_pair
from alexnet.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, display_path
from alexnet.data.limits import SealBroken, open_sealed_json, sealed_json
from alexnet.data.synthetic import ShapesConfig, make_shapes
from alexnet.data.transforms import (
    build_transform,
    check_preset,
    default_mean_std,
    default_pca,
    pixel_statistics,
)
from alexnet.data.tvsources import TORCHVISION_SOURCES, load_torchvision_source
from alexnet.data.verify import FileChecks
from alexnet.errors import ConfigError, DataError
from alexnet.files import FileWriteError, atomic_write_text

log = logging.getLogger("alexnet.data")

BUILTIN = "shapes"
STATS_SAMPLE = 1000  # images drawn (seeded) from the training set to estimate mean/std/PCA for `paper`
STATS_SIDE = 64  # ...each reduced to at most this side first: colour statistics barely depend on resolution


@dataclass
class DataBundle:
    """Train/val datasets and everything about how they were made."""

    train: ImageFileDataset | ArrayDataset
    val: ImageFileDataset | ArrayDataset
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # as given, with folders made absolute
    kind: str  # "shapes", "folder", "idx", "mnist", "fashion-mnist", "cifar10"
    layout: str  # how the source was read, e.g. "train/val (classes)", "classes (split 0.2)"
    preset: str
    image_size: int
    in_channels: int
    val_split: float
    seed: int
    pca: tuple | None = None  # (eigval, eigvec) for `paper`
    stats_from: str = "defaults"  # "training set (N images)" or "ImageNet defaults" / "preset defaults"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    shapes: dict | None = None  # the ShapesConfig of the built-in dataset, to regenerate the same images
    root: str | None = None  # where torchvision datasets were read from
    layout_option: str = "auto"  # the --layout an image folder was read with (folders.py)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict:
        """Plain types for a checkpoint: enough to rebuild this exact split with `build_from_description`."""
        return {
            "source": self.source,
            "kind": self.kind,
            "layout": self.layout,
            "preset": self.preset,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "val_split": self.val_split,
            "seed": self.seed,
            "mean": list(self.mean),
            "std": list(self.std),
            "pca": None
            if self.pca is None
            else {"eigval": list(self.pca[0]), "eigvec": [list(r) for r in self.pca[1]]},
            "stats_from": self.stats_from,
            "class_names": list(self.class_names),
            "num_train": len(self.train),
            "num_val": len(self.val),
            "num_skipped": len(self.skipped),
            "shapes": self.shapes,
            "root": self.root,
            "layout_option": self.layout_option,
        }

    def transform(self, train: bool, *, ten_crop: bool = False, augment: bool | None = None):
        """The PIL-path transform of this bundle (the one predict should use with train=False)."""
        return build_transform(
            self.preset, self.image_size, train, self.mean, self.std, self.in_channels,
            pca=self.pca, augment=augment, ten_crop=ten_crop,
        )  # fmt: skip


def _arrays_split(
    images: np.ndarray, labels: np.ndarray, val_split: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split of in-memory arrays (same rule as for folders)."""
    by_class = {str(c): [str(i) for i in np.flatnonzero(labels == c)] for c in np.unique(labels)}
    train, val = stratified_split(by_class, val_split, seed)
    tr = np.array(sorted(int(i) for v in train.values() for i in v), dtype=np.int64)
    va = np.array(sorted(int(i) for v in val.values() for i in v), dtype=np.int64)
    return images[tr], labels[tr], images[va], labels[va]


def _statistics(dataset, in_channels: int, seed: int) -> dict:
    """Mean/std/PCA of a seeded sample of the training set, remembered in $ALEXNET_CACHE/stats by its fingerprint.

    The remembered file normalises every later run, so it is sealed (sha256) and its values checked on open; a
    damaged one is recomputed with a warning. Written 0600 through files.atomic_write."""
    key = hashlib.sha256(f"{dataset.fingerprint()}|{in_channels}|{seed}|{STATS_SAMPLE}|{STATS_SIDE}".encode())
    path = os.path.join(cache_dir("stats"), key.hexdigest()[:24] + ".v2.json")
    if os.path.lexists(path):
        try:
            return _check_statistics(open_sealed_json(path, max_bytes=1 << 16), in_channels)
        except SealBroken as e:
            log.warning("colour statistics %s: %s; computing them again", display_path(path), e)
    indices = list(range(len(dataset)))
    random.Random(seed).shuffle(indices)
    indices = sorted(indices[:STATS_SAMPLE])

    def images():
        for i in indices:
            img = dataset.load_pil(i)
            img.thumbnail((STATS_SIDE, STATS_SIDE))
            yield np.asarray(img)

    stats = pixel_statistics(images())
    stats["count"] = len(indices)
    stats = json.loads(json.dumps(stats))  # plain lists and floats, as they will be read back
    try:
        atomic_write_text(path, sealed_json(stats), mode=0o600)
    except (FileWriteError, ValueError) as e:  # a read-only cache (or NaN from a degenerate sample) only costs time
        log.info("colour statistics not remembered: %s", e)
    return stats


def _check_statistics(stats, in_channels: int) -> dict:
    """The stored statistics if every field has the shape and range `paper` needs, else SealBroken saying which."""
    def floats(value, n: int) -> bool:
        return isinstance(value, list) and len(value) == n and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
        )

    if not isinstance(stats, dict):
        raise SealBroken("not a JSON object")
    if not floats(stats.get("mean"), in_channels) or not floats(stats.get("std"), in_channels):
        raise SealBroken(f"mean/std are not {in_channels} finite numbers")
    if min(stats["std"]) <= 0:
        raise SealBroken("a standard deviation is not positive")
    eigvec = stats.get("eigvec")
    if not floats(stats.get("eigval"), in_channels) or not (
        isinstance(eigvec, list) and len(eigvec) == in_channels and all(floats(r, in_channels) for r in eigvec)
    ):
        raise SealBroken(f"the PCA is not {in_channels} eigenvalues and a {in_channels}x{in_channels} matrix")
    if type(stats.get("count")) is not int or stats["count"] < 1:
        raise SealBroken("the image count is not a positive integer")
    return stats


# The preset a run gets when it names none: the preprocessing of the note the kind of data comes from. IDX digits
# and clothes are the d2l note's (Resize + ToTensor, no normalisation); photo folders, the built-in dataset and
# CIFAR-10 are the cats-vs-dogs note's (Resize + ImageNet mean/std). Measured: benchmarks/README.md, "Parity".
PRESET_BY_KIND = {"idx": "d2l", "mnist": "d2l", "fashion-mnist": "d2l"}
DEFAULT_PRESET = "seed"


def build_datasets(
    source: str | os.PathLike | None = None,
    image_size: int = 227,
    in_channels: int = 3,
    preset: str | None = DEFAULT_PRESET,
    val_split: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    download: bool = False,
    root: str | os.PathLike | None = None,
    *,
    augment: bool | None = None,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    shapes: ShapesConfig | None = None,
    statistics: bool = True,
    layout: str = "auto",
) -> DataBundle:
    """Turns a `--data` value into a DataBundle (see the module docstring for the sources).

    `preset` None takes the kind of data's own (PRESET_BY_KIND); the bundle records the one used. `augment`
    overrides the preset's training augmentation; `statistics=False` makes `paper` use ImageNet's mean/std/PCA
    instead of computing them from the training set. `layout` says how an image folder's class folders are read
    (alexnet.config.LAYOUTS).
    """
    if preset is not None:
        check_preset(preset, image_size, in_channels)
    if not 0.0 <= val_split < 1.0:
        raise ConfigError(f"val_split must be in [0, 1), got {val_split}")
    name = None if source is None else os.fspath(source)
    layout_option, layout = layout, ""  # `layout` below: how the source was read (DataBundle.layout)
    skipped: list = []
    ignored: list = []
    notes: list = []
    common = {"in_channels": in_channels}
    tv_root = None

    if name is None or name == BUILTIN:
        folder = make_shapes(shapes)
        scan = scan_folder(
            folder, val_split=val_split, seed=seed, strict=strict, checks=FileChecks(min_side, max_pixels)
        )
        train = ImageFileDataset(scan.train, min_side=min_side, max_pixels=max_pixels, **common)
        val = ImageFileDataset(scan.val, min_side=min_side, max_pixels=max_pixels, **common)
        class_names, kind, layout, shown = scan.class_names, BUILTIN, scan.layout, BUILTIN
        skipped, ignored, notes = scan.skipped, scan.ignored, scan.notes
    elif name.lower() in TORCHVISION_SOURCES:
        kind = name.lower()
        tv_root = os.fspath(root) if root is not None else cache_dir("torchvision")
        arrays = load_torchvision_source(kind, tv_root, download)
        train = ArrayDataset(arrays.train_images, arrays.train_labels, origin=arrays.folder + ":train", **common)
        val = ArrayDataset(arrays.test_images, arrays.test_labels, origin=arrays.folder + ":test", **common)
        class_names, layout, shown = arrays.class_names, "train/test files", kind
    elif os.path.isdir(name):
        shown = os.path.abspath(name)
        pairs = find_idx_files(name)
        if pairs:
            kind = "idx"
            if "train" not in pairs:
                raise DataError(f"{display_path(name)}: IDX test files but no train-images/train-labels pair")
            tr = read_idx_pair(*pairs["train"])
            if "test" in pairs:
                te = read_idx_pair(*pairs["test"])
                tr_x, tr_y, va_x, va_y = tr.images, tr.labels, te.images, te.labels
                layout = "idx train/test files"
            else:
                tr_x, tr_y, va_x, va_y = _arrays_split(tr.images, tr.labels, val_split, seed)
                layout = f"idx train file (split {val_split})"
            num = int(max(tr_y.max(initial=0), va_y.max(initial=0))) + 1
            class_names = [str(i) for i in range(max(num, 10))]
            train = ArrayDataset(tr_x, tr_y, origin=f"{shown}:train", **common)
            val = ArrayDataset(va_x, va_y, origin=f"{shown}:val", **common)
        else:
            kind = "folder"
            scan = scan_folder(
                name, val_split=val_split, seed=seed, strict=strict, checks=FileChecks(min_side, max_pixels),
                layout=layout_option,
            )
            train = ImageFileDataset(scan.train, min_side=min_side, max_pixels=max_pixels, **common)
            val = ImageFileDataset(scan.val, min_side=min_side, max_pixels=max_pixels, **common)
            class_names, layout = scan.class_names, scan.layout
            skipped, ignored, notes = scan.skipped, scan.ignored, scan.notes
            if not layout.startswith("train/val"):  # split here: the fraction and seed are part of the reading
                layout = f"{layout} (split {val_split}, seed {seed})"
    elif os.path.exists(name):
        raise DataError(f"{display_path(name)}: not a folder (give the folder that holds the images)")
    else:
        known = ", ".join([BUILTIN, *TORCHVISION_SOURCES])
        raise DataError(f"{display_path(name)}: no such folder, and not a built-in dataset ({known})")

    if preset is None:
        preset = PRESET_BY_KIND.get(kind, DEFAULT_PRESET)
        check_preset(preset, image_size, in_channels)
    mean, std = default_mean_std(preset, in_channels)
    pca = None
    stats_from = "ImageNet" if preset == "seed" else "none (d2l: ToTensor only)" if preset == "d2l" else ""
    if preset == "paper":
        if statistics and len(train):
            stats = _statistics(train, in_channels, seed)
            mean, std = tuple(stats["mean"]), tuple(stats["std"])
            pca = (tuple(stats["eigval"]), tuple(tuple(r) for r in stats["eigvec"]))
            stats_from = f"training set ({stats['count']} images)"
        else:
            pca = default_pca(in_channels)
            stats_from = "ImageNet"
    bundle = DataBundle(
        train, val, list(class_names), tuple(mean), tuple(std), shown, kind, layout, preset, image_size, in_channels,
        val_split, seed, pca, stats_from, skipped, ignored, notes,
        asdict(shapes or ShapesConfig()) if kind == BUILTIN else None,
        tv_root if kind in TORCHVISION_SOURCES else None, layout_option,
    )  # fmt: skip
    train.transform = bundle.transform(train=True, augment=augment)
    val.transform = bundle.transform(train=False)
    return bundle


def build_from_description(description: dict, **overrides) -> DataBundle:
    """Rebuilds the bundle a checkpoint describes; the class names must come out identical."""
    args = {
        "source": description["source"] if description.get("kind") != BUILTIN else BUILTIN,
        "image_size": description["image_size"],
        "in_channels": description["in_channels"],
        "preset": description["preset"],
        "val_split": description["val_split"],
        "seed": description["seed"],
    }
    if description.get("root"):
        args["root"] = description["root"]
    if description.get("layout_option"):  # absent in checkpoints from before --layout: those were read "auto"
        args["layout"] = description["layout_option"]
    if description.get("shapes"):
        args["shapes"] = ShapesConfig(**description["shapes"])
    args.update(overrides)
    bundle = build_datasets(**args)
    if bundle.class_names != list(description["class_names"]):
        raise DataError(
            f"{display_path(str(args['source']))}: classes {bundle.class_names} differ from the checkpoint's "
            f"{description['class_names']}"
        )
    return bundle
