"""The data layer: every source users bring, the built-in dataset, transform presets, a uint8 cache, bad input.

    from alexnet.data import build_datasets, DataBundle, load_image, build_transform
    bundle = build_datasets("path/to/folder", image_size=227, in_channels=3, preset="seed")

Modules: images (the one decoder), folders (scanning: layouts and the split), walk (listing a folder tree safely),
verify (decoding every file found once), idx (IDX reader), cifar (CIFAR-10's python and binary batches), tvsources
(mnist/fashion-mnist/cifar10 by name), synthetic (`shapes`), transforms (presets on the PIL path), datasets, sources
(`build_datasets`), cache (uint8 memory-mapped cache), augment (whole-batch augmentation, 10-crop), batches
(evaluation batches), prefetch (batches made in a background thread), cachedir (the private cache folder, build
locks), limits (decoding threads, checksummed cache metadata).

Every input is untrusted, caches included: what the data layer stores under $ALEXNET_CACHE (uint8 caches,
verification verdicts, colour statistics, the built-in dataset) is written 0600 in 0700 folders through
`files.atomic_write` (or `tempfile.mkdtemp` for a folder), checksummed, and checked on open; a bad entry is rebuilt
with a one-line warning.

Names are resolved lazily so that `import alexnet.data.synthetic` or the CLI's `alexnet data` do not pay for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_datasets": "sources",
    "at_image_size": "sources",
    "build_from_description": "sources",
    "DataBundle": "sources",
    "load_image": "images",
    "decode_image": "images",
    "build_transform": "transforms",
    "PRESETS": "transforms",
    "scan_folder": "folders",
    "read_idx": "idx",
    "IdxError": "idx",
    "make_shapes": "synthetic",
    "ShapesConfig": "synthetic",
    "cache_split": "cache",
    "CachedImages": "cache",
    "BatchAugment": "augment",
    "ten_crop": "augment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"alexnet.data.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'alexnet.data' has no attribute {name!r}")
