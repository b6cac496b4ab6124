"""A run opened for inspection: its checkpoint, models to run, its eval transform, its data, and image ids.

Images are named by id, never by path: `val:17` and `train:3` index the run's own datasets as the checkpoint
records them (the built-in `shapes` dataset has no folder a user chose, so an index is the only name that always
works); `upload:<hex>` names an image the server holds in memory. Anything else is refused, so a request can read
nothing outside the run and its dataset.

Uploaded bytes go through the data layer's one decoder (bombs, truncation, non-images refused with the file's
name and the cause); they are written to an anonymous in-memory file (memfd) for it, never to disk.
"""

from __future__ import annotations

import os
import queue
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alexnet import config
from alexnet.data import build_from_description, build_transform, load_image
from alexnet.data.images import decode_image
from alexnet.errors import AlexNetError, DataError, short
from alexnet.inspect.units import geometry
from alexnet.models.summary import summarize
from alexnet.store.checkpoint import Checkpoint, load_checkpoint

if TYPE_CHECKING:
    from PIL import Image

SPLITS = tuple(reversed(config.SPLITS))  # as the page names them: val first
ID_PATTERN = re.compile(r"^(val|train):([0-9]{1,9})$")
UPLOAD_PATTERN = re.compile(r"^upload:[0-9a-f]{32}$")
UPLOAD_MAX_PIXELS = 40_000_000  # an upload larger than 40 megapixels is refused as a bomb before decoding


class Busy(AlexNetError):
    """Every model replica is in use for longer than the caller would wait."""


class UnknownImage(AlexNetError):
    """An image id that is malformed, or names no image of this run."""


