"""CIFAR-10 in the two forms its authors ship, each read by our own validated reader, and how a folder is recognised.

- python (`cifar-10-batches-py`): data_batch_1..5, test_batch, batches.meta. Each batch is a pickle of a dict with
  `data`, uint8 (N, 3072) (1024 R, then 1024 G, then 1024 B bytes, each plane row-major 32x32), and `labels`, N
  integers 0..9; batches.meta's `label_names` names the classes. A pickle can run any code: our unpickler rebuilds
  numpy arrays and nothing else.
- binary (`cifar-10-batches-bin`): data_batch_1.bin..5.bin, test_batch.bin, batches.meta.txt. Each file is 10,000
  records of 1 label byte + the same 3,072 pixel bytes, so exactly 30,730,000 bytes; batches.meta.txt holds one
  class name a line. Read whole with numpy (no loop over records).

Both give (N, 32, 32, 3) uint8 images and int64 labels: the five data batches are the training set, test_batch the
validation set. Checked, each a DataError naming the file and the cause: missing batches (all of them listed); a
binary file of the wrong size; a python batch over MAX_BATCH_BYTES, cut short, not a pickle, or a pickle of
something else; `data` of the wrong type or shape; labels that are not integers, not one per image, or outside
0..9 (the first bad one named, by index or record and byte offset). A meta file only names the classes, and the
labels already say which class is which, so a damaged one (unreadable, or not 10 distinct short names) does not stop
a run: the standard names are used, with a logged warning and a note in the bundle (`alexnet data check` shows it).

A `--data` folder is CIFAR-10 (`find_cifar_folder`) when it holds either form's files, or when every folder in it is
such a folder and there is exactly one: the parent a tarball was extracted into (files beside it are not looked at).
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from alexnet.data.images import display_path
from alexnet.errors import DataError, plural

log = logging.getLogger("alexnet.data")

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAX_BATCH_BYTES = 256 << 20  # a CIFAR-10 batch is 31 MB (10,000 x 3,072 bytes + labels); 8x that is not one
RECORDS_PER_FILE = 10_000  # records in each file of the binary version
RECORD_BYTES = 1 + 3 * 32 * 32  # a label byte, then the R, G and B planes
MAX_META_BYTES = 1 << 16  # a meta file holds ten names (the real batches.meta is 158 bytes)
MAX_NAME_CHARS = 64  # longest class name taken from a meta file
# folders a `--data` parent may hold beside the CIFAR one without being read as something else (folders.py ignores them)
IGNORED_FOLDERS = ("__macosx",)


@dataclass(frozen=True)
class CifarForm:
    """One of the forms CIFAR-10 ships in: its official folder name and the files in it."""

    name: str  # "python", "binary"
    folder: str  # the folder its tarball extracts to
    batches: tuple[str, ...]  # five training batches, then the test batch
    meta: str  # the file naming the classes


PYTHON = CifarForm("python", "cifar-10-batches-py", (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
                   "batches.meta")
BINARY = CifarForm("binary", "cifar-10-batches-bin", tuple(f"{n}.bin" for n in PYTHON.batches), "batches.meta.txt")
FORMS = (PYTHON, BINARY)


@dataclass
class ArraySplits:
    """Decoded train/test arrays of a named dataset (CIFAR-10 here, MNIST in tvsources), with where they came from."""

    train_images: np.ndarray  # (N, H, W) or (N, H, W, 3) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    folder: str
    notes: list[tuple[str, str]] = field(default_factory=list)  # (path, what the user should know about it)


# --- recognising a folder --------------------------------------------------------------------------------------------


def cifar_form(folder: str) -> CifarForm | None:
    """The form whose files (any batch, or its meta file) `folder` holds; None when it holds neither's."""
    found = [f for f in FORMS if any(os.path.isfile(os.path.join(folder, n)) for n in (*f.batches, f.meta))]
    if len(found) > 1:
        raise DataError(f"{display_path(folder)}: holds files of both the python and the binary CIFAR-10; "
                        f"give a folder with one of them")
    return found[0] if found else None


