"""The per-checkpoint index: fc7 vectors of the training and validation images, the validation predictions, each
conv channel's top images, and the 2-D maps of fc7. Computed once with a progress bar and cached beside the
checkpoint (`checkpoints/best.inspect.safetensors`), so that a second `alexnet serve` starts at once.

The cache is untrusted input like any file: it is a safetensors file (no code can run when it is read) whose
metadata names the checkpoint it was computed from (size, modification time, and a SHA-256 of its first and last
MiB) and the data (the datasets' fingerprints); every tensor's dtype, shape, range and finiteness is checked on
read. A stale or damaged index is rebuilt with a one-line message naming the file and the cause, never a
traceback; an index that cannot be written (a read-only run folder) is kept in memory for the session.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.config import SPLITS
from alexnet.errors import AlexNetError, short
from alexnet.files import atomic_write
from alexnet.inspect import embedding
from alexnet.inspect.activations import forward
from alexnet.inspect.units import TOP, TopUnits

VERSION = 1
MAX_IMAGES = 10_000  # per split: beyond this a seeded sample is indexed (the build is a forward pass per image)
BATCH = 64
HASHED = 1 << 20  # bytes hashed at each end of the checkpoint file
SUFFIX = ".inspect.safetensors"
HALF = ("train_fc7", "val_fc7")  # stored as float16


class IndexProblem(Exception):
    """Why a cached index cannot be used (the caller rebuilds it)."""


@dataclass
class InspectIndex:
    path: Path
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    built: bool = False  # True when computed in this process, False when read from the cache
    saved: bool = True
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    @property
    def conv_layers(self) -> list[str]:
        return list(self.meta["conv_layers"])

    def units(self, layer: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (self.tensors[f"units.{layer}.values"], self.tensors[f"units.{layer}.rows"],
                self.tensors[f"units.{layer}.yx"])

    def val_row_of(self, dataset_index: int) -> int | None:
        """The index's row for a validation image (None when it was not indexed)."""
        hits = (self.tensors["val_rows"] == dataset_index).nonzero()
        return int(hits[0, 0]) if len(hits) else None

    def confusion(self) -> np.ndarray:
        k = len(self.meta["class_names"])
        pred = self.tensors["val_probs"].argmax(dim=1).numpy()
        true = self.tensors["val_labels"].numpy()
        matrix = np.zeros((k, k), dtype=np.int64)
        np.add.at(matrix, (true, pred), 1)
        return matrix


def index_path(checkpoint: str | os.PathLike) -> Path:
    path = Path(checkpoint)
    return path.with_name(path.stem + SUFFIX)


def checkpoint_key(run) -> dict[str, Any]:
    path = Path(run.ckpt.path)
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HASHED))
        if st.st_size > 2 * HASHED:
            f.seek(-HASHED, os.SEEK_END)
        h.update(f.read(HASHED))
    key = {"version": VERSION, "checkpoint_size": st.st_size, "checkpoint_mtime_ns": st.st_mtime_ns,
           "checkpoint_sha256_ends": h.hexdigest(), "class_names": run.class_names, "max_images": MAX_IMAGES}
    if run.bundle is not None:
        key["train"] = run.bundle.train.fingerprint()
        key["val"] = run.bundle.val.fingerprint()
    return key


def load_index(run, *, progress: bool = True, say: Callable[[str], None] | None = None) -> InspectIndex:
    """The run's index: read from beside the checkpoint when it is valid for this checkpoint and data, else built
    (and saved there). Needs the run's data (`run.bundle`)."""
    say = say or (lambda line: print(line, file=sys.stderr))
    if run.bundle is None:
        raise AlexNetError(f"{run.ckpt.path}: the run's data is not available, so no index ({run.data_problem})")
    path = index_path(run.ckpt.path)
    key = checkpoint_key(run)
    if path.exists():
        try:
            return read_index(path, key, run)
        except IndexProblem as e:
            say(f"{path}: {e}; rebuilding the index")
    index = build_index(run, key, path, progress)
    try:
        save_index(index)
    except (AlexNetError, OSError) as e:
        index.saved = False
        say(f"{path}: cannot save the index ({short(str(e), 160)}); it is kept in memory for this session")
    return index


