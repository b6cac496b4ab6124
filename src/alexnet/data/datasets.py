"""The two torch Datasets every source becomes: image files on disk, or decoded arrays in memory (IDX, CIFAR).

Both return `(transform(PIL image), label)` and expose the same small interface the uint8 cache uses:
`targets` (list of int), `load_pil(i)` (the decoded, channel-converted image before any transform) and
`fingerprint()` (what identifies the contents, for cache keys).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from alexnet.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, display_path, load_image


class ImageFileDataset(Dataset):
    """Labelled image files, decoded by `load_image` (the same rules as prediction) on every access."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        in_channels: int,
        transform: Callable | None = None,
        *,
        min_side: int = DEFAULT_MIN_SIDE,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.in_channels = in_channels
        self.transform = transform
        self.min_side, self.max_pixels = min_side, max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def load_pil(self, index: int) -> Image.Image:
        # A file that went bad after the scan raises DataError naming it; it is never replaced by a grey image.
        path = self.samples[index][0]
        return load_image(path, self.in_channels, min_side=self.min_side, max_pixels=self.max_pixels)

    def __getitem__(self, index: int):
        img = self.load_pil(index)
        return (self.transform(img) if self.transform else img), self.targets[index]

    def fingerprint(self) -> str:
        """Paths, sizes and modification times: any edit, addition or removal changes it."""
        h = hashlib.sha256()
        for path, label in self.samples:
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            h.update(f"{display_path(os.path.abspath(path))}|{label}|{stamp}\n".encode())
        return h.hexdigest()


class ArrayDataset(Dataset):
    """Decoded uint8 images in memory, (N, H, W) grey or (N, H, W, 3) RGB, with int labels."""

    def __init__(
        self,
        images: np.ndarray,
        labels: Sequence[int] | np.ndarray,
        in_channels: int,
        transform: Callable | None = None,
        *,
        origin: str = "",
    ):
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"images must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.targets = [int(v) for v in labels]
        self.in_channels = in_channels
        self.transform = transform
        self.origin = origin  # the files the arrays came from, for fingerprints and messages

    def __len__(self) -> int:
        return len(self.images)

    def load_pil(self, index: int) -> Image.Image:
        arr = self.images[index]
        img = Image.fromarray(arr, mode="L" if arr.ndim == 2 else "RGB")
        return img.convert("L" if self.in_channels == 1 else "RGB")  # explicit grey <-> RGB

    def __getitem__(self, index: int):
        img = self.load_pil(index)
        return (self.transform(img) if self.transform else img), self.targets[index]

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.origin.encode())
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images[:: max(1, len(self.images) // 64)]).tobytes())
        h.update(np.asarray(self.targets, dtype=np.int64).tobytes())
        return h.hexdigest()
