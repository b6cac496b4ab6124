"""One function turns a `--data` value into train/val datasets with class names: `build_datasets`.

Sources:
- None or "shapes": the built-in dataset (synthetic.py), generated under $ALEXNET_CACHE/datasets on first use;
- "mnist", "fashion-mnist", "cifar10": torchvision's layout under `root` (downloaded with download=True);
- a folder of IDX files (MNIST names, raw or .gz);
- a CIFAR-10 folder, python (`cifar-10-batches-py`) or binary (`cifar-10-batches-bin`), or the folder holding one
  (cifar.py); read as kind "cifar10", its test batch as the validation set;
- an image folder: split folders (train/ + val/, Kaggle's training_set/ + test_set/, ...), class folders (stratified
  split), or a flat Kaggle folder, optionally inside one wrapper folder (folders.py).

Each kind of source has its reader (READERS: the datasets, classes and how the source was read); one shared last
step picks the preset, computes the normalisation and builds the DataBundle.

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
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from alexnet.data.cachedir import cache_dir
from alexnet.data.cifar import ArraySplits, find_cifar_folder, read_cifar_folder
from alexnet.data.datasets import ArrayDataset, ImageFileDataset
from alexnet.data.folders import ScanResult, scan_folder, stratified_split
from alexnet.data.idx import find_idx_files, read_idx_pair
from alexnet.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, display_path
from alexnet.data.limits import SealBroken, open_sealed_json, sealed_json
from alexnet.data.synthetic import ShapesConfig, make_shapes
from alexnet.data.transforms import (
    Augmentation,
    DeferredTransform,
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
    kind: str  # "shapes", "folder", "idx", "mnist", "fashion-mnist", "cifar10" (by name, or a CIFAR-10 folder)
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

    def transform(self, train: bool, *, ten_crop: bool = False, augment: bool | None = None, deferred: bool = False):
        """The PIL-path transform of this bundle (the one predict should use with train=False); `deferred`: built
        on its first call (DeferredTransform), as the datasets get it."""
        augmentation = Augmentation(enabled=augment, pca=self.pca)
        make = DeferredTransform if deferred else build_transform
        return make(
            self.preset, self.image_size, train, self.mean, self.std, self.in_channels,
            augmentation=augmentation, ten_crop=ten_crop,
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


@dataclass(frozen=True)
class DataRequest:
    """What `build_datasets` is asked for: its arguments, with their defaults (see build_datasets)."""

    source: str | None = None  # a `--data` value: None or "shapes", a torchvision name, or a folder
    image_size: int = 227
    in_channels: int = 3
    preset: str | None = DEFAULT_PRESET
    val_split: float = 0.2
    seed: int = 0
    strict: bool = False
    download: bool = False
    root: str | os.PathLike | None = None  # where torchvision datasets live
    augment: bool | None = None
    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    shapes: ShapesConfig | None = None
    statistics: bool = True
    layout: str = "auto"  # how an image folder's class folders are read (alexnet.config.LAYOUTS)
    pixel_scale: str = "std"  # alexnet.config.PIXEL_SCALES: "255" keeps the mean-subtracted pixels on 0-255


@dataclass(frozen=True)
class _Read:
    """What one reader made of a source: the datasets, their classes, and how the source was read."""

    train: ImageFileDataset | ArrayDataset
    val: ImageFileDataset | ArrayDataset
    class_names: list[str]
    kind: str  # DataBundle.kind
    layout: str  # DataBundle.layout
    shown: str  # DataBundle.source
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    root: str | None = None  # where torchvision datasets were read from


def build_datasets(source: str | os.PathLike | None = None, **options) -> DataBundle:
    """Turns a `--data` value into a DataBundle (see the module docstring for the sources).

    `options` are DataRequest's other fields, by keyword (image_size=227, in_channels=3, preset, val_split, seed,
    strict, download, root, augment, min_side, max_pixels, shapes, statistics, layout); an unknown one is a
    TypeError. `preset` None takes the kind of data's own (PRESET_BY_KIND); the bundle records the one used.
    `augment` overrides the preset's training augmentation; `statistics=False` makes `paper` use ImageNet's
    mean/std/PCA instead of computing them from the training set. `layout` says how an image folder's class folders
    are read (alexnet.config.LAYOUTS).
    """
    request = DataRequest(None if source is None else os.fspath(source), **options)
    _check_request(request)
    read = READERS[_source_kind(request.source)](request)
    return _bundle(request, read)


def _check_request(request: DataRequest) -> None:
    if request.preset is not None:
        check_preset(request.preset, request.image_size, request.in_channels)
    if not 0.0 <= request.val_split < 1.0:
        raise ConfigError(f"val_split must be in [0, 1), got {request.val_split}")


def _source_kind(name: str | None) -> str:
    """Which reader (READERS) a `--data` value is for; a path that is no folder is an error."""
    if name is None or name == BUILTIN:
        return BUILTIN
    if name.lower() in TORCHVISION_SOURCES:
        return "torchvision"
    if os.path.isdir(name):
        return "idx" if find_idx_files(name) else "cifar" if find_cifar_folder(name) else "folder"
    if os.path.exists(name):
        raise DataError(f"{display_path(name)}: not a folder (give the folder that holds the images)")
    known = ", ".join([BUILTIN, *TORCHVISION_SOURCES])
    raise DataError(f"{display_path(name)}: no such folder, and not a built-in dataset ({known})")


def _scan(folder: str, request: DataRequest, layout: str = "auto") -> ScanResult:
    checks = FileChecks(min_side=request.min_side, max_pixels=request.max_pixels)
    return scan_folder(
        folder, val_split=request.val_split, seed=request.seed, strict=request.strict, layout=layout, checks=checks
    )


def _from_scan(scan: ScanResult, request: DataRequest, kind: str, layout: str, shown: str) -> _Read:
    """The image-file datasets of a scanned folder, with what the scan left out."""
    limits = {"min_side": request.min_side, "max_pixels": request.max_pixels, "in_channels": request.in_channels}
    train, val = ImageFileDataset(scan.train, **limits), ImageFileDataset(scan.val, **limits)
    return _Read(train, val, scan.class_names, kind, layout, shown, scan.skipped, scan.ignored, scan.notes)


def _read_builtin(request: DataRequest) -> _Read:
    scan = _scan(make_shapes(request.shapes), request)
    return _from_scan(scan, request, BUILTIN, scan.layout, BUILTIN)


def _read_folder(request: DataRequest) -> _Read:
    scan = _scan(request.source, request, layout=request.layout)
    layout = scan.layout
    if not layout.startswith("train/val"):  # split here: the fraction and seed are part of the reading
        layout = f"{layout} (split {request.val_split}, seed {request.seed})"
    return _from_scan(scan, request, "folder", layout, os.path.abspath(request.source))


def _from_arrays(arrays: ArraySplits, request: DataRequest, kind: str, shown: str, root: str | None = None) -> _Read:
    """The in-memory datasets of a dataset's train and test files (torchvision's layout, a CIFAR-10 folder)."""
    channels = request.in_channels
    train = ArrayDataset(arrays.train_images, arrays.train_labels, origin=arrays.folder + ":train", in_channels=channels)
    val = ArrayDataset(arrays.test_images, arrays.test_labels, origin=arrays.folder + ":test", in_channels=channels)
    return _Read(train, val, arrays.class_names, kind, "train/test files", shown, notes=arrays.notes, root=root)


def _read_torchvision(request: DataRequest) -> _Read:
    kind = request.source.lower()
    tv_root = os.fspath(request.root) if request.root is not None else cache_dir("torchvision")
    return _from_arrays(load_torchvision_source(kind, tv_root, request.download), request, kind, kind, root=tv_root)


def _read_cifar(request: DataRequest) -> _Read:
    return _from_arrays(read_cifar_folder(request.source), request, "cifar10", os.path.abspath(request.source))


def _read_idx(request: DataRequest) -> _Read:
    name, shown = request.source, os.path.abspath(request.source)
    pairs = find_idx_files(name)
    if "train" not in pairs:
        raise DataError(f"{display_path(name)}: IDX test files but no train-images/train-labels pair")
    tr = read_idx_pair(*pairs["train"])
    if "test" in pairs:
        te = read_idx_pair(*pairs["test"])
        tr_x, tr_y, va_x, va_y = tr.images, tr.labels, te.images, te.labels
        layout = "idx train/test files"
    else:
        tr_x, tr_y, va_x, va_y = _arrays_split(tr.images, tr.labels, request.val_split, request.seed)
        layout = f"idx train file (split {request.val_split})"
    num = int(max(tr_y.max(initial=0), va_y.max(initial=0))) + 1
    class_names = [str(i) for i in range(max(num, 10))]
    train = ArrayDataset(tr_x, tr_y, origin=f"{shown}:train", in_channels=request.in_channels)
    val = ArrayDataset(va_x, va_y, origin=f"{shown}:val", in_channels=request.in_channels)
    return _Read(train, val, class_names, "idx", layout, shown)


READERS = {BUILTIN: _read_builtin, "torchvision": _read_torchvision, "idx": _read_idx, "cifar": _read_cifar,
           "folder": _read_folder}


@dataclass(frozen=True)
class _Normalisation:
    """How a bundle's images are normalised, and where the numbers come from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pca: tuple | None  # (eigval, eigvec) for `paper`
    stats_from: str  # DataBundle.stats_from