def _sample(n: int) -> list[int]:
    return embedding.sample_rows(n, MAX_IMAGES).tolist()


def build_index(run, key: dict[str, Any], path: Path, progress: bool = True) -> InspectIndex:
    from tqdm import tqdm

    conv = run.conv_layers()
    train, val = run.bundle.train, run.bundle.val
    todo = {"train": _sample(len(train)), "val": _sample(len(val))}
    total = sum(len(v) for v in todo.values())
    tensors: dict[str, torch.Tensor] = {}
    skipped: list[list[str]] = []
    tops: dict[str, TopUnits] = {}
    bar = tqdm(total=total, unit="img", file=sys.stderr, desc=f"indexing {run.name}", dynamic_ncols=True,
               disable=not progress)
    try:
        with run.model() as model, torch.inference_mode():
            for split, ds in (("train", train), ("val", val)):
                rows, fc7, probs = [], [], []
                for start in range(0, len(todo[split]), BATCH):
                    chunk, xs = [], []
                    for i in todo[split][start : start + BATCH]:
                        try:
                            xs.append(run.transform(ds.load_pil(i)))
                            chunk.append(i)
                        except (AlexNetError, OSError) as e:
                            skipped.append([f"{split}:{i}", short(str(e), 200)])
                    bar.update(len(todo[split][start : start + BATCH]))
                    if not xs:
                        continue
                    out = forward(model, torch.stack(xs), conv if split == "val" else ())
                    idx = torch.tensor(chunk, dtype=torch.int64)
                    rows.append(idx)
                    fc7.append(out.fc7)
                    probs.append(out.logits.softmax(dim=1))
                    for layer in conv if split == "val" else ():
                        maps = out.maps[layer]
                        tops.setdefault(layer, TopUnits(maps.shape[1])).update(maps, idx)
                d = model.config.fc_features
                tensors[f"{split}_rows"] = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64)
                tensors[f"{split}_fc7"] = _half_if_it_fits(torch.cat(fc7) if fc7 else torch.zeros(0, d))
                tensors[f"{split}_labels"] = torch.tensor([ds.targets[i] for i in tensors[f"{split}_rows"].tolist()],
                                                          dtype=torch.int64)
                if split == "val":
                    k = len(run.class_names)
                    tensors["val_probs"] = torch.cat(probs) if probs else torch.zeros(0, k)
    finally:
        bar.close()
    for layer in conv:
        if layer in tops:
            values, rows_, yx = tops[layer].tensors()
            tensors[f"units.{layer}.values"], tensors[f"units.{layer}.rows"], tensors[f"units.{layer}.yx"] = (
                values.float(), rows_, yx)
    tensors.update(_maps(tensors["val_fc7"].numpy(), progress))
    meta = {"key": key, "class_names": run.class_names, "conv_layers": [c for c in conv if c in tops],
            "skipped": skipped[:100], "num_skipped": len(skipped)}
    return InspectIndex(path, meta, {k: v.contiguous() for k, v in tensors.items()}, built=True)


def _maps(vectors: np.ndarray, progress: bool) -> dict[str, torch.Tensor]:
    """The 2-D maps of a sample of the validation fc7 vectors: its rows, PCA and t-SNE."""
    map_rows = embedding.sample_rows(len(vectors))
    pca = embedding.pca_2d(vectors[map_rows])
    if progress:
        print(f"t-SNE of {len(map_rows)} fc7 vectors ...", file=sys.stderr)
    return {"map_rows": torch.from_numpy(map_rows.astype(np.int64)), "map_pca": torch.from_numpy(pca),
            "map_tsne": torch.from_numpy(embedding.tsne_2d(vectors[map_rows]))}


def _half_if_it_fits(v: torch.Tensor) -> torch.Tensor:
    """fc7 at float16 precision when float16 holds it (|v| < 65504): half the disk of float32 (10,000 vectors of the
    full model: 82 MB instead of 164), far below the differences between neighbours' distances. Rounded here, in
    memory too, so that an index read back is identical to the one built."""
    return v.half().float() if v.numel() == 0 or float(v.abs().max()) < 65000 else v