@dataclass
class LoadedRun:
    """Everything the pictures need, loaded once per run. Models come from a small pool (`model()`): one request
    uses one replica at a time, so forward hooks of two requests never see each other's passes."""

    ckpt: Checkpoint
    name: str
    transform: Any  # PIL -> (C, S, S) normalised: the checkpoint's eval transform
    bundle: Any | None  # alexnet.data.DataBundle, or None when the run's data cannot be rebuilt here
    data_problem: str | None  # why bundle is None
    layer_rows: dict[str, Any]  # paper name -> summary.LayerRow (shape and the size formula)
    spatial: tuple[str, ...] = ()  # conv1 ... pool5, in forward order
    geometry: dict[str, Any] = field(default_factory=dict)  # spatial layer -> units.Geometry (receptive fields)
    replicas: int = 2
    _pool: queue.Queue = field(default_factory=queue.Queue, repr=False)
    _built: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def class_names(self) -> list[str]:
        return list(self.ckpt.class_names)

    @property
    def image_size(self) -> int:
        return self.ckpt.preprocessing.image_size

    @property
    def in_channels(self) -> int:
        return self.ckpt.preprocessing.in_channels

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.ckpt.path)

    # --- models -----------------------------------------------------------------------------------------------

    def _build(self):
        model = self.ckpt.build_model("cpu")
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False  # a hook's output must not be changed by the next layer (and captum needs it so)
        return model.eval()

    @contextmanager
    def model(self, timeout: float | None = None) -> Iterator[torch.nn.Module]:
        """A replica for this caller alone; `Busy` when none frees up within `timeout` seconds."""
        with self._lock:
            if self._pool.empty() and self._built < self.replicas:
                self._built += 1
                self._pool.put(self._build())
        try:
            model = self._pool.get(timeout=timeout)
        except queue.Empty:
            raise Busy(f"all {self.replicas} model replicas are busy; try again") from None
        try:
            yield model
        finally:
            self._pool.put(model)

    def spatial_layers(self) -> list[str]:
        """conv1 ... pool5: the layers whose output is a map (C, H, W). Read once at open: code that holds a
        replica must never wait for another one (two requests would each hold one and wait forever)."""
        return list(self.spatial)

    def conv_layers(self) -> list[str]:
        return [name for name in self.spatial_layers() if name.startswith("conv")]

    # --- images -----------------------------------------------------------------------------------------------

    def dataset(self, split: str):
        if self.bundle is None:
            raise UnknownImage(f"the run's data is not available here ({self.data_problem})")
        if split not in SPLITS:
            raise UnknownImage(f"no split {split!r}; splits: {', '.join(SPLITS)}")
        return self.bundle.val if split == "val" else self.bundle.train

    def dataset_image(self, image_id: str) -> Image.Image:
        """The decoded image an id names (`val:17`), as the data layer decodes it for training."""
        split, index = parse_id(image_id)
        ds = self.dataset(split)
        if index >= len(ds):
            raise UnknownImage(f"{image_id}: the {split} set has {len(ds)} images")
        return ds.load_pil(index)

    def label_of(self, image_id: str) -> int | None:
        split, index = parse_id(image_id)
        ds = self.dataset(split)
        return int(ds.targets[index]) if index < len(ds) else None

    def to_input(self, image: Image.Image) -> torch.Tensor:
        """(1, C, S, S): the image as the model sees it."""
        return self.transform(image).unsqueeze(0)

    def view(self, x: torch.Tensor) -> np.ndarray:
        """The model's input (1, C, S, S) back to uint8 pixels (S, S, 3): what Grad-CAM and units are drawn over."""
        p = self.ckpt.preprocessing
        mean = torch.tensor(p.mean).view(-1, 1, 1)
        std = torch.tensor(p.std).view(-1, 1, 1)
        img = (x[0].detach().float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
        arr = img.permute(1, 2, 0).numpy()
        return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr

    def decode_upload(self, data: bytes, name: str = "upload") -> Image.Image:
        return decode_bytes(data, name, self.in_channels)

    def load_file(self, path: str | os.PathLike) -> Image.Image:
        return load_image(path, self.in_channels)


def parse_id(image_id: str) -> tuple[str, int]:
    """`val:17` -> ("val", 17); anything else (a path, `..`, a URL) is refused."""
    match = ID_PATTERN.match(image_id) if isinstance(image_id, str) else None
    if not match:
        raise UnknownImage(f"{_shown(image_id)}: not an image id (ids look like val:17 or train:3)")
    return match.group(1), int(match.group(2))


def _shown(value: Any) -> str:
    return short(value, 60)


def decode_bytes(data: bytes, name: str, in_channels: int = 3, max_pixels: int = UPLOAD_MAX_PIXELS) -> Image.Image:
    """Decodes untrusted bytes with the training decoder (alexnet.data.images), from memory; errors name `name`."""
    if not data:
        raise DataError(f"{name}: empty file (0 bytes)")
    fd, path = _memory_file(data)
    try:
        return decode_image(path, in_channels, max_pixels=max_pixels).image
    except DataError as e:
        raise DataError(str(e).replace(path, name)) from None
    finally:
        if fd is not None:
            os.close(fd)
        else:
            os.unlink(path)


def _memory_file(data: bytes) -> tuple[int | None, str]:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("alexnet-upload", os.MFD_CLOEXEC)
        with os.fdopen(os.dup(fd), "wb") as f:
            f.write(data)
        return fd, f"/proc/self/fd/{fd}"
    handle, path = tempfile.mkstemp(prefix="alexnet-upload-")  # no memfd (macOS): a private temporary, removed after
    with os.fdopen(handle, "wb") as f:
        f.write(data)
    return None, path


def open_run(path: str | os.PathLike, *, data: bool = True, name: str | None = None, replicas: int = 2) -> LoadedRun:
    """Open a run folder or checkpoint file for inspection. The data is rebuilt from the checkpoint's description;
    when it cannot be (moved, deleted), the run still predicts and `data_problem` says why the rest is missing."""
    ckpt = load_checkpoint(path, prefer="best")
    p = ckpt.preprocessing
    transform = build_transform(p.preset, p.image_size, False, p.mean, p.std, p.in_channels)
    bundle, problem = None, "not asked for"
    if data:
        try:
            bundle, problem = build_from_description(ckpt.data_description(), statistics=False), None
        except (AlexNetError, OSError) as e:
            bundle, problem = None, str(e)
    run = LoadedRun(ckpt, name or ckpt.run_dir.name, transform, bundle, problem, {}, replicas=replicas)
    with run.model() as model:
        rows = summarize(model.config, p.image_size).layers
        inside = {id(mod) for mod in model.features}
        run.spatial = tuple(name for name, mod in model.named_layers() if id(mod) in inside)
        run.geometry = geometry(model)
    run.layer_rows = {r.name: r for r in rows}
    return run