def _normalisation(preset: str, train: ImageFileDataset | ArrayDataset, request: DataRequest) -> _Normalisation:
    """The preset's mean/std (and PCA for `paper`), with the std 1/255 on the paper's pixel scale."""
    norm = _preset_normalisation(preset, train, request)
    if request.pixel_scale != "255":
        return norm
    return replace(norm, std=(1 / 255,) * len(norm.std), stats_from=f"{norm.stats_from}; pixels on the 0-255 scale")


def _preset_normalisation(preset: str, train: ImageFileDataset | ArrayDataset,
                          request: DataRequest) -> _Normalisation:
    """The preset's mean/std (and PCA for `paper`): the training set's own for `paper`, unless `statistics` is off."""
    channels = request.in_channels
    mean, std = default_mean_std(preset, channels)
    if preset != "paper":
        stats_from = "ImageNet" if preset == "seed" else "none (d2l: ToTensor only)" if preset == "d2l" else ""
        return _Normalisation(tuple(mean), tuple(std), None, stats_from)
    if not (request.statistics and len(train)):
        return _Normalisation(tuple(mean), tuple(std), default_pca(channels), "ImageNet")
    stats = _statistics(train, channels, request.seed)
    pca = (tuple(stats["eigval"]), tuple(tuple(r) for r in stats["eigvec"]))
    return _Normalisation(tuple(stats["mean"]), tuple(stats["std"]), pca, f"training set ({stats['count']} images)")


