"""Checking what a folder scan found by decoding it: every candidate file is decoded once to find the unusable ones.

JPEGs are decoded at reduced scale, which still reads the whole stream, so truncated and corrupt files are found.
Verdicts are remembered in $ALEXNET_CACHE/verify/ keyed by path, size and mtime, so a second scan of a large folder
is instant; the store is sealed (sha256) and checked on open, and a damaged one is dropped with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from alexnet.data.cachedir import cache_dir
from alexnet.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, decode_image, display_path
from alexnet.data.limits import SealBroken, decode_workers, open_sealed_json, sealed_json
from alexnet.data.walk import VANISHED, report, vanished
from alexnet.errors import AlexNetError, DataError
from alexnet.files import FileWriteError, atomic_write_text

log = logging.getLogger("alexnet.data")

Verdict = tuple[str | None, list[str]]  # (the reason a file is unusable, or None; notes on how it was read)


@dataclass(frozen=True)
class FileChecks:
    """How each file's contents are checked: the decoder's limits (as in decode_image) and the decoding threads
    (None or 0: a few, see limits.decode_workers)."""

    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    workers: int | None = None


def verify_files(root: str, paths: list[str], checks: FileChecks) -> dict[str, Verdict]:
    """Decodes every file once (module docstring) to find the bad ones: path -> (reason it is unusable or None, notes)."""
    workers = decode_workers(checks.workers)
    store_file = store_path(root, checks.min_side, checks.max_pixels)
    store = _open_store(store_file)
    results: dict[str, Verdict] = {}
    todo: list[tuple[str, str]] = []
    real_dirs: dict[str, str] = {}
    for p in paths:
        try:
            k = _key_of(p, real_dirs)
        except OSError as e:  # removed or made unreadable since it was listed
            results[p] = (VANISHED if vanished(e) else f"cannot read ({e.strerror or e})", [])
            continue
        if k in store:
            results[p] = (store[k][0], list(store[k][1]))
        else:
            todo.append((p, k))
    if todo:
        with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL releases the GIL while decoding
            verdicts = pool.map(lambda t: _check(t[0], checks), todo)
            for (p, k), res in zip(todo, verdicts, strict=True):
                results[p] = res
                store[k] = [res[0], res[1]]
        if store_file is not None:
            try:  # exclusive unpredictable temporary, 0600, renamed over the store: never a planted symlink
                atomic_write_text(store_file, sealed_json(store), mode=0o600)
            except FileWriteError as e:
                log.info("verification results not remembered: %s", e)  # a read-only cache only costs speed
    return results


def _key_of(path: str, real_dirs: dict[str, str]) -> str:
    """`real path|size|mtime`. The real path of the folder is resolved once per folder (`real_dirs`), not once
    per file: realpath walks every component, which made this loop the larger part of a warm run's start on CIFAR-10's
    60,000 files (benchmarks/README.md). A file that is itself a symbolic link is resolved whole."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(path)
        real = os.path.realpath(path)
    else:
        folder, name = os.path.split(path)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder or ".")
        real = os.path.join(real_dirs[folder], name)
    return f"{display_path(real)}|{st.st_size}|{st.st_mtime_ns}"


def _check(path: str, checks: FileChecks) -> Verdict:
    try:
        decoded = decode_image(path, 3, min_side=checks.min_side, max_pixels=checks.max_pixels, draft=(32, 32))
    except DataError as e:
        # The message starts with the path; keep only the cause.
        msg = str(e)
        prefix = display_path(path) + ": "
        return (msg[len(prefix) :] if msg.startswith(prefix) else msg), []
    return None, decoded.notes


def store_path(root: str, min_side: int, max_pixels: int) -> str | None:
    """$ALEXNET_CACHE/verify/<hash of the root and settings>.json, or None when the cache folder is unusable."""
    settings = f"{display_path(os.path.realpath(root))}:{min_side}:{max_pixels}:v2"  # one small file per dataset
    try:
        folder = cache_dir("verify")
    except AlexNetError as e:  # unsafe or unwritable: scan without remembering, and say why once
        report("note", "verify", f"verification results are not remembered ({e})")
        return None
    return os.path.join(folder, hashlib.sha1(settings.encode()).hexdigest()[:16] + ".json")


def _open_store(path: str | None) -> dict[str, list]:
    """The remembered verdicts {key: [reason or None, [notes]]}; a damaged store is dropped with a warning."""
    if path is None or not os.path.lexists(path):
        return {}
    try:
        store = open_sealed_json(path)
        if not isinstance(store, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 2 and (v[0] is None or isinstance(v[0], str))
            and isinstance(v[1], list) and all(isinstance(n, str) for n in v[1])
            for k, v in store.items()
        ):
            raise SealBroken("entries are not [reason, [notes]] pairs")
    except SealBroken as e:
        log.warning("verification store %s: %s; checking every file again", display_path(path), e)
        return {}
    return store
