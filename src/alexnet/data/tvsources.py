"""`mnist`, `fashion-mnist` and `cifar10`: torchvision downloads them (with `download=True`), we read and validate.

torchvision is used only to fetch and checksum the archives into its usual layout under `root`:
`MNIST/raw/*-ubyte`, `FashionMNIST/raw/*-ubyte`, `cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`.
The files are then read by our own validated readers (idx.py; cifar.py, whose unpickler accepts numpy arrays and
nothing else), so files put there by hand, or damaged, get the same clear errors as any other input. The CIFAR-10
reader and its names (`read_cifar10`, `CIFAR10_CLASSES`, `MAX_BATCH_BYTES`, `ArraySplits`) live in cifar.py and are
still importable from here.
"""

from __future__ import annotations

import os

from alexnet.data.cifar import CIFAR10_CLASSES, MAX_BATCH_BYTES, PYTHON, ArraySplits, read_cifar10
from alexnet.data.idx import IDX_SPLITS, find_idx_files, read_idx_pair
from alexnet.data.images import display_path
from alexnet.errors import DataError

__all__ = ["CIFAR10_CLASSES", "FASHION_CLASSES", "MAX_BATCH_BYTES", "MNIST_CLASSES", "TORCHVISION_SOURCES", "ArraySplits",
           "load_torchvision_source", "read_cifar10"]

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
# name -> (torchvision class name, folder under root)
TORCHVISION_SOURCES = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", PYTHON.folder),
}


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
        if download and not os.path.exists(os.path.join(folder, PYTHON.meta)):
            _download(name, root)
        if not any(os.path.isfile(os.path.join(folder, n)) for n in PYTHON.batches):
            raise _missing(name, folder)
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