def _bundle(request: DataRequest, read: _Read) -> DataBundle:
    """The shared last step: the preset, the normalisation, the bundle, and the datasets' transforms."""
    preset = request.preset
    if preset is None:
        preset = PRESET_BY_KIND.get(read.kind, DEFAULT_PRESET)
        check_preset(preset, request.image_size, request.in_channels)
    norm = _normalisation(preset, read.train, request)
    bundle = DataBundle(
        train=read.train,
        val=read.val,
        class_names=list(read.class_names),
        mean=norm.mean,
        std=norm.std,
        source=read.shown,
        kind=read.kind,
        layout=read.layout,
        preset=preset,
        image_size=request.image_size,
        in_channels=request.in_channels,
        val_split=request.val_split,
        seed=request.seed,
        pca=norm.pca,
        stats_from=norm.stats_from,
        skipped=read.skipped,
        ignored=read.ignored,
        notes=read.notes,
        shapes=asdict(request.shapes or ShapesConfig()) if read.kind == BUILTIN else None,
        root=read.root,
        layout_option=request.layout,
    )
    return _with_transforms(bundle, request.augment)


def _with_transforms(bundle: DataBundle, augment: bool | None) -> DataBundle:
    """Gives the bundle's datasets the transforms of its preset and input size (`augment` as build_datasets')."""
    bundle.train.transform = bundle.transform(train=True, augment=augment, deferred=True)
    bundle.val.transform = bundle.transform(train=False, deferred=True)
    return bundle


def at_image_size(bundle: DataBundle, image_size: int, augment: bool | None = None) -> DataBundle:
    """The same data at another input size, without reading the source again: what the readers find and the
    statistics they compute do not depend on the size, only the transforms do. (A time budget's rung,
    alexnet.training.rungs, is chosen after the scan; scanning again cost seconds on a large folder.) `augment` as
    build_datasets'. The bundle's datasets are shared: the one given is not to be used after this."""
    check_preset(bundle.preset, image_size, bundle.in_channels)
    return _with_transforms(replace(bundle, image_size=image_size), augment)


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
