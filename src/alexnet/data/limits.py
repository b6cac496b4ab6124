"""Bounds on what a request can make the data layer spend: decoding threads, and the stored-JSON checksum.

`decode_workers` is the one place a thread count for decoding (the uint8 cache, the folder verification, the
built-in dataset's generation) is decided, and `loader_workers` the DataLoader's process count. Decoding is CPU-bound (PIL releases the GIL), so threads beyond the machine's cores only add memory (each
holds a decoded image) and contention; a request above `min(os.cpu_count(), MAX_WORKERS)` is clamped with a
one-line note instead of starting, say, 10,000 threads.

`sealed_json` / `open_sealed_json` store a small JSON document together with the sha256 of its canonical form, so
a cache's metadata that was truncated, edited or bit-flipped is detected on open and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from alexnet.errors import DataError

log = logging.getLogger("alexnet.data")

MAX_WORKERS = 64  # even on a big machine, more decoding threads than this only add memory
DEFAULT_WORKERS = 4  # what a request of None/0 gets (at most the cores)
_noted: set[tuple[int, int]] = set()


def decode_workers(requested: int | None) -> int:
    """Threads for decoding: None or 0 -> min(4, cores); above min(cores, 64) -> clamped, with a note once."""
    cores = os.cpu_count() or 1
    cap = max(1, min(cores, MAX_WORKERS))
    if requested is None or requested == 0:
        return min(DEFAULT_WORKERS, cap)
    if not isinstance(requested, int) or isinstance(requested, bool) or requested < 0:
        raise DataError(f"workers must be an integer >= 0, got {requested!r}")
    if requested > cap:
        if (requested, cap) not in _noted:
            _noted.add((requested, cap))
            log.warning("workers %d is more than this machine's %d cores (cap %d): using %d decoding threads",
                        requested, cores, MAX_WORKERS, cap)
        return cap
    return requested


def loader_workers(requested: int) -> int:
    """DataLoader worker processes for `data.workers`: 0 stays 0 (load in the main process); above
    min(cores, 64) clamped with the same one-line note (each worker is a process with its own copy of the dataset)."""
    if requested == 0:
        return 0
    return decode_workers(requested)


def canonical_sha256(document) -> str:
    """sha256 of the document's canonical JSON (sorted keys, no spaces): the same for any key order or indent."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sealed_json(document) -> str:
    """The text to store: {"sha256": ..., "content": document}."""
    return json.dumps({"sha256": canonical_sha256(document), "content": document}, allow_nan=False)


class SealBroken(Exception):
    """A sealed JSON file is missing, unreadable, not JSON, or its checksum does not match (the reason says)."""


def open_sealed_json(path: str, max_bytes: int = 1 << 30):
    """The document stored by `sealed_json`, or SealBroken saying why it cannot be trusted."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise SealBroken(f"{size:,} bytes, more than the {max_bytes:,} a cache file of this kind may hold")
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except FileNotFoundError:
        raise SealBroken("missing") from None
    except OSError as e:
        raise SealBroken(f"unreadable ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, or nested absurdly deep
        raise SealBroken(f"not valid JSON ({type(e).__name__})") from None
    if not isinstance(stored, dict) or set(stored) != {"sha256", "content"}:
        raise SealBroken("not a checksummed cache file (an older version or another program wrote it)")
    try:
        actual = canonical_sha256(stored["content"])
    except ValueError:  # NaN/Infinity smuggled in
        raise SealBroken("holds values that are not plain JSON") from None
    if actual != stored["sha256"]:
        raise SealBroken("checksum mismatch (the file was changed or damaged after it was written)")
    return stored["content"]
