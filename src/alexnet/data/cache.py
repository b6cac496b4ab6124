"""The uint8 cache: decode every image once, at the size the preset crops from, into one memory-mapped file.

Decoding a 500x375 JPEG costs more than an AlexNet-bn forward pass at small sizes, and on two cores the PIL loader
starves the model. Like airbench, the whole split becomes one uint8 tensor (N, C, R, R) (a quarter of the memory of
float32, and faster to read than preprocessed floats); BatchAugment then crops, flips and colours whole batches.

The file lives in `$ALEXNET_CACHE/uint8/<key>.u8` beside `<key>.json`. The key hashes the split it is used as
(train or val), the dataset's fingerprint (every path, size and mtime, or the arrays' source), the preset's resize
rule, R and the channel count: editing, adding or removing one image gives a new key, so a stale cache is never
read, and one folder used in two roles (the val split of a run's data, and the same folder evaluated whole with
`alexnet eval --data`) keeps two caches side by side instead of rebuilding one for each use in turn.

The cache is input like any other, so it is never trusted on its name alone. On open the JSON's sha256 seal must
match, its shape and labels must be what this dataset asks for (labels in range), the .u8 must be a regular file of
exactly N*C*R*R bytes whose sampled checksum matches; anything else is rebuilt with a one-line warning. Both files
are written 0600 in a 0700 folder through `files.atomic_write` (exclusive unpredictable temporaries), the data
first and the JSON last, so a killed build is never used. The space is checked and then allocated for real before
the file is mapped: a sparse map on a full disk would kill the process with SIGBUS at the first page it cannot
back; here a full disk is a DataError naming the folder and the bytes needed. Builders of one key take a lock, so
DDP ranks build it once, and only the lock holder removes temporaries a crashed build left behind.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alexnet.config import SPLITS
from alexnet.data.cachedir import build_lock, cache_dir
from alexnet.data.limits import SealBroken, decode_workers, open_sealed_json, sealed_json
from alexnet.data.transforms import resize_size
from alexnet.errors import AlexNetError, DataError
from alexnet.files import (
    FileWriteError,
    atomic_write,
    atomic_write_text,
    describe_os_error,
    private_dir,
    remove_stale_temporaries,
)

log = logging.getLogger("alexnet.data")

CACHE_VERSION = 3  # 2: sealed metadata; 3: the split in the key. Older files are simply not looked up
SAMPLE_CHUNKS, SAMPLE_BYTES = 16, 1 << 16  # the data file's checksum reads 16 x 64 KiB, not the whole file
FILE_MODE = 0o600


@dataclass
class CachedImages:
    """One split, decoded: `images` (N, C, R, R) uint8 backed by the file, `labels` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    path: str  # the .u8 file
    stored_size: int  # R
    built: bool  # False when an existing cache file was reused

    def __len__(self) -> int:
        return len(self.labels)


def _resize(img: Image.Image, preset: str, stored: int) -> Image.Image:
    """The PIL path's deterministic first steps: `paper` resizes the shorter side and centre-crops; others squash."""
    if preset != "paper":
        return img.resize((stored, stored), Image.BILINEAR)
    w, h = img.size
    if w <= h:
        nw, nh = stored, int(stored * h / w)
    else:
        nw, nh = int(stored * w / h), stored
    img = img.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - stored) / 2.0)), int(round((nh - stored) / 2.0))
    return img.crop((left, top, left + stored, top + stored))


SIDE_SAMPLE = 16  # photos typical_side decodes


