"""`mnist`, `fashion-mnist` and `cifar10`: torchvision downloads them (with `download=True`), we read and validate.

torchvision is used only to fetch and checksum the archives into its usual layout under `root`:
`MNIST/raw/*-ubyte`, `FashionMNIST/raw/*-ubyte`, `cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`.
The files are then read by our own validated readers (idx.py, and a CIFAR reader whose unpickler accepts numpy
arrays and nothing else), so files put there by hand, or damaged, get the same clear errors as any other input.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass

import numpy as np

from alexnet.data.idx import IDX_SPLITS, find_idx_files, read_idx_pair
from alexnet.data.images import display_path
from alexnet.errors import DataError

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAX_BATCH_BYTES = 256 << 20  # a CIFAR-10 batch is 31 MB (10,000 x 3,072 bytes + labels); 8x that is not one
# name -> (torchvision class name, folder under root)
TORCHVISION_SOURCES = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


@dataclass
class ArraySplits:
    """Decoded train/test arrays of a named dataset, with where they came from."""

    train_images: np.ndarray  # (N, H, W) or (N, H, W, 3) uint8
    train_labels: np.ndarray  # (N,) int64
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: list[str]
    folder: str


def _download(name: str, root: str) -> None:
    import torchvision.datasets as tvd  # heavy, and only needed to download

    cls = getattr(tvd, TORCHVISION_SOURCES[name][0])
    try:
        cls(root, train=True, download=True)
        cls(root, train=False, download=True)
    except Exception as e:  # network errors come in many types (URLError, HTTPError, RuntimeError, OSError)
        raise DataError(f"{name}: download to {display_path(root)} failed ({type(e).__name__}: {e})") from None


def _missing(name: str, folder: str) -> DataError:
    return DataError(
        f"{name}: not found in {display_path(folder)}; pass --download (needs internet) or put the files there "
        f"in torchvision's layout"
    )


def load_torchvision_source(name: str, root: str, download: bool = False) -> ArraySplits:
    """Reads mnist / fashion-mnist / cifar10 from `root` in torchvision's layout, downloading first if asked."""
    if name not in TORCHVISION_SOURCES:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(TORCHVISION_SOURCES)}")
    folder = os.path.join(root, TORCHVISION_SOURCES[name][1])
    if name == "cifar10":
        if download and not os.path.exists(os.path.join(folder, "batches.meta")):
            _download(name, root)
        return read_cifar10(folder)
    pairs = find_idx_files(folder) if os.path.isdir(folder) else {}
    if download and set(pairs) != set(IDX_SPLITS):
        _download(name, root)
        pairs = find_idx_files(folder)
    if set(pairs) != set(IDX_SPLITS):
        raise _missing(name, folder)
    train, test = read_idx_pair(*pairs["train"]), read_idx_pair(*pairs["test"])
    names = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    return ArraySplits(train.images, train.labels, test.images, test.labels, list(names), folder)


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


def _load_pickle(path: str) -> dict:
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DataError(f"{display_path(path)}: cannot read the file ({e.strerror or e})") from None
    if size > MAX_BATCH_BYTES:  # read whole into memory below: bounded first
        raise DataError(f"{display_path(path)}: expected a CIFAR-10 batch (about 31 MB), found {size:,} bytes "
                        f"(more than the {MAX_BATCH_BYTES:,} this reader accepts)")
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except OSError as e:
        raise DataError(f"{display_path(path)}: cannot read the file ({e.strerror or e})") from None
    except Exception as e:  # a damaged pickle raises almost anything
        raise DataError(f"{display_path(path)}: not a CIFAR-10 batch ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{display_path(path)}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{display_path(path)}: expected 'data' as uint8 (N, 3072), found {found}")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{display_path(path)}: expected 'labels' as a list of integers") from None
    if len(labels) != len(data):
        raise DataError(f"{display_path(path)}: expected as many labels as images, found {len(labels)} and {len(data)}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{display_path(path)}: expected labels in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels  # (N, 32, 32, 3)


def read_cifar10(folder: str) -> ArraySplits:
    """Reads the python version of CIFAR-10 (`cifar-10-batches-py`), validating every batch."""
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [f for f in files if not os.path.exists(os.path.join(folder, f))]
    if missing:
        raise (
            _missing("cifar10", folder)
            if len(missing) == len(files)
            else DataError(f"{display_path(folder)}: incomplete CIFAR-10, missing {', '.join(missing)}")
        )
    parts = [_read_cifar_batch(os.path.join(folder, f)) for f in files]
    names = list(CIFAR10_CLASSES)
    meta = os.path.join(folder, "batches.meta")
    if os.path.exists(meta):
        label_names = _load_pickle(meta).get("label_names")
        if isinstance(label_names, list) and len(label_names) == 10:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in label_names]
    return ArraySplits(
        np.concatenate([p[0] for p in parts[:5]]),
        np.concatenate([p[1] for p in parts[:5]]),
        parts[5][0],
        parts[5][1],
        names,
        folder,
    )