def find_cifar_folder(path: str) -> tuple[str, CifarForm] | None:
    """(folder, form) when `path` is a CIFAR-10 folder, or holds exactly one and no other folder; else None."""
    form = cifar_form(path)
    if form is not None:
        return path, form
    found = []
    for sub in _subfolders(path):
        form = cifar_form(sub)
        if form is None:  # another folder beside it: an image folder, say, which folders.py reads
            return None
        found.append((sub, form))
    if len(found) > 1:
        names = ", ".join(os.path.basename(d) for d, _ in found)
        raise DataError(f"{display_path(path)}: holds {len(found)} CIFAR-10 folders ({names}); give one of them")
    return found[0] if found else None


def _subfolders(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(e.path for e in entries if e.is_dir() and not e.name.startswith(".")
                          and e.name.lower() not in IGNORED_FOLDERS)
    except OSError:  # unreadable: the folder reader says so
        return []


def read_cifar_folder(path: str) -> ArraySplits:
    """Reads the CIFAR-10 folder `path` is, or holds (find_cifar_folder), in whichever form it has."""
    found = find_cifar_folder(path)
    if found is None:
        raise DataError(f"{display_path(path)}: not a CIFAR-10 folder (expected {PYTHON.folder}/ or "
                        f"{BINARY.folder}/ files, or a folder holding one such folder)")
    folder, form = found
    return read_cifar10(folder) if form is PYTHON else read_cifar10_bin(folder)


def read_cifar10(folder: str) -> ArraySplits:
    """Reads the python version of CIFAR-10 (`cifar-10-batches-py`), validating every batch."""
    return _read_form(folder, PYTHON, _read_py_batch, _py_meta_names)


def read_cifar10_bin(folder: str) -> ArraySplits:
    """Reads the binary version of CIFAR-10 (`cifar-10-batches-bin`), validating every file."""
    return _read_form(folder, BINARY, _read_bin_batch, _bin_meta_names)


Batch = tuple[np.ndarray, np.ndarray]  # (N, 32, 32, 3) uint8 images, (N,) int64 labels


def _read_form(folder: str, form: CifarForm, read_batch: Callable[[str], Batch],
               meta_names: Callable[[str], list[str]]) -> ArraySplits:
    missing = [n for n in form.batches if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise DataError(f"{display_path(folder)}: incomplete CIFAR-10, missing {', '.join(missing)}")
    parts = [read_batch(os.path.join(folder, n)) for n in form.batches]
    names, notes = list(CIFAR10_CLASSES), []
    meta = os.path.join(folder, form.meta)
    if os.path.isfile(meta):  # optional: the labels say which class is which, the meta file only names them
        try:
            names = meta_names(meta)
        except DataError as e:  # _load_pickle's messages start with the path, which the note has already
            note = f"{str(e).removeprefix(display_path(meta) + ': ')}; the standard CIFAR-10 class names are used"
            log.warning("%s: %s", display_path(meta), note)
            notes.append((meta, note))
    return ArraySplits(np.concatenate([p[0] for p in parts[:5]]), np.concatenate([p[1] for p in parts[:5]]),
                       parts[5][0], parts[5][1], names, folder, notes)


def _check_names(names: list) -> list[str]:
    """Ten distinct, non-empty, short, printable class names, or a DataError saying what is wrong (no path)."""
    if len(names) != 10:
        raise DataError(f"expected 10 class names, found {len(names)}")
    out = []
    for i, n in enumerate(names):
        if isinstance(n, bytes):
            n = n.decode("latin1")
        if not isinstance(n, str) or not n.strip() or len(n) > MAX_NAME_CHARS or not n.isprintable():
            found = f"{type(n).__name__}" if not isinstance(n, str) else f"{n[:MAX_NAME_CHARS]!r}"
            raise DataError(f"class name {i} is not a short printable name ({found})")
        out.append(n.strip())
    if len(set(out)) != len(out):
        raise DataError(f"class names repeat ({', '.join(sorted({n for n in out if out.count(n) > 1}))})")
    return out


# --- python version --------------------------------------------------------------------------------------------------


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles; a pickle can run any code. This one can only rebuild numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol 2 stores bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_pickle(path: str, what: str = "a CIFAR-10 batch", typical: str = "about 31 MB",
                 max_bytes: int = MAX_BATCH_BYTES) -> dict:
    """The dict a CIFAR-10 pickle holds, keys as str; a DataError naming the file for anything else."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"{display_path(path)}: cannot read the file ({e.strerror or e})") from None
    if size > max_bytes:  # read whole into memory below: bounded first
        raise DataError(f"{display_path(path)}: expected {what} ({typical}), found {size:,} bytes "
                        f"(more than the {max_bytes:,} this reader accepts)")
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except OSError as e:
        raise DataError(f"{display_path(path)}: cannot read the file ({e.strerror or e})") from None
    except Exception as e:  # a damaged pickle raises almost anything
        if isinstance(e, EOFError) or (isinstance(e, pickle.UnpicklingError) and "truncated" in str(e)):
            raise DataError(f"{display_path(path)}: expected {what} ({typical}), found a pickle cut short at "
                            f"{size:,} bytes (an interrupted download or copy?)") from None
        raise DataError(f"{display_path(path)}: not {what} ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{display_path(path)}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_py_batch(path: str) -> Batch:
    batch = _load_pickle(path)
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        if "data" not in batch:
            found = f"no 'data' entry (keys: {', '.join(str(k)[:40] for k in list(batch)[:8])})"
        else:
            found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{display_path(path)}: expected 'data' as uint8 (N, 3072), found {found}")
    labels = _py_labels(path, batch.get("labels"), len(data))
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3)


def _py_labels(path: str, labels, count: int) -> np.ndarray:
    """`labels` as (count,) int64 in 0..9, or a DataError naming the file and what is wrong."""
    try:
        array = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    except (TypeError, ValueError):  # ragged nesting
        array = None
    if array is None or array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        found = type(labels).__name__ if array is None else f"{array.dtype} values of shape {array.shape}"
        raise DataError(f"{display_path(path)}: expected 'labels' as a list of integers, found {found}")
    if len(array) != count:
        raise DataError(f"{display_path(path)}: expected as many labels as images ({count:,}), found {len(array):,}")
    array = array.astype(np.int64)
    bad = np.flatnonzero((array < 0) | (array > 9))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{display_path(path)}: expected labels in 0..9, found {array.min()}..{array.max()} "
                        f"(label {array[i]} at index {i:,}; {plural(int(bad.size), 'bad label')} in all)")
    return array


def _py_meta_names(path: str) -> list[str]:
    meta = _load_pickle(path, "CIFAR-10's batches.meta", "a few hundred bytes", MAX_META_BYTES)
    names = meta.get("label_names")
    if not isinstance(names, list):
        raise DataError(f"expected 'label_names' as a list, found {type(names).__name__}")
    return _check_names(names)


# --- binary version --------------------------------------------------------------------------------------------------


def _read_bin_batch(path: str) -> Batch:
    """One file of the binary version: RECORDS_PER_FILE records of a label byte and 3,072 pixel bytes."""
    expected = RECORDS_PER_FILE * RECORD_BYTES
    try:
        size = os.path.getsize(path)
        raw = np.fromfile(path, dtype=np.uint8) if size == expected else None  # read once the size is right
    except OSError as e:
        raise DataError(f"{display_path(path)}: cannot read the file ({e.strerror or e})") from None
    if raw is not None:
        size = raw.size  # the file may have changed between the two
    if size != expected:
        whole = f"{size // RECORD_BYTES:,} whole records" if size % RECORD_BYTES == 0 else "not a whole number of records"
        raise DataError(f"{display_path(path)}: expected {expected:,} bytes ({RECORDS_PER_FILE:,} records of "
                        f"{RECORD_BYTES:,}), found {size:,} ({whole})")
    records = raw.reshape(RECORDS_PER_FILE, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{display_path(path)}: expected labels in 0..9, found label {labels[i]} in record {i:,} "
                        f"(byte {i * RECORD_BYTES:,}; {plural(int(bad.size), 'bad record')} in all)")
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3)


def _bin_meta_names(path: str) -> list[str]:
    try:
        size = os.path.getsize(path)
        if size > MAX_META_BYTES:
            raise DataError(f"expected ten class names, found {size:,} bytes")
        with open(path, "rb") as f:
            text = f.read(MAX_META_BYTES).decode("utf-8")
    except OSError as e:
        raise DataError(f"cannot read the file ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise DataError("expected text, one class name a line, found bytes that are not UTF-8") from None
    return _check_names([line for line in text.splitlines() if line.strip()])