def typical_side(dataset) -> int | None:
    """The median shorter side of SIDE_SAMPLE photos spread over `dataset` (None when it is empty or none decodes):
    what a cache larger than the input can keep of them without enlarging."""
    n = len(dataset)
    sides = []
    for i in sorted({k * n // SIDE_SAMPLE for k in range(SIDE_SAMPLE)}) if n else []:
        try:
            sides.append(min(dataset.load_pil(i).size))
        except AlexNetError:  # a file that went bad since the scan: the cache's build names it
            continue
    return sorted(sides)[len(sides) // 2] if sides else None


def cache_key(dataset, split: str, preset: str, stored: int, in_channels: int) -> str:
    rule = "shorter+center" if preset == "paper" else "squash"
    text = f"v{CACHE_VERSION}|{split}|{dataset.fingerprint()}|{rule}|{stored}|{in_channels}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_split(
    bundle, split: str, *, size: int | None = None, workers: int | None = None, folder: str | None = None
) -> CachedImages:
    """Returns the uint8 cache of `bundle.train` or `bundle.val`, building it on first use (or when it is bad).

    `size` stores the images smaller than the preset's resize size (e.g. MNIST at 28 instead of 224: 64x less disk);
    BatchAugment then resizes each batch up on the fly. `folder` puts the cache elsewhere (e.g. next to a run);
    default `$ALEXNET_CACHE/uint8`. `workers` decoding threads are clamped to the machine (limits.decode_workers).
    """
    if split not in SPLITS:
        raise DataError(f"split must be 'train' or 'val', got {split!r}")
    if size is not None and size < 1:
        raise DataError(f"cache size must be a positive number of pixels, got {size}")
    threads = decode_workers(workers)
    dataset = getattr(bundle, split)
    stored, channels = size or resize_size(bundle.preset, bundle.image_size), bundle.in_channels
    key = cache_key(dataset, split, bundle.preset, stored, channels)
    folder = str(private_dir(folder)) if folder else cache_dir("uint8")
    data_path, meta_path = os.path.join(folder, key + ".u8"), os.path.join(folder, key + ".json")
    shape = (len(dataset), channels, stored, stored)
    targets = [int(t) for t in dataset.targets]
    names = getattr(bundle, "class_names", None)
    num_classes = len(names) if names else max(targets, default=-1) + 1
    expect = {"version": CACHE_VERSION, "key": key, "shape": list(shape), "dtype": "uint8", "split": split,
              "preset_rule": bundle.preset}  # fmt: skip

    built = False
    try:
        _validate(data_path, meta_path, expect, targets, num_classes)
    except _BadCache:
        with build_lock(folder, key):
            try:  # another process may have built it while this one waited for the lock
                _validate(data_path, meta_path, expect, targets, num_classes)
            except _BadCache as bad:
                if bad.existed:
                    log.warning("uint8 cache %s: %s; rebuilding it", data_path, bad)
                for name in (key + ".u8", key + ".json"):
                    remove_stale_temporaries(folder, name)  # left by a build that was killed (we hold the lock)
                _sweep_abandoned(folder, key)
                try:
                    if os.path.lexists(meta_path):
                        os.unlink(meta_path)  # the old metadata must never describe the new data
                except OSError as e:  # e.g. a folder planted at the name, or a read-only cache
                    raise FileWriteError(describe_os_error(e, meta_path)) from None
                _build(dataset, bundle.preset, stored, shape, data_path, threads)
                atomic_write_text(meta_path, sealed_json({**expect, "labels": targets,
                                                          "data_sample_sha256": _sample_sha256(data_path)}),
                                  mode=FILE_MODE)
                built = True
    if len(dataset) == 0:
        images = torch.zeros(shape, dtype=torch.uint8)
    else:
        try:  # copy-on-write mapping: pages are shared with the file until written, and the tensor is writable
            images = torch.from_numpy(np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape))
        except (OSError, ValueError) as e:  # replaced or cut short by another program since it was checked
            raise DataError(f"{data_path}: the uint8 cache changed while it was opened ({e}); run again") from None
    labels = torch.tensor(targets, dtype=torch.int64)
    return CachedImages(images, labels, data_path, stored, built)


def _sweep_abandoned(folder: str, current: str) -> None:
    """Temporaries of other keys (a build killed before its dataset changed): removed when nobody holds their lock.

    A killed build's temporary is as large as the cache it was writing, and its key may never be built again."""
    keys = {p.name[1:].split(".", 1)[0] for p in Path(folder).glob(".*.u8.*.tmp")}
    for key in sorted(keys - {current}):
        with build_lock(folder, key, wait=False) as held:
            if held:  # no process is building this key, so its temporaries are abandoned
                for name in (key + ".u8", key + ".json"):
                    remove_stale_temporaries(folder, name)


class _BadCache(Exception):
    """Why a cache cannot be used; `existed` is False when there simply is none yet (no warning then)."""

    def __init__(self, reason: str, existed: bool = True):
        super().__init__(reason)
        self.existed = existed


def _validate(data_path: str, meta_path: str, expect: dict, targets: list[int], num_classes: int) -> None:
    """Raises _BadCache unless both files are exactly what `expect` describes (module docstring)."""
    if not os.path.lexists(meta_path) and not os.path.lexists(data_path):
        raise _BadCache("not built yet", existed=False)
    try:
        meta = open_sealed_json(meta_path, max_bytes=64 + 24 * max(len(targets), 1) + 4096)
    except SealBroken as e:
        raise _BadCache(f"metadata {meta_path} {e}") from None
    if not isinstance(meta, dict):
        raise _BadCache(f"metadata {meta_path} is not a JSON object")
    for field, value in expect.items():
        if meta.get(field) != value:
            raise _BadCache(f"metadata field {field!r} is {meta.get(field)!r}, expected {value!r}")
    labels = meta.get("labels")
    if not isinstance(labels, list) or len(labels) != expect["shape"][0]:
        count = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise _BadCache(f"metadata holds {count} labels, expected {expect['shape'][0]}")
    if any(type(v) is not int or not 0 <= v < num_classes for v in labels):
        raise _BadCache(f"metadata holds labels outside 0..{num_classes - 1} (or not integers)")
    if labels != targets:
        raise _BadCache("metadata labels differ from the dataset's")
    try:
        st = os.lstat(data_path)
    except OSError as e:
        raise _BadCache(f"data file {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _BadCache("data file is not a regular file (a symlink or something else stands there)")
    nbytes = int(np.prod(expect["shape"]))
    if st.st_size != nbytes:
        raise _BadCache(f"data file holds {st.st_size:,} bytes, expected {nbytes:,} for shape {tuple(expect['shape'])}")
    if _sample_sha256(data_path) != meta.get("data_sample_sha256"):
        raise _BadCache("data file checksum mismatch (changed or damaged after it was built)")


def _sample_sha256(data_path: str) -> str:
    """sha256 of the size and 16 evenly spaced 64 KiB blocks: cheap on a 100 GB cache, catches torn/zeroed files."""
    h = hashlib.sha256()
    try:
        with open(data_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h.update(str(size).encode())
            step = max(1, (size - SAMPLE_BYTES) // max(1, SAMPLE_CHUNKS - 1))
            for i in range(SAMPLE_CHUNKS):
                f.seek(min(i * step, max(0, size - SAMPLE_BYTES)))
                h.update(f.read(SAMPLE_BYTES))
    except OSError as e:
        raise _BadCache(f"data file unreadable ({e.strerror or e})") from None
    return h.hexdigest()


def _no_space(folder: str, nbytes: int, free: int | None) -> DataError:
    have = "" if free is None else f", {free / 2**20:,.1f} MiB free"
    return DataError(
        f"{folder}: not enough disk space for the uint8 cache: it needs {nbytes / 2**20:,.1f} MiB ({nbytes:,} bytes)"
        f"{have}; free some space or point ALEXNET_CACHE at a larger disk"
    )


def check_free_space(folder: str, nbytes: int) -> None:
    """DataError before anything is written when `folder`'s file system has fewer than `nbytes` free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the allocation below still fails cleanly
    if nbytes > free:
        raise _no_space(folder, nbytes, free)


def allocate(path: str, nbytes: int) -> None:
    """Gives `path` `nbytes` of real blocks, so that writing through a memory map can never hit a full disk.

    posix_fallocate where the OS has it (glibc writes zeros itself on file systems without fallocate); elsewhere
    zeros are written. ENOSPC / EDQUOT become the DataError of `_no_space`."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, "r+b") as f:
            if nbytes == 0:
                return
            if hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(f.fileno(), 0, nbytes)
                    return
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
            zeros = bytes(1 << 20)
            left = nbytes
            while left:
                left -= f.write(zeros[: min(left, len(zeros))])
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            try:
                free = shutil.disk_usage(folder).free
            except OSError:
                free = None
            raise _no_space(folder, nbytes, free) from None
        raise


def _build(dataset, preset: str, stored: int, shape: tuple, data_path: str, workers: int) -> None:
    nbytes = int(np.prod(shape))
    check_free_space(os.path.dirname(data_path), nbytes)

    def write(tmp: str) -> None:
        allocate(tmp, nbytes)
        if nbytes == 0:
            return
        out = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=shape)

        def one(i: int) -> None:
            img = _resize(dataset.load_pil(i), preset, stored)
            arr = np.asarray(img)
            out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)

        with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL
            list(pool.map(one, range(shape[0])))
        out.flush()
        out = None  # the map is closed (its last reference dropped) before atomic_write renames the file

    # atomic_write: exclusive unpredictable temporary in the same folder, 0600, fsync, rename; removed on failure.
    atomic_write(data_path, write, mode=FILE_MODE)
