"""Real files, good and dirty, for the data tests: every one written with PIL, raw bytes or gzip, never mocked."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def noise(size=(32, 24), seed=0, mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr if channels == 3 else arr[..., 0], mode=mode)


def solid(colour, size=(32, 24), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def write_jpeg(path, img: Image.Image | None = None, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (img or noise()).save(path, format="JPEG", **kw)
    return path


def write_png(path, img: Image.Image | None = None, **kw) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (img or noise()).save(path, format="PNG", **kw)
    return path


def write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def truncated_jpeg(path, keep: float = 0.5) -> Path:
    """A 96x96 noisy JPEG cut short: the entropy-coded data stops in the middle."""
    write_jpeg(path, noise((96, 96), seed=3), quality=95)
    data = Path(path).read_bytes()
    return write_bytes(path, data[: int(len(data) * keep)])


def html_page(path) -> Path:
    return write_bytes(path, b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body></body></html>\n")


def appledouble(path) -> Path:
    """The resource-fork companion macOS writes next to a file on non-HFS volumes (`._photo.jpg`)."""
    return write_bytes(path, b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 64)


def cmyk_jpeg(path, cmyk=(0, 255, 255, 0)) -> Path:
    """A CMYK JPEG; the default ink (no cyan, full magenta and yellow, no black) is red."""
    return write_jpeg(path, Image.new("CMYK", (32, 24), cmyk), quality=95)


def png16(path, value: int = 32768, size=(16, 16)) -> Path:
    """A 16-bit greyscale PNG filled with `value` (0..65535)."""
    arr = np.full((size[1], size[0]), value, dtype=np.uint16)
    return write_png(path, Image.fromarray(arr))


def rgba_png(path) -> Path:
    """2x1... 3 pixels: fully transparent red, opaque blue, half-transparent black."""
    img = Image.new("RGBA", (24, 8))
    img.paste((255, 0, 0, 0), (0, 0, 8, 8))
    img.paste((0, 0, 255, 255), (8, 0, 16, 8))
    img.paste((0, 0, 0, 128), (16, 0, 24, 8))
    return write_png(path, img)


def palette_png_with_transparency(path) -> Path:
    """A palette PNG: index 0 (black in the palette) is transparent, index 1 is green."""
    img = Image.new("P", (16, 8), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (8, 0, 16, 8))
    return write_png(path, img, transparency=0)


def animated_gif(path, colours=((255, 0, 0), (0, 0, 255), (0, 255, 0))) -> Path:
    frames = [Image.new("RGB", (16, 16), c) for c in colours]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def exif_rotated_jpeg(path, orientation: int = 6) -> Path:
    """Stored 40 wide x 20 high, left half red, right half blue; EXIF says rotate 90 degrees clockwise to view."""
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return write_jpeg(path, img, quality=95, exif=exif)


def decompression_bomb_png(path, side: int = 20000) -> Path:
    """A real 1-bit PNG of side x side pixels (400 megapixels at the default) that is only ~50 KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(comp.compress(row * (side % 1000)))
    parts.append(comp.flush())
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    return write_bytes(path, png)


# --- IDX -------------------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()


def write_idx(path, array: np.ndarray, type_code: int = 0x08, gz: bool | None = None) -> Path:
    data = idx_bytes(array, type_code)
    if gz is None:
        gz = str(path).endswith(".gz")
    if gz:
        data = gzip.compress(data, mtime=0)
    return write_bytes(path, data)


