"""Reading a torch file from a stranger: weights_only unpickling with a torch that has no known bypass, bounded before
anything is unpickled, and every failure one line naming the file and the cause.

Used for alexnet checkpoints (alexnet.store.checkpoint) and torchvision state_dict files (alexnet.models): the lowest layer,
it imports neither.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import CheckpointError, clip, short

# torch.load(weights_only=True) is the only thing between a downloaded checkpoint and arbitrary code, and before 2.6
# it could be bypassed (CVE-2025-32434). pyproject requires 2.6; this refuses to read with an older one anyway.
MIN_TORCH = (2, 6)

# The pickled part of a checkpoint (everything but the tensors' bytes: class names, config, RNG words, optimizer
# layout) is about 20 KB; 100,000 class names fit in 4 MiB. The weights_only unpickler is pure Python (~1 s per
# million objects), so a pickle of tens of MB of tiny objects would take minutes before any field could be checked:
# it is refused by its size in the zip's directory, unread.
MAX_PICKLE_BYTES = 4 << 20
MAX_ARCHIVE_ENTRIES = 10_000  # one per tensor storage (~100 in an AlexNet checkpoint with Adam state)


def read_torch_file(path: Path) -> Any:
    """torch.load(weights_only=True) of `path`, after the torch version and archive checks; CheckpointError else."""
    check_torch_version(torch.__version__)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    check_archive(path, size)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch reports both "a class it will not construct" and "bytes that are not a pickle" this way.
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain types; refusing to unpickle it "
                "(that could run arbitrary code). alexnet checkpoints never need it"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({unpickler_cause(e)})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, IndexError, BadZipFile... for damaged files
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({first_line(e)})") from None


def check_torch_version(version: str) -> None:
    """Refuse to unpickle anything with a torch whose weights_only loader is known to be bypassable (< 2.6)."""
    match = re.match(r"(\d+)\.(\d+)", str(version))
    if match is None or (int(match[1]), int(match[2])) < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise CheckpointError(
            f"torch {clip(str(version), 40)} cannot read checkpoints safely: its weights_only loader can be made to "
            f"run code (CVE-2025-32434); install torch >= {need} (pip install 'torch>={need}')"
        )


def check_archive(path: Path, size: int) -> None:
    """Bound what torch.load would unpickle, from the zip directory alone (torch.save writes a zip since 1.6)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (damaged, or the legacy format): torch.load reports it
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ARCHIVE_ENTRIES:
            raise CheckpointError(f"{path}: {len(entries):,} entries in the archive (limit {MAX_ARCHIVE_ENTRIES:,}); "
                                  "not a checkpoint alexnet writes")
        for info in entries:
            # torch.save stores every entry uncompressed, but torch.load inflates compressed ones: a 10 MB deflated
            # storage of zeros would become 10 GB in memory before any field could be looked at (a zip bomb).
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise CheckpointError(
                    f"{path}: archive entry {short(info.filename)} is compressed or larger than the file "
                    f"({info.file_size:,} bytes unpacked); torch.save never writes that: refused unread"
                )
            if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1 \
                    and info.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f"{path}: its pickled fields take {info.file_size / 2**20:.1f} MiB (limit "
                    f"{MAX_PICKLE_BYTES >> 20} MiB; an alexnet checkpoint's take about 20 KB): refused unread"
                )


def unpickler_cause(e: BaseException) -> str:
    """The cause torch's weights-only unpickler names, without its first line's advice to retry with
    weights_only=False (never right for a file that is not a checkpoint, and unsafe for one from a stranger)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n", 1)[0].strip()
        return clip(f"weights-only unpickler: {cause}") if cause else "weights-only unpickler refused it"
    return first_line(e)


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return clip(text[0]) if text else type(e).__name__
