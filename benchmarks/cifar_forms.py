"""CIFAR-10 in the three forms users have it, read alike: PNG class folders, the python batches, the binary batches.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/cifar_forms.py --png /tmp/data/cifar10 \\
        [--official PATH/data_batch_1] [--check DIR ...]

1. Reads `--png` (train/<class>/*.png + test/<class>/*.png: 50,000 + 10,000 RGB 32x32, CIFAR-10's ten classes) with
   build_datasets, timed: a fresh $ALEXNET_CACHE, so every file is decoded once (the folder reader's check).
2. Writes both official forms into a temporary folder, the images in the PNG bundle's order:
   - cifar-10-batches-py: data_batch_1..5, test_batch, each a pickle (protocol 2) of a dict with bytes keys:
     b'batch_label', b'labels' (list of 10,000 int), b'data' (10000, 3072) uint8 (1024 R, 1024 G, 1024 B bytes,
     each plane row-major), b'filenames'; batches.meta with b'label_names', b'num_cases_per_batch', b'num_vis';
   - cifar-10-batches-bin: data_batch_1.bin..5.bin, test_batch.bin, 10,000 records of a label byte + those 3,072
     bytes (30,730,000 bytes a file), and batches.meta.txt (one name a line).
3. Reads each form with build_datasets (timed; the parent folder is given, as a user who extracted the tarball
   would), and checks the three agree: class names, the full train and validation label vectors, every image of
   the two batch forms, and the decoded uint8 images (load_pil, before any transform) of `--samples` seeded indices
   per split against the PNGs.

`--official FILE`: a data_batch or test_batch file as CIFAR-10's authors ship it, even cut short. Its first whole
images are decoded from the raw pickle (no reader involved) and each must equal one PNG (train or test) of the same
label: a check of the plane order and of the writer above against the authors' own bytes. `--check DIR`: read other folders with
build_datasets and print what the reader makes of them (counts, or the error).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import random
import struct
import tempfile
import time
from pathlib import Path

import numpy as np

RECORDS = 10_000  # images per batch in both official forms


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<42} {time.perf_counter() - start:7.2f} s")
    return out


def decode_pngs(paths: list[str]) -> np.ndarray:
    """(N, 32, 32, 3) uint8 straight from PIL: the pixels the batch files are made of."""
    from PIL import Image

    out = np.empty((len(paths), 32, 32, 3), np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            out[i] = np.asarray(img.convert("RGB"))  # a side other than 32 fails here
    return out


def planes(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): the R plane, then G, then B, each row-major (CIFAR-10's byte order)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)


def write_forms(root: Path, splits: dict, class_names: list[str]) -> None:
    """cifar-10-batches-py/ and cifar-10-batches-bin/ under root, from {"train"|"test": (images, labels, names)}."""
    py, binary = root / "py" / "cifar-10-batches-py", root / "bin" / "cifar-10-batches-bin"
    py.mkdir(parents=True)
    binary.mkdir(parents=True)
    batches = [(f"data_batch_{k + 1}", f"training batch {k + 1} of 5", "train", k) for k in range(5)]
    for name, label, split, k in [*batches, ("test_batch", "testing batch 1 of 1", "test", 0)]:
        images, labels, names = (a[k * RECORDS:(k + 1) * RECORDS] for a in splits[split])
        rows = planes(images)
        batch = {b"batch_label": label.encode(), b"labels": [int(v) for v in labels], b"data": rows,
                 b"filenames": [n.encode() for n in names]}
        (py / name).write_bytes(pickle.dumps(batch, protocol=2))
        record = np.concatenate([np.asarray(labels, np.uint8)[:, None], rows], axis=1)
        (binary / f"{name}.bin").write_bytes(record.tobytes())
    meta = {b"num_cases_per_batch": RECORDS, b"label_names": [n.encode() for n in class_names], b"num_vis": 3072}
    (py / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    (binary / "batches.meta.txt").write_text("\n".join(class_names) + "\n\n")


def sample_images(bundle, split: str, indices: list[int]) -> np.ndarray:
    dataset = getattr(bundle, split)
    return np.stack([np.asarray(dataset.load_pil(i)) for i in indices])


def compare(bundles: dict, samples: int) -> None:
    """Every form against the PNGs: class names, label vectors, sampled images; the two batch forms image by image."""
    png = bundles["png"]
    for split in ("train", "val"):
        n = len(getattr(png, split))
        indices = sorted({0, n - 1, *random.Random(0).sample(range(n), samples)})
        want = sample_images(png, split, indices)
        for form in ("py", "bin"):
            b = bundles[form]
            assert b.class_names == png.class_names, (form, b.class_names)
            assert getattr(b, split).targets == getattr(png, split).targets, f"{form} {split} labels differ"
            assert np.array_equal(sample_images(b, split, indices), want), f"{form} {split} images differ"
        assert np.array_equal(getattr(bundles["py"], split).images, getattr(bundles["bin"], split).images)
        print(f"{split}: {n:,} labels equal in all three forms; {len(indices)} sampled images equal to the PNGs; "
              f"all {n:,} images equal between py and bin")


def official_prefix(path: str) -> tuple[np.ndarray, np.ndarray]:
    """The labels and whole images at the start of an official python batch, read from its raw pickle bytes.

    The authors' batches are Python 2 pickles: b'labels' is a list of BININT1 (`K` + byte) in MARK/APPENDS chunks,
    b'data' an array whose bytes are one BINSTRING (`T` + length 30,720,000). Nothing here uses our reader."""
    raw = Path(path).read_bytes()
    at = raw.index(b"labels") + len(b"labels")
    labels, i = [], raw.index(b"]", at) + 1
    while i < len(raw):
        op = raw[i : i + 1]
        if op == b"K":
            labels.append(raw[i + 1])
            i += 2
        elif op in (b"q", b"h"):  # BINPUT / BINGET: a memo index byte
            i += 2
        elif op in (b"(", b"e"):  # MARK, APPENDS
            i += 1
        else:
            break
    start = raw.index(b"T" + struct.pack("<I", RECORDS * 3072)) + 5
    n = min((len(raw) - start) // 3072, len(labels))
    images = np.frombuffer(raw, np.uint8, n * 3072, start).reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.array(labels[:n])


def check_official(path: str, png_images: np.ndarray, png_labels: np.ndarray) -> None:
    images, labels = official_prefix(path)
    index = {hashlib.sha1(img.tobytes()).digest(): int(y) for img, y in zip(png_images, png_labels, strict=True)}
    found = [index.get(hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest()) for img in images]
    same = sum(f == int(y) for f, y in zip(found, labels, strict=True))
    swapped = sum(hashlib.sha1(np.ascontiguousarray(img[..., ::-1]).tobytes()).digest() in index for img in images)
    print(f"{path}: {os.path.getsize(path):,} bytes, first {len(images)} whole images; {same} equal a PNG of the "
          f"same label ({len(images) - same} do not; with R and B swapped {swapped} would)")


def check_folder(folder: str) -> None:
    from alexnet.data import build_datasets
    from alexnet.errors import DataError

    try:
        b = build_datasets(folder, image_size=32, statistics=False)
        print(f"{folder}: kind {b.kind}, {len(b.train):,} train + {len(b.val):,} val, classes {b.class_names}")
    except DataError as e:
        print(f"{folder}: DataError: {e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--png", required=True, help="CIFAR-10 as PNG class folders: train/<class>/ and test/<class>/")
    p.add_argument("--samples", type=int, default=300, help="images compared per split (seeded), besides the labels")
    p.add_argument("--official", action="append", default=[], help="an official python batch file (may be cut short)")
    p.add_argument("--check", action="append", default=[], help="another folder to read and report on")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ALEXNET_CACHE"] = os.path.join(tmp, "cache")  # cold: the PNG check decodes every file
        from alexnet.data import build_datasets

        def read(path):
            return build_datasets(path, image_size=32, statistics=False)

        bundles = {"png": timed("read PNG folders (first scan)", lambda: read(args.png))}
        png = bundles["png"]
        assert (len(png.train), len(png.val)) == (5 * RECORDS, RECORDS), (len(png.train), len(png.val))
        splits = {}
        for split, dataset in (("train", png.train), ("test", png.val)):
            paths = [path for path, _ in dataset.samples]
            images = timed(f"decode {len(paths):,} {split} PNGs with PIL", lambda paths=paths: decode_pngs(paths))
            splits[split] = (images, np.array(dataset.targets), [os.path.basename(q) for q in paths])
        timed("write the py and bin forms", lambda: write_forms(Path(tmp), splits, png.class_names))
        for form in ("py", "bin"):
            bundles[form] = timed(f"read {form} batches (the parent folder)", lambda form=form: read(f"{tmp}/{form}"))
            print(f"  kind {bundles[form].kind}, layout {bundles[form].layout!r}, notes {bundles[form].notes}")
        timed("compare", lambda: compare(bundles, args.samples))
        pngs = [np.concatenate([splits[s][k] for s in ("train", "test")]) for k in (0, 1)]
        for path in args.official:
            check_official(path, *pngs)
    for folder in args.check:
        check_folder(folder)


if __name__ == "__main__":
    main()