def mnist_like(n: int = 20, side: int = 28, seed: int = 0, classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    labels = (np.arange(n) % classes).astype(np.uint8)
    return images, labels


def write_mnist_folder(folder, n_train: int = 30, n_test: int = 10, gz: bool = False, side: int = 28) -> Path:
    """The four MNIST files with their official names (what torchvision's MNIST/raw holds)."""
    folder = Path(folder)
    ext = ".gz" if gz else ""
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = mnist_like(n, side, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", labels)
    return folder


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random (32, 32, 3) uint8 images and their labels 0..9: what one CIFAR-10 batch of the factories holds."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), (np.arange(n, dtype=np.int64) + seed) % 10


def cifar_planes(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> CIFAR's (N, 3072) rows: the 1024 R bytes, then G, then B, each plane row-major."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072)


def cifar_py_batch(images: np.ndarray, labels, name: str = "training batch 1 of 5", protocol: int = 2) -> bytes:
    """A batch of the python version as its authors wrote it: a dict with bytes keys (data, labels, ...)."""
    import pickle

    batch = {b"batch_label": name, b"labels": [int(v) for v in labels], b"data": cifar_planes(images),
             b"filenames": [f"image_{i:06d}.png" for i in range(len(images))]}
    return pickle.dumps(batch, protocol=protocol)


def cifar_bin_batch(images: np.ndarray, labels) -> bytes:
    """A file of the binary version: one record per image, a label byte then the 3,072 pixel bytes."""
    labels = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    return np.concatenate([labels, cifar_planes(images)], axis=1).tobytes()


def write_cifar10_folder(folder, n_per_batch: int = 10, seed: int = 0) -> Path:
    """`cifar-10-batches-py` in torchvision's layout: five train batches, a test batch, batches.meta (pickles).
    Batch i holds cifar_batch(n_per_batch, seed + i)."""
    import pickle

    folder = Path(folder)
    for i, name in enumerate(CIFAR10_BATCHES):
        write_bytes(folder / name, cifar_py_batch(*cifar_batch(n_per_batch, seed + i), name=name))
    meta = {b"label_names": list(CIFAR10_NAMES), b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}
    return write_bytes(folder / "batches.meta", pickle.dumps(meta, protocol=2)).parent


def write_cifar10_bin_folder(folder, n_per_batch: int = 4, seed: int = 0) -> Path:
    """`cifar-10-batches-bin`: six .bin files of n_per_batch records and batches.meta.txt. Real files hold 10,000
    records each: a test that reads these lowers alexnet.data.cifar.RECORDS_PER_FILE to n_per_batch."""
    folder = Path(folder)
    for i, name in enumerate(CIFAR10_BATCHES):
        write_bytes(folder / f"{name}.bin", cifar_bin_batch(*cifar_batch(n_per_batch, seed + i)))
    return write_bytes(folder / "batches.meta.txt", ("\n".join(CIFAR10_NAMES) + "\n\n").encode()).parent


def image_folder(root, classes=("cat", "dog"), per_class: int = 5, size=(32, 24), fmt="jpg") -> Path:
    """ROOT/<class>/<i>.jpg with distinct noise per image."""
    root = Path(root)
    for c, name in enumerate(classes):
        for i in range(per_class):
            img = noise(size, seed=100 * c + i)
            if fmt == "jpg":
                write_jpeg(root / name / f"{name}_{i}.jpg", img)
            else:
                write_png(root / name / f"{name}_{i}.png", img)
    return root


def make_folder(root: Path, classes=("cat", "dog"), train=16, val=4, size=40, seed=0) -> Path:
    """train/<class>/ and val/<class>/ with real PNG and JPEG files; the classes differ in stripe direction."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                stripes = (np.arange(size) // 4 % 2 * 160 + 40).astype(np.uint8)
                img = np.tile(stripes[:, None] if c % 2 == 0 else stripes[None, :], (1, size) if c % 2 == 0 else (size, 1))
                img = np.clip(img + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
                rgb = np.stack([img, np.roll(img, c * 3, axis=0), img // 2], axis=-1)
                ext = "png" if i % 2 else "jpg"
                Image.fromarray(rgb).save(folder / f"{name}.{i}.{ext}")
    return root


def non_utf8_name(folder, stem: bytes = b"caf\xe9", ext: bytes = b".jpg") -> str:
    """A path whose file name is Latin-1 bytes, not UTF-8 (as str with surrogate escapes, as os.listdir gives)."""
    return os.path.join(os.fspath(folder), os.fsdecode(stem + ext))
