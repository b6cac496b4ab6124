"""PNG plots of a run: learning curves, conv1's filters (the paper's Figure 3) and a confusion matrix.

Figures are drawn with matplotlib's object API on the Agg canvas, never through pyplot: no global figure state, no
display needed, safe on a headless server and inside torchrun workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alexnet.inspect.pictures import minmax_grid


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Loss (train and val) and accuracy (train and val top-1) per epoch, from metrics.csv rows."""
    epochs = [int(r["epoch"]) for r in rows]
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], "o-", label="train")
    ax_loss.plot(epochs, [float(r["val_loss"]) for r in rows], "s-", label="val")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_acc.plot(epochs, [float(r["train_acc"]) for r in rows], "o-", label="train")
    ax_acc.plot(epochs, [float(r["val_top1"]) for r in rows], "s-", label="val top-1")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def filter_grid(weight: np.ndarray, pad: int = 1, towers: int = 1) -> np.ndarray:
    """(O, C, k, k) conv weights -> one (rows*(k+pad), cols*(k+pad), 3|1) image in [0, 1].

    Each filter is scaled to [0, 1] on its own, as in the paper's Figure 3, so that a weak filter's pattern is as
    visible as a strong one's. RGB filters are shown in colour; other channel counts as the channel mean. With
    `towers` > 1 each tower's filters (consecutive groups: the paper's GPUs) start on rows of their own, a wider gap
    between towers, as the paper draws its two GPUs' filters.
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise ValueError(f"expected conv weights (O, C, k, k), got shape {weight.shape}")
    out_channels, channels = weight.shape[:2]
    if channels != 3:
        weight = weight.mean(axis=1, keepdims=True)
    cols = math.ceil(math.sqrt(out_channels * 2))  # wider than tall, like the paper's 96 = 12 x 8 panel
    tiles = weight.transpose(0, 2, 3, 1)
    if towers <= 1 or out_channels % towers:
        return minmax_grid(tiles, cols, pad, background=1.0)
    grids = [minmax_grid(group, cols, pad, background=1.0) for group in np.split(tiles, towers)]
    gap = np.ones((3 * pad + 2, *grids[0].shape[1:]), dtype=grids[0].dtype)
    return np.concatenate([part for grid in grids for part in (grid, gap)][:-1])


def plot_filters(weight, path: str | Path, title: str = "conv1 filters", towers: int = 1) -> Path:
    """The first layer's filters as an image grid (the paper's Figure 3). `weight` is a tensor or an array."""
    if hasattr(weight, "detach"):
        weight = weight.detach().float().cpu().numpy()
    grid = filter_grid(weight, towers=towers)
    height, width = grid.shape[:2]
    scale = 8 / max(height, width)
    fig = _figure(max(width * scale, 2), max(height * scale, 2) + 0.4)
    ax = fig.add_subplot(1, 1, 1)
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{title} ({weight.shape[0]} x {weight.shape[1]} x {weight.shape[2]} x {weight.shape[3]})")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_confusion(matrix, class_names: Sequence[str], path: str | Path, title: str = "confusion matrix") -> Path:
    """Rows are true classes, columns predicted; counts written in the cells when there are few classes."""
    matrix = np.asarray(matrix)
    n = len(class_names)
    size = min(max(4, 0.5 * n + 2), 24)
    fig = _figure(size, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if n <= 30:
        ax.set_xticks(range(n), labels=list(class_names), rotation=90 if n > 5 else 0)
        ax.set_yticks(range(n), labels=list(class_names))
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center",
                        color="white" if matrix[i, j] > threshold else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
