"""Where the data layer keeps what it generates: `$ALEXNET_CACHE` (default `~/.cache/alexnet`)."""

from __future__ import annotations

import os


def cache_root() -> str:
    """The cache folder, honouring ALEXNET_CACHE so tests and shared machines can point it elsewhere."""
    return os.path.expanduser(os.environ.get("ALEXNET_CACHE") or os.path.join("~", ".cache", "alexnet"))


def cache_dir(*parts: str) -> str:
    """A sub-folder of the cache, created on first use."""
    path = os.path.join(cache_root(), *parts)
    os.makedirs(path, exist_ok=True)
    return path