def save_index(index: InspectIndex) -> None:
    from safetensors.torch import save_file

    meta = {"alexnet_inspect_index": json.dumps(index.meta)}
    stored = {k: (v.half() if k in HALF and torch.equal(v, v.half().float()) else v) for k, v in index.tensors.items()}
    atomic_write(index.path, lambda tmp: save_file(stored, tmp, metadata=meta), suffix=".tmp")


def read_index(path: Path, key: dict[str, Any], run) -> InspectIndex:
    """The cached index, validated against this checkpoint and data; IndexProblem says why not."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("alexnet_inspect_index")
            names = list(f.keys())
            tensors = {name: f.get_tensor(name) for name in names}
    except Exception as e:  # safetensors raises its own errors, OSError, ValueError ... on a damaged file
        raise IndexProblem(f"unreadable ({type(e).__name__}: {short(str(e), 120)})") from None
    try:
        meta = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("key"), dict):
        raise IndexProblem("no index metadata")
    if meta["key"] != key:
        changed = sorted(k for k in set(key) | set(meta["key"]) if key.get(k) != meta["key"].get(k))
        raise IndexProblem(f"stale (it was computed for a different {', '.join(changed)})")
    _validate(meta, tensors, run)
    return InspectIndex(path, meta, tensors, built=False)


def _validate(meta: dict[str, Any], t: dict[str, torch.Tensor], run) -> None:
    k = len(run.class_names)
    sizes = {"train": len(run.bundle.train), "val": len(run.bundle.val)}
    conv = meta.get("conv_layers")
    if meta.get("class_names") != run.class_names or not isinstance(conv, list) or not set(conv) <= set(
            run.conv_layers()):
        raise IndexProblem("metadata does not match the run")

    def tensor(name: str, dtype: torch.dtype | tuple[torch.dtype, ...], shape: tuple[int | None, ...]) -> torch.Tensor:
        if name not in t:
            raise IndexProblem(f"tensor {name} missing")
        v = t[name]
        if v.dtype not in (dtype if isinstance(dtype, tuple) else (dtype,)) or v.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, v.shape, strict=True)):
            raise IndexProblem(f"tensor {name} is {v.dtype} {tuple(v.shape)}, expected {dtype} {shape}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise IndexProblem(f"tensor {name} holds non-finite values")
        return v

    def in_range(name: str, v: torch.Tensor, hi: int) -> None:
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= hi):
            raise IndexProblem(f"tensor {name} has values outside 0..{hi - 1}")

    d = None
    for split in SPLITS:
        rows = tensor(f"{split}_rows", torch.int64, (None,))
        in_range(f"{split}_rows", rows, sizes[split])
        n = len(rows)
        fc7 = tensor(f"{split}_fc7", (torch.float16, torch.float32), (n, d))
        t[f"{split}_fc7"] = fc7.float()
        d = fc7.shape[1]
        in_range(f"{split}_labels", tensor(f"{split}_labels", torch.int64, (n,)), k)
    nv = len(t["val_rows"])
    probs = tensor("val_probs", torch.float32, (nv, k))
    if probs.numel() and (probs.min() < 0 or probs.max() > 1):
        raise IndexProblem("tensor val_probs is not probabilities")
    shapes = {name: row.out_shape for name, row in run.layer_rows.items()}
    for layer in conv:
        c, h, w = shapes[layer]
        values = tensor(f"units.{layer}.values", torch.float32, (c, None))
        top = values.shape[1]
        if top > TOP:
            raise IndexProblem(f"tensor units.{layer}.values keeps {top} images per channel (> {TOP})")
        in_range(f"units.{layer}.rows", tensor(f"units.{layer}.rows", torch.int64, (c, top)), sizes["val"])
        yx = tensor(f"units.{layer}.yx", torch.int64, (c, top, 2))
        in_range(f"units.{layer}.yx[y]", yx[..., 0], h)
        in_range(f"units.{layer}.yx[x]", yx[..., 1], w)
    m = len(tensor("map_rows", torch.int64, (None,)))
    in_range("map_rows", t["map_rows"], max(nv, 1))
    tensor("map_pca", torch.float32, (m, 2))
    tensor("map_tsne", torch.float32, (m, 2))
