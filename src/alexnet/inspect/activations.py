"""Every layer's activations, conv1 ... pool5, caught by forward hooks in one pass, and drawn as channel grids.

Each grid is labelled with the layer's output shape and its size formula from `alexnet summary`
(alexnet.models.summary.summarize), so that the picture and the arithmetic are read side by side.

    from alexnet.inspect import open_run, activation_pngs
    run = open_run("runs/demo")
    for layer, png, label in activation_pngs(run, "photo.jpg"):   # or layers=["conv1", "pool5"]
        ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alexnet.errors import ConfigError
from alexnet.inspect import pictures


@dataclass
class Forward:
    """One image through the model: logits, fc7 and the spatial maps that were asked for."""

    logits: torch.Tensor  # (B, K)
    fc7: torch.Tensor  # (B, D): fc7's output before its ReLU, as `alexnet features` reads it
    maps: dict[str, torch.Tensor]  # layer -> (B, C, H, W)


@torch.no_grad()
def forward(model: torch.nn.Module, x: torch.Tensor, layers: Sequence[str] = ()) -> Forward:
    """One pass with hooks on fc7 and `layers`; the model must be this caller's alone while it runs."""
    caught: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in {*layers, model.feature_name}:
            def hook(_m, _i, out, name=name):
                caught[name] = out.detach().clone()  # clone: a later in-place op must not change what was caught

            handles.append(model.layer(name).register_forward_hook(hook))
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return Forward(logits.float(), caught.pop(model.feature_name).float(), {k: v.float() for k, v in caught.items()})


def check_layers(run, layers: Sequence[str] | None) -> list[str]:
    spatial = run.spatial_layers()
    if not layers:
        return spatial
    bad = [name for name in layers if name not in spatial]
    if bad:
        raise ConfigError(f"no spatial layer {bad[0]!r} in {run.ckpt.model_name}; layers: {', '.join(spatial)}")
    return list(layers)


def label(run, layer: str) -> dict[str, Any]:
    row = run.layer_rows.get(layer)
    shape = list(row.out_shape) if row else []
    return {"layer": layer, "type": row.type if row else "", "shape": shape,
            "shape_text": " x ".join(map(str, shape)), "formula": row.formula if row else ""}


def activations(run, image, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """layer -> (C, H, W) float32 for one image (a path, a PIL image or a (1, C, S, S) input)."""
    layers = check_layers(run, layers)
    x = as_input(run, image)
    with run.model() as model:
        out = forward(model, x, layers)
    return {name: out.maps[name][0].numpy() for name in layers}


def grid_png(maps: np.ndarray, target: int = 0) -> tuple[bytes, dict[str, int]]:
    grid, layout = pictures.channel_grid(maps)
    scale = pictures.scale_for(*grid.shape, target=target) if target else 1
    return pictures.png_bytes(grid, scale), {**layout, "scale": scale}


def activation_pngs(run, image, layers: Sequence[str] | None = None, target: int = 640) -> list[tuple[str, bytes, str]]:
    """[(layer, PNG bytes, "conv1 96 x 55 x 55: floor((227 + 2*0 - 11) / 4) + 1 = 55")], in forward order."""
    out = []
    for name, maps in activations(run, image, layers).items():
        png, _ = grid_png(maps, target)
        info = label(run, name)
        out.append((name, png, f"{name} {info['shape_text']}: {info['formula']}".rstrip(": ")))
    return out


def as_input(run, image) -> torch.Tensor:
    """A path, a PIL image, an image id (val:3) or a ready (1, C, S, S) tensor -> the model's input."""
    if isinstance(image, torch.Tensor):
        return image if image.dim() == 4 else image.unsqueeze(0)
    from PIL import Image

    if isinstance(image, Image.Image):
        return run.to_input(image)
    text = str(image)
    if text.startswith(("val:", "train:")):
        return run.to_input(run.dataset_image(text))
    return run.to_input(run.load_file(text))
