"""PNG rendering with PIL and numpy (no matplotlib on the request path: a Grad-CAM overlay costs ~1 ms).

Heat maps use a perceptual dark-blue -> teal -> yellow -> red ramp (anchors of the `turbo` family, interpolated
here), so that low attribution stays dark and the peak is unmistakable on a photo.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

# (position, RGB) anchors of the heat ramp.
_RAMP = np.array([
    (0.00, 48, 18, 59), (0.15, 70, 107, 227), (0.35, 26, 204, 224), (0.50, 98, 252, 111),
    (0.65, 210, 233, 53), (0.80, 254, 155, 45), (1.00, 180, 20, 5),
], dtype=np.float64)  # fmt: skip
PAD = 1  # pixels between the cells of a channel grid


def png_bytes(pixels: np.ndarray, scale: int = 1) -> bytes:
    """uint8 (H, W), (H, W, 3) -> PNG bytes; `scale` > 1 enlarges by nearest neighbour (crisp cells)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # level 1: 5x faster than the default, files ~10% larger
    return out.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def heat_colours(values: np.ndarray) -> np.ndarray:
    """values in [0, 1], any shape -> uint8 RGB of that shape + (3,)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    rgb = [np.interp(v, _RAMP[:, 0], _RAMP[:, c]) for c in (1, 2, 3)]
    return np.stack(rgb, axis=-1).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A heat map (H, W) in [0, 1] over an RGB image (H, W, 3): more opaque where the heat is high."""
    colours = heat_colours(heat).astype(np.float32)
    a = (alpha * (0.35 + 0.65 * np.clip(heat, 0, 1)))[..., None]
    return (image.astype(np.float32) * (1 - a) + colours * a).round().astype(np.uint8)


def grid_layout(channels: int, height: int, width: int) -> dict[str, int]:
    """Where channel i sits in a grid image: cols x rows cells of (height, width), PAD pixels apart."""
    cols = max(1, math.ceil(math.sqrt(channels * width / max(height, 1))))
    cols = min(cols, channels)
    rows = math.ceil(channels / cols)
    return {"channels": channels, "cols": cols, "rows": rows, "cell_h": height, "cell_w": width, "pad": PAD,
            "width": cols * (width + PAD) + PAD, "height": rows * (height + PAD) + PAD}


def minmax_grid(tiles: np.ndarray, cols: int, pad: int, background: float) -> np.ndarray:
    """(N, h, w) or (N, h, w, depth) tiles -> one image of `cols` x ceil(N / cols) cells, `pad` pixels of
    `background` between them, in the tiles' dtype. Each tile is scaled to [0, 1] on its own (min to max), so that a
    weak tile's pattern is as visible as a strong one's; a constant tile is 0. Channel grids and conv1's filters
    (the paper's Figure 3) are both drawn so."""
    n, h, w = tiles.shape[:3]
    axes = tuple(range(1, tiles.ndim))
    lo = tiles.min(axis=axes, keepdims=True)
    span = tiles.max(axis=axes, keepdims=True) - lo
    scaled = np.where(span > 1e-12, (tiles - lo) / np.maximum(span, 1e-12), 0.0)
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, *tiles.shape[3:]), background, dtype=scaled.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = scaled[i]
    return grid


def channel_grid(maps: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """(C, H, W) activations -> (uint8 grey grid image, its layout), each channel scaled to [0, 255] on its own
    (a constant channel is black), dark lines between the cells."""
    maps = np.asarray(maps, dtype=np.float32)
    layout = grid_layout(*maps.shape)
    grid = minmax_grid(maps, layout["cols"], PAD, background=40 / 255)
    return (grid * 255).round().astype(np.uint8), layout


def scale_for(height: int, width: int, target: int = 480) -> int:
    """An integer enlargement that brings an image's larger side near `target` pixels (at least 1)."""
    return max(1, target // max(height, width, 1))
