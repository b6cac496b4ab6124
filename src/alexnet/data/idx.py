"""Our own reader for IDX files (MNIST, Fashion-MNIST), validated before a single array is built.

The format (LeCun's MNIST page): 2 zero bytes, a type code (0x08 ubyte, 0x09 byte, 0x0B int16, 0x0C int32, 0x0D float32,
0x0E float64), the number of dimensions, one big-endian uint32 per dimension, then the data in C order, big-endian.

Checked, each an `IdxError` naming the file, what was expected and what was found: empty file; gzip content named
without `.gz` and the reverse; a broken gzip stream; bad magic; unknown type code; zero or too many dimensions; a
header that claims more bytes than the file holds (checked BEFORE allocating, so a lying header costs nothing);
trailing bytes; for a pair, image/label count mismatch and labels out of range.

A gzip file is bounded by its header too: the header gives the exact size of the data, so the stream is read at
most that + 1 bytes, chunk by chunk, into memory that fills only as bytes really arrive. Before reading, the claim
is held against the compressed size: deflate cannot expand more than ~1032:1, so a larger claim is a lie about the
file; above 64 MiB a claim more than 200x the compressed size is refused as a gzip bomb (real image data compresses
2-10x; pass `max_ratio` to read such a file anyway); and no file may claim more than `max_bytes` (8 GiB, far above
any IDX dataset; EMNIST's largest is ~0.7 GB).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from dataclasses import dataclass

import numpy as np

from alexnet.data.images import display_path
from alexnet.errors import DataError

# type code -> (numpy dtype, name); IDX data is big-endian.
IDX_TYPES = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "int16"),
    0x0C: (np.dtype(">i4"), "int32"),
    0x0D: (np.dtype(">f4"), "float32"),
    0x0E: (np.dtype(">f8"), "float64"),
}
MAX_DIMS = 8
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22  # read gzip streams 4 MiB at a time: memory follows what the file really holds
MAX_IDX_BYTES = 8 << 30  # no IDX file may claim more data than this (module docstring)
DEFLATE_MAX_RATIO = 1032  # deflate's hard limit: 258 bytes per 2-bit code, about 1032:1
MAX_GZIP_RATIO = 200  # above BOMB_FLOOR bytes, a claim over 200x the compressed size is refused as a bomb
BOMB_FLOOR = 64 << 20

# train-images-idx3-ubyte(.gz), t10k-labels.idx1-ubyte, emnist-letters-train-images-idx3-ubyte.gz, ...
IDX_NAME = re.compile(
    r"^(?:(?P<prefix>.*)-)?(?P<split>train|t10k|test)-(?P<what>images|labels)[.-]idx(?P<ndim>\d)-ubyte(?P<gz>\.gz)?$"
)
IDX_SPLITS = ("train", "test")  # the splits IDX files come in (t10k- files are the test split)


class IdxError(DataError):
    """An IDX file is malformed or does not match what it is used for."""


def _fail(path: str, expected: str, found: str) -> IdxError:
    return IdxError(f"{display_path(path)}: expected {expected}, found {found}")


def _read_exact(f, n: int) -> bytes:
    """Reads up to n bytes in chunks, so a header that lies about n never allocates n up front."""
    parts, got = [], 0
    while got < n:
        chunk = f.read(min(_CHUNK, n - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_into(f, n: int) -> tuple[np.ndarray, int]:
    """Reads up to n bytes into one buffer, chunk by chunk: (buffer, bytes read).

    np.empty reserves address space only; pages are committed as data arrives, so a stream that ends early costs
    what it held, and there is no second copy (no join of chunks)."""
    buf = np.empty(n, dtype=np.uint8)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got : got + min(_CHUNK, n - got)])
        if not k:
            break
        got += k
    return buf, got


@dataclass(frozen=True)
class _Header:
    """What an IDX header says: the shape, the element type, and how many data bytes follow it."""

    dims: tuple[int, ...]
    dtype: np.dtype
    need: int  # data bytes: the product of dims times the element size
    length: int  # bytes of the header itself: 4 + 4 * number of dimensions


def read_idx(path: str | os.PathLike, *, ndim: int | None = None, dtype: str | None = None,
             max_bytes: int = MAX_IDX_BYTES, max_ratio: float = MAX_GZIP_RATIO) -> np.ndarray:
    """Reads and validates one IDX file (raw, or gzip when the name ends in .gz); returns a native-endian array.

    `ndim` and `dtype` ("ubyte", ...), when given, are what the caller needs; a different file is an error.
    `max_bytes` and `max_ratio` bound what the header may claim (module docstring).
    """
    path = os.fspath(path)
    size, is_gz = _probe(path)
    try:
        f = gzip.open(path, "rb") if is_gz else open(path, "rb")  # noqa: SIM115 (closed in finally)
    except OSError as e:
        raise IdxError(f"{display_path(path)}: cannot read the file ({e})") from None
    try:
        header = _read_header(f, path, ndim, dtype)
        if is_gz:
            _check_gzip_claim(path, header, size, max_ratio)
        else:
            _check_raw_claim(path, header, size)
        if header.need > max_bytes:
            raise _fail(path, f"at most {max_bytes:,} data bytes (the reader's limit)",
                        f"a header claiming {header.need:,} for shape {header.dims}")
        data = _read_data(f, path, header)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as e:
        raise _fail(path, "a valid gzip stream", f"a damaged one ({type(e).__name__}: {e})") from None
    finally:
        f.close()
    try:
        array = data.view(header.dtype).reshape(header.dims)
    except ValueError as e:  # e.g. (0, 4294967295, 4294967295): zero bytes, but more elements than numpy indexes
        raise _fail(path, "dimensions numpy can represent", f"shape {header.dims} ({e})") from None
    return array.astype(header.dtype.newbyteorder("="), copy=False)  # byte-swapped copy only for multi-byte types


def _probe(path: str) -> tuple[int, bool]:
    """(file size, gzip-compressed?), after checking the file is not empty and its name says how it is stored."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise IdxError(f"{display_path(path)}: cannot read the file ({e.strerror or e})") from None
    if size == 0:
        raise _fail(path, "an IDX file", "an empty file (0 bytes)")
    named_gz = path.lower().endswith(".gz")
    is_gz = head[:2] == GZIP_MAGIC
    if named_gz and not is_gz:
        raise _fail(path, "gzip-compressed data (the name ends in .gz)", f"raw bytes {head!r}")
    if is_gz and not named_gz:
        raise _fail(
            path, "raw IDX bytes (no .gz in the name)", "gzip-compressed data; add .gz to the name or gunzip it"
        )
    return size, is_gz


