"""`shapes`: the built-in dataset, generated offline and deterministically, so the demo needs no download.

What it is: small RGB JPEG photos of ONE filled shape on a textured, noisy background. The class is the shape
(circle, ring, square, triangle, star, cross). Everything else is random per image and independent of the class:
the shape's colour, position, size (about 45-80 % of the image side) and rotation; the background (a colour
gradient, stripes at any angle and frequency, a checkerboard, or smooth blobs, in two nearby random colours); Gaussian pixel
noise; a few thin clutter lines drawn over everything; and JPEG compression.

Why: the class lives only in the *arrangement* of edges (corners, holes, arms), never in a colour or in where pixels
are bright. A linear model on raw pixels cannot express "a corner anywhere", while a CNN's local filters and pooling
can, so a small AlexNet learns it in minutes on a CPU and a linear model stays far behind (see benchmarks/README.md).

Deterministic: image i of a split comes from numpy's PCG64 seeded with (seed, split, i) only, so the same arguments
give the same pixels (and, with the same libjpeg, the same bytes) in any order and on any number of workers.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from alexnet.checks import MAX_IMAGES_PER_CLASS
from alexnet.config import SPLITS
from alexnet.data.cachedir import build_lock, cache_dir
from alexnet.data.limits import canonical_sha256, decode_workers
from alexnet.errors import DataError, short
from alexnet.files import FileWriteError, current_umask, describe_os_error

log = logging.getLogger("alexnet.data")
MARKER = "shapes.json"  # written last: a folder without it (or with a wrong one) is not a complete dataset

SHAPES = ("circle", "cross", "ring", "square", "star", "triangle")  # sorted: the label order of the folder
VERSION = 2  # bump when the pictures change, so old caches are not reused
_SPLIT_ID = {"train": 1, "val": 2}
_SUPERSAMPLE = 4  # shapes are drawn 4x larger and box-filtered down: anti-aliased edges like a photo


@dataclass(frozen=True)
class ShapesConfig:
    """Everything that determines the dataset's bytes."""

    image_size: int = 64  # side of the square images, in pixels
    train_per_class: int = 1000  # images per class in train/
    val_per_class: int = 200  # images per class in val/
    seed: int = 0
    quality: int = 90  # JPEG quality

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 1024:
            raise DataError(f"shapes: image_size must be in 16..1024, got {self.image_size}")
        if not (1 <= self.train_per_class <= MAX_IMAGES_PER_CLASS and 0 <= self.val_per_class <= MAX_IMAGES_PER_CLASS):
            raise DataError(
                f"shapes: train_per_class must be in 1..{MAX_IMAGES_PER_CLASS:,} and val_per_class in "
                f"0..{MAX_IMAGES_PER_CLASS:,}, got {short(self.train_per_class)} and {short(self.val_per_class)}"
            )
        if not 1 <= self.quality <= 100:
            raise DataError(f"shapes: quality must be in 1..100, got {self.quality}")

    @property
    def name(self) -> str:
        return (
            f"shapes-v{VERSION}-seed{self.seed}-{self.image_size}px-"
            f"{self.train_per_class}x{self.val_per_class}-q{self.quality}"
        )


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape of circumradius r, rotated by angle (radians)."""
    if kind == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.pi / 4 + np.arange(4) * np.pi / 2]
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in -np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
    elif kind == "star":
        pts = [
            ((1.0 if i % 2 == 0 else 0.42) * math.cos(a), (1.0 if i % 2 == 0 else 0.42) * math.sin(a))
            for i, a in enumerate(-np.pi / 2 + np.arange(10) * np.pi / 5)
        ]
    elif kind == "cross":
        w = 0.3  # half the arm width, relative to r
        pts = [
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
            (-w, -1),
        ]
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """A (n, n, 3) float texture in 0..255 made of two random colours."""
    # The second colour stays near the first: a texture, not a second set of edges as strong as the shape's.
    c1 = rng.uniform(0, 255, 3)
    c2 = np.clip(c1 + rng.normal(0, 45, 3), 0, 255)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    kind = rng.integers(4)
    theta = rng.uniform(0, np.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == 0:  # gradient
        t = (u - u.min()) / max(float(u.max() - u.min()), 1e-6)
    elif kind == 1:  # stripes
        t = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 8) * u + rng.uniform(0, 2 * np.pi))
    elif kind == 2:  # checkerboard of random cell size and angle
        v = -xx * math.sin(theta) + yy * math.cos(theta)
        cells = rng.uniform(3, 8)
        t = ((np.floor(u * cells) + np.floor(v * cells)) % 2).astype(np.float32)
    else:  # smooth blobs: coarse noise, upsampled
        coarse = rng.uniform(0, 1, (5, 5)).astype(np.float32)
        t = np.asarray(Image.fromarray(coarse, mode="F").resize((n, n), Image.BICUBIC))
        t = np.clip(t, 0, 1)
    t = t[..., None]
    return c1 * (1 - t) + c2 * t


def render_shape(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """One (n, n, 3) uint8 picture of `kind`, every nuisance factor drawn from `rng`."""
    img = _background(rng, n)
    # The shape's colour is random but kept at a visible distance from the background's average colour.
    bg_mean = img.reshape(-1, 3).mean(0)
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if np.linalg.norm(colour - bg_mean) > 120:
            break
    r = rng.uniform(0.22, 0.40) * n  # circumradius: the shape spans 45-80 % of the side
    cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
    angle = rng.uniform(0, 2 * np.pi)
    big = n * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    S, X, Y, R = _SUPERSAMPLE, cx * _SUPERSAMPLE, cy * _SUPERSAMPLE, r * _SUPERSAMPLE
    if kind == "circle":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
    elif kind == "ring":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
        hole = R * rng.uniform(0.45, 0.65)
        draw.ellipse((X - hole, Y - hole, X + hole, Y + hole), fill=0)
    else:
        draw.polygon(_shape_polygon(kind, X, Y, R, angle), fill=255)
    # Clutter: thin lines of random colours across the image, drawn after the shape so they also cross it.
    lines = Image.new("L", (big, big), 0)
    ldraw = ImageDraw.Draw(lines)
    line_colours = []
    for _ in range(int(rng.integers(0, 3))):
        p = rng.uniform(0, big, 4)
        ldraw.line(tuple(p), fill=255, width=max(1, int(S * rng.uniform(0.5, 1.2))))
        line_colours.append(rng.uniform(0, 255, 3))
    alpha = np.asarray(mask.resize((n, n), Image.BOX), dtype=np.float32)[..., None] / 255.0
    img = img * (1 - alpha) + colour * alpha
    if line_colours:
        la = np.asarray(lines.resize((n, n), Image.BOX), dtype=np.float32)[..., None] / 255.0
        img = img * (1 - la) + np.mean(line_colours, axis=0) * la
    img = img + rng.normal(0, rng.uniform(3, 12), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _write_one(cfg: ShapesConfig, folder: str, split: str, i: int) -> None:
    label = i % len(SHAPES)
    rng = np.random.default_rng([cfg.seed, _SPLIT_ID[split], i, VERSION])
    pixels = render_shape(SHAPES[label], rng, cfg.image_size)
    path = os.path.join(folder, split, SHAPES[label], f"{i:06d}.jpg")
    Image.fromarray(pixels, mode="RGB").save(path, quality=cfg.quality)


def make_shapes(cfg: ShapesConfig | None = None, output: str | None = None, *, workers: int = 2) -> str:
    """Writes the dataset as `train/<shape>/*.jpg` and `val/<shape>/*.jpg` and returns its folder.

    Default folder: `$ALEXNET_CACHE/datasets/<cfg.name>` (0700). An existing complete folder is reused as is; a new
    one is generated in a folder made by tempfile.mkdtemp beside it (exclusive, unpredictable name, 0700) and renamed
    into place at the end, so an interrupted run never leaves a half dataset behind and nobody can plant one.
    Generators of one folder take a lock; the holder removes what a killed generator left. A cached folder whose
    marker (checksummed) or file counts are wrong is regenerated with a warning; a wrong `output` folder is an error.
    """
    cfg = cfg or ShapesConfig()
    final = output or os.path.join(cache_dir("datasets"), cfg.name)
    parent, name = os.path.split(os.path.abspath(final))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, parent)) from None
    lock_name = hashlib.sha256(os.path.abspath(final).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    with build_lock(cache_dir("locks"), lock_name):
        problem = _check_complete(final, cfg)
        if problem is None:
            return final
        if os.path.lexists(final) and (not os.path.isdir(final) or os.listdir(final)):
            if output is not None or os.path.islink(final):
                raise DataError(f"{final}: folder exists and is not a complete shapes dataset ({problem}); "
                                f"remove it or pick another")
            log.warning("shapes dataset %s: %s; generating it again", final, problem)
            try:
                shutil.rmtree(final) if os.path.isdir(final) else os.unlink(final)
            except OSError as e:
                raise FileWriteError(describe_os_error(e, final)) from None
        _remove_stale(parent, name)
        try:
            tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
        except OSError as e:
            raise FileWriteError(describe_os_error(e, parent)) from None
        try:
            _generate(cfg, tmp, workers)
            if os.path.isdir(final):
                os.rmdir(final)  # an empty folder the user named
            os.rename(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileWriteError(describe_os_error(e, final)) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if output is not None:  # a folder the user asked for is an ordinary folder, not a private cache
            os.chmod(final, 0o777 & ~current_umask())
    return final


def _generate(cfg: ShapesConfig, folder: str, workers: int) -> None:
    for split in SPLITS:
        for name in SHAPES:
            os.makedirs(os.path.join(folder, split, name))
    start = time.perf_counter()
    jobs = [("train", i) for i in range(cfg.train_per_class * len(SHAPES))]
    jobs += [("val", i) for i in range(cfg.val_per_class * len(SHAPES))]
    with ThreadPoolExecutor(decode_workers(workers)) as pool:  # numpy and PIL release the GIL for most of the work
        list(pool.map(lambda job: _write_one(cfg, folder, *job), jobs))
    info = {
        "dataset": "shapes",
        "classes": list(SHAPES),
        "config": asdict(cfg),
        "images": len(jobs),
        "seconds_to_generate": round(time.perf_counter() - start, 2),
        "about": __doc__.split("\n\n")[1].replace("\n", " "),
    }
    info["sha256"] = canonical_sha256(info)
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)


def _check_complete(folder: str, cfg: ShapesConfig) -> str | None:
    """None when `folder` holds exactly the dataset `cfg` describes, else what is wrong with it."""
    marker = os.path.join(folder, MARKER)
    if not os.path.lexists(marker):
        return "no shapes.json marker"
    try:
        with open(marker, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        return f"shapes.json unreadable ({type(e).__name__})"
    if not isinstance(info, dict):
        return "shapes.json is not a JSON object"
    stored = info.pop("sha256", None)
    try:
        if stored != canonical_sha256(info):
            return "shapes.json checksum mismatch"
    except ValueError:
        return "shapes.json holds values that are not plain JSON"
    if info.get("dataset") != "shapes" or info.get("config") != asdict(cfg):
        return "shapes.json describes another dataset"
    for split, per_class in (("train", cfg.train_per_class), ("val", cfg.val_per_class)):
        for shape in SHAPES:
            try:
                count = len(os.listdir(os.path.join(folder, split, shape)))
            except OSError:
                return f"{split}/{shape} is missing"
            if count != per_class:
                return f"{split}/{shape} holds {count} files, expected {per_class}"
    return None


def _remove_stale(parent: str, name: str) -> None:
    """Generation folders a killed run left beside `name` (called under the lock, so none is still being written)."""
    for pattern in (f".{name}.*.tmp", f"{name}.tmp-*"):  # ours, and the previous version's `NAME.tmp-PID`
        for path in glob.glob(os.path.join(glob.escape(parent), pattern)):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)

