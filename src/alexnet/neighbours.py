"""Nearest neighbours in feature space: the paper's Figure 4 (`alexnet neighbours`).

Section 6.1: "If two images produce feature activation vectors with a small Euclidean separation, we can say that
the higher levels of the neural network consider them to be similar." For each query image, the k images of a
data set whose fc7 vectors (`alexnet.features`) are nearest in Euclidean distance; a query that is itself a file
of the data set is not its own neighbour (the same file, by device and inode, is left out; a copy elsewhere is not).

    from alexnet.neighbours import find_neighbours
    result = find_neighbours("runs/cats", ["query.jpg"], "data/val", k=5)
    result.neighbours["query.jpg"]  # [Neighbour(file, label, distance), ...], nearest first
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alexnet.data import load_image
from alexnet.errors import ConfigError
from alexnet.features import DEFAULT_LAYER, as_checkpoint, extract_features
from alexnet.files import atomic_write, atomic_write_text
from alexnet.inspect.plots import _figure

GRID_ROWS = 32  # queries drawn in the PNG at most (all of them are in the JSON)
GRID_NEIGHBOURS = 16  # neighbours drawn per query at most: a figure of any --k stays a size Agg can draw
CELL_INCHES = 1.6  # width and height of one image in the grid


@dataclass
class Neighbour:
    file: str
    label: str | None
    distance: float

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "label": self.label, "distance": self.distance}


@dataclass
class NeighbourResult:
    neighbours: dict[str, list[Neighbour]]  # query file -> its k nearest, nearest first
    layer: str
    checkpoint: str
    data: list[str]
    k: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # queries or data files that could not be read

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "layer": self.layer,
            "data": self.data,
            "k": self.k,
            "neighbours": {q: [n.to_json() for n in ns] for q, ns in self.neighbours.items()},
            "skipped": [{"file": f, "error": e} for f, e in self.skipped],
        }


def _identity(path: str) -> tuple[int, int] | str:
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return os.path.realpath(path)


def nearest(queries: torch.Tensor, data: torch.Tensor, k: int, exclude: Sequence[Sequence[int]] = ()) -> tuple[
        torch.Tensor, torch.Tensor]:
    """(distances, indices), each (Q, min(k, N)), nearest first: Euclidean distances from each query vector
    (Q, D) to each data vector (N, D), in float64 without the matrix-product shortcut (so identical vectors are
    at exactly 0). `exclude[i]` lists the data rows query i may not return."""
    d = torch.cdist(queries.double()[None], data.double()[None], compute_mode="donot_use_mm_for_euclid_dist")[0]
    for i, rows in enumerate(exclude):
        if rows:
            d[i, list(rows)] = float("inf")
    k = min(k, data.shape[0] - max((len(r) for r in exclude), default=0))
    if k < 1:
        raise ConfigError("no data images left to compare with once the queries themselves are left out")
    return d.topk(k, dim=1, largest=False)


def find_neighbours(
    checkpoint: Any,
    queries: Sequence[str],
    data: str | Sequence[str],
    *,
    k: int = 5,
    layer: str | None = DEFAULT_LAYER,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> NeighbourResult:
    """The k nearest images of `data` (a folder of class folders, or files/folders/globs) to each query image."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    ckpt = as_checkpoint(checkpoint)
    data = [data] if isinstance(data, str) else list(data)
    pool = extract_features(ckpt, data, layer, batch_size=batch_size, device=device, progress=progress)
    asked = extract_features(ckpt, queries, layer, batch_size=batch_size, device=device, progress=progress)
    rows_of: dict[tuple[int, int] | str, list[int]] = {}
    for row, path in enumerate(pool.files):
        rows_of.setdefault(_identity(path), []).append(row)
    exclude = [rows_of.get(_identity(q), []) for q in asked.files]
    distances, indices = nearest(asked.vectors, pool.vectors, k, exclude)
    out = {}
    for q, ds, ix in zip(asked.files, distances.tolist(), indices.tolist(), strict=True):
        out[q] = [Neighbour(pool.files[i], pool.labels[i], float(dist)) for dist, i in zip(ds, ix, strict=True)]
    return NeighbourResult(out, pool.layer, str(ckpt.path), data, k, asked.skipped + pool.skipped)


def plot_grid(result: NeighbourResult, path: str | Path, in_channels: int = 3) -> Path:
    """One row per query (at most GRID_ROWS): the query, then its neighbours with their class and distance."""
    import numpy as np

    rows = list(result.neighbours.items())[:GRID_ROWS]
    rows = [(query, ns[:GRID_NEIGHBOURS]) for query, ns in rows]
    cols = 1 + max((len(ns) for _, ns in rows), default=0)
    fig = _figure(CELL_INCHES * cols, CELL_INCHES * max(len(rows), 1) + 0.4)
    axes = np.atleast_2d(fig.subplots(max(len(rows), 1), cols, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    for r, (query, ns) in enumerate(rows):
        cells = [(query, f"query\n{_short(os.path.basename(query))}")]
        cells += [(n.file, f"{n.label or _short(os.path.basename(n.file))}\n{n.distance:.4f}") for n in ns]
        for c, (file, caption) in enumerate(cells):
            image = load_image(file, in_channels)
            image.thumbnail((128, 128))
            ax = axes[r, c]
            ax.imshow(np.asarray(image), cmap="gray" if image.mode == "L" else None)
            ax.set_title(caption, fontsize=7, color="tab:blue" if c == 0 else "black")
    shown = f", first {GRID_ROWS} of {len(result.neighbours)} queries" if len(result.neighbours) > GRID_ROWS else ""
    if result.k > GRID_NEIGHBOURS:
        shown += f", {GRID_NEIGHBOURS} nearest of {result.k} drawn"
    fig.suptitle(f"nearest {result.layer} neighbours (Euclidean{shown})", fontsize=9)
    fig.savefig(path, format="png")
    return Path(path)


def _short(name: str, limit: int = 18) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def write_neighbours(result: NeighbourResult, output_dir: str | Path = ".", in_channels: int = 3) -> tuple[Path, Path]:
    """neighbours.png (the grid) and neighbours.json in `output_dir`, each written whole or not at all."""
    import json

    folder = Path(output_dir)
    png, doc = folder / "neighbours.png", folder / "neighbours.json"
    atomic_write(png, lambda tmp: plot_grid(result, tmp, in_channels), suffix=".png")
    atomic_write_text(doc, json.dumps(result.to_json(), indent=2) + "\n")
    return png, doc


def format_table(result: NeighbourResult) -> str:
    lines = []
    for query, ns in result.neighbours.items():
        lines.append(f"{query}:")
        lines += [f"  {n.distance:10.4f}  {n.label or '-':<12} {n.file}" for n in ns]
    return "\n".join(lines)