def _read_header(f, path: str, ndim: int | None, dtype: str | None) -> _Header:
    """The magic number and the dimension sizes, checked against the format and against what the caller needs."""
    magic = _read_exact(f, 4)
    if len(magic) < 4:
        raise _fail(path, "a 4-byte IDX magic number", f"only {len(magic)} bytes")
    if magic[0] != 0 or magic[1] != 0:
        raise _fail(path, "an IDX magic number starting with two zero bytes", f"{magic!r}")
    code, nd = magic[2], magic[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_TYPES)
        raise _fail(path, f"an IDX type code in ({known})", f"0x{code:02X}")
    if not 1 <= nd <= MAX_DIMS:
        raise _fail(path, f"1 to {MAX_DIMS} dimensions", f"{nd}")
    dims_raw = _read_exact(f, 4 * nd)
    if len(dims_raw) < 4 * nd:
        raise _fail(path, f"a header with {nd} dimension sizes ({4 * nd} bytes)", f"{len(dims_raw)} bytes")
    dims = tuple(int(d) for d in np.frombuffer(dims_raw, dtype=">u4"))
    dt, type_name = IDX_TYPES[code]
    if ndim is not None and nd != ndim:
        raise _fail(path, f"{ndim} dimensions", f"{nd} (shape {dims})")
    if dtype is not None and type_name != dtype:
        raise _fail(path, f"{dtype} data", f"{type_name} data")
    count = 1
    for d in dims:
        count *= d
    return _Header(dims, dt, count * dt.itemsize, 4 + 4 * nd)


