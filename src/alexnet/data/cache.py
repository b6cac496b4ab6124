"""The uint8 cache: decode every image once, at the size the preset crops from, into one memory-mapped file.

Decoding a 500x375 JPEG costs more than an AlexNet-bn forward pass at small sizes, and on two cores the PIL loader
starves the model. Like airbench, the whole split becomes one uint8 tensor (N, C, R, R) (a quarter of the memory of
float32, and faster to read than preprocessed floats); BatchAugment then crops, flips and colours whole batches.

The file lives in `$ALEXNET_CACHE/uint8/<key>.u8` beside `<key>.json`. The key hashes the dataset's fingerprint
(every path, size and mtime, or the arrays' source), the preset's resize rule, R and the channel count: editing,
adding or removing one image gives a new key, so a stale cache is never read. The JSON is written last, so a
half-written cache (a killed process) is never used either.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from alexnet.data.paths import cache_dir
from alexnet.data.transforms import resize_size
from alexnet.errors import DataError

CACHE_VERSION = 1


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


def cache_key(dataset, preset: str, stored: int, in_channels: int) -> str:
    rule = "shorter+center" if preset == "paper" else "squash"
    text = f"v{CACHE_VERSION}|{dataset.fingerprint()}|{rule}|{stored}|{in_channels}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cache_split(
    bundle, split: str, *, size: int | None = None, workers: int | None = None, folder: str | None = None
) -> CachedImages:
    """Returns the uint8 cache of `bundle.train` or `bundle.val`, building it on first use.

    `size` stores the images smaller than the preset's resize size (e.g. MNIST at 28 instead of 224: 64x less disk);
    BatchAugment then resizes each batch up on the fly. `folder` puts the cache elsewhere (e.g. next to a run);
    default `$ALEXNET_CACHE/uint8`.
    """
    if split not in ("train", "val"):
        raise DataError(f"split must be 'train' or 'val', got {split!r}")
    if size is not None and size < 1:
        raise DataError(f"cache size must be a positive number of pixels, got {size}")
    dataset = getattr(bundle, split)
    stored, channels = size or resize_size(bundle.preset, bundle.image_size), bundle.in_channels
    key = cache_key(dataset, bundle.preset, stored, channels)
    folder = folder or cache_dir("uint8")
    os.makedirs(folder, exist_ok=True)
    data_path, meta_path = os.path.join(folder, key + ".u8"), os.path.join(folder, key + ".json")
    shape = (len(dataset), channels, stored, stored)
    nbytes = int(np.prod(shape))
    built = False
    meta = None
    if os.path.exists(meta_path) and os.path.exists(data_path) and os.path.getsize(data_path) == nbytes:
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = None
    if meta is None or meta.get("shape") != list(shape):
        _build(dataset, bundle.preset, stored, shape, data_path, workers)
        meta = {"shape": list(shape), "labels": list(dataset.targets), "preset_rule": bundle.preset, "split": split}
        tmp = f"{meta_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(tmp, meta_path)
        built = True
    if len(dataset) == 0:
        images = torch.zeros(shape, dtype=torch.uint8)
    else:
        # Copy-on-write mapping: pages are shared with the file until written, and the tensor is writable.
        images = torch.from_numpy(np.memmap(data_path, dtype=np.uint8, mode="c", shape=shape))
    labels = torch.tensor(meta["labels"], dtype=torch.int64)
    return CachedImages(images, labels, data_path, stored, built)


def _build(dataset, preset: str, stored: int, shape: tuple, data_path: str, workers: int | None) -> None:
    tmp = f"{data_path}.{os.getpid()}.tmp"
    if shape[0] == 0:
        open(tmp, "wb").close()
        os.replace(tmp, data_path)
        return
    out = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=shape)

    def one(i: int) -> None:
        img = _resize(dataset.load_pil(i), preset, stored)
        arr = np.asarray(img)
        out[i] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)

    try:
        with ThreadPoolExecutor(max(1, workers or min(4, os.cpu_count() or 1))) as pool:  # PIL releases the GIL
            list(pool.map(one, range(shape[0])))
        out.flush()
        os.replace(tmp, data_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