def _check_gzip_claim(path: str, header: _Header, size: int, max_ratio: float) -> None:
    """The claim against what the compressed bytes can hold, before a single data byte is inflated."""
    need, dims = header.need, header.dims
    ratio = need / max(size, 1)
    if ratio > DEFLATE_MAX_RATIO:
        raise _fail(path, f"{need:,} data bytes for shape {dims}",
                    f"a {size:,}-byte gzip file, which can hold at most {size * DEFLATE_MAX_RATIO:,} "
                    f"(the header lies or the file is truncated)")
    if need > BOMB_FLOOR and ratio > max_ratio:
        raise _fail(path, f"data that compresses at most {max_ratio:g}:1",
                    f"a header claiming {need:,} bytes from {size:,} compressed ({ratio:,.0f}:1): "
                    f"refused as a gzip bomb")


def _check_raw_claim(path: str, header: _Header, size: int) -> None:
    """The raw case is checked against the file size before anything is read."""
    need, dims, data_bytes = header.need, header.dims, size - header.length
    if data_bytes < need:
        raise _fail(path, f"{need:,} data bytes for shape {dims}", f"{data_bytes:,} (the file is truncated)")
    if data_bytes > need:
        raise _fail(path, f"{need:,} data bytes for shape {dims}", f"{data_bytes - need:,} trailing bytes")


def _read_data(f, path: str, header: _Header) -> np.ndarray:
    """Exactly the claimed data bytes, as uint8; fewer, or any byte after them, is an error."""
    data, got = _read_into(f, header.need)
    if got < header.need:
        raise _fail(path, f"{header.need:,} data bytes for shape {header.dims}", f"{got:,} (the file is truncated)")
    if f.read(1):
        raise _fail(path, f"{header.need:,} data bytes for shape {header.dims}", "trailing bytes after them")
    return data


@dataclass
class IdxPair:
    """Validated images (N, H, W) uint8 and labels (N,) int64 from one images/labels pair of files."""

    images: np.ndarray
    labels: np.ndarray
    images_path: str
    labels_path: str


def read_idx_pair(images_path: str, labels_path: str, num_classes: int = 10) -> IdxPair:
    """Reads an images file (3-dim ubyte) and a labels file (1-dim ubyte) and checks they belong together."""
    images = read_idx(images_path, ndim=3, dtype="unsigned byte")
    labels = read_idx(labels_path, ndim=1, dtype="unsigned byte")
    if images.shape[0] != labels.shape[0]:
        raise IdxError(
            f"{display_path(images_path)} and {display_path(labels_path)}: expected the same number of items, "
            f"found {images.shape[0]:,} images and {labels.shape[0]:,} labels"
        )
    if images.shape[0] == 0:
        raise _fail(images_path, "at least one image", "none")
    if min(images.shape[1:]) == 0:
        raise _fail(images_path, "images of at least 1x1 pixels", f"shape {images.shape}")
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise _fail(
            labels_path,
            f"labels in 0..{num_classes - 1}",
            f"{bad.size:,} out of range (first: label {int(labels[bad[0]])} at index {int(bad[0])})",
        )
    return IdxPair(images, labels.astype(np.int64), images_path, labels_path)


def find_idx_files(folder: str) -> dict[str, tuple[str, str]]:
    """{"train"|"test": (images path, labels path)} for the IDX files in `folder` (raw preferred over .gz)."""
    found: dict[tuple[str, str], str] = {}
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    for name in names:
        m = IDX_NAME.match(name)
        if not m:
            continue
        split = "train" if m.group("split") == "train" else "test"
        key = (split, m.group("what"))
        if key not in found or not m.group("gz"):
            found[key] = os.path.join(folder, name)
    pairs = {}
    for split in IDX_SPLITS:
        if (split, "images") in found and (split, "labels") in found:
            pairs[split] = (found[(split, "images")], found[(split, "labels")])
        elif (split, "images") in found or (split, "labels") in found:
            have = found.get((split, "images")) or found.get((split, "labels"))
            missing = "labels" if (split, "images") in found else "images"
            raise IdxError(f"{display_path(have)}: expected a matching {split} {missing} file beside it, found none")
    return pairs
