"""What a unit responds to: the validation images that excite a channel most, and the region of each that does.

A channel's response to an image is its largest value over the map's positions; the region is that position's
receptive field in the input, from the chain of kernels, strides and paddings up to the layer:

    rf_out = rf_in + (k - 1) * jump_in      jump_out = jump_in * stride      start_out = start_in + ((k - 1) / 2 - p) * jump_in

(`start` is the input coordinate of the first unit's centre). Running top-k lists are merged batch by batch, so
the memory is (channels, k) whatever the size of the validation set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TOP = 9  # images per channel (the paper's Figure 4 shows rows of this order)


@dataclass(frozen=True)
class Geometry:
    rf: int  # receptive field, input pixels per side
    jump: int  # input pixels between neighbouring units
    start: float  # input coordinate of unit 0's centre


def geometry(model: nn.Module) -> dict[str, Geometry]:
    """Receptive geometry of every spatial layer (conv1 ... pool5) of an AlexNet."""
    inside = {id(m) for m in model.features}
    rf, jump, start = 1, 1, 0.0
    out = {}
    for name, m in model.named_layers():
        if id(m) not in inside:
            continue
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p = (_side(m.kernel_size), _side(m.stride), _side(m.padding))
            start += ((k - 1) / 2 - p) * jump
            rf += (k - 1) * jump
            jump *= s
        out[name] = Geometry(rf, jump, start)
    return out


def _side(v) -> int:
    return v if isinstance(v, int) else v[0]


def region(g: Geometry, y: int, x: int, size: int) -> list[float]:
    """[left, top, width, height] as fractions of the input side, clipped to the image."""
    half = (g.rf - 1) / 2
    cy, cx = g.start + y * g.jump, g.start + x * g.jump
    x0, x1 = max(0.0, cx - half), min(size - 1.0, cx + half)
    y0, y1 = max(0.0, cy - half), min(size - 1.0, cy + half)
    return [round(x0 / size, 4), round(y0 / size, 4), round((x1 - x0 + 1) / size, 4), round((y1 - y0 + 1) / size, 4)]


class TopUnits:
    """Running top-TOP (value, image row, y, x) per channel of one layer."""

    def __init__(self, channels: int, k: int = TOP):
        self.k = k
        self.values = torch.full((channels, 0), float("-inf"))
        self.rows = torch.zeros((channels, 0), dtype=torch.int64)
        self.pos = torch.zeros((channels, 0), dtype=torch.int64)  # flat y * W + x
        self.width = 1

    def update(self, maps: torch.Tensor, rows: torch.Tensor) -> None:
        """maps (B, C, H, W) of the images whose index rows (B,) are given."""
        b, c, h, w = maps.shape
        self.width = w
        best, where = maps.reshape(b, c, h * w).max(dim=2)  # (B, C)
        values = torch.cat([self.values, best.T], dim=1)
        image_rows = torch.cat([self.rows, rows.view(1, b).expand(c, b)], dim=1)
        pos = torch.cat([self.pos, where.T], dim=1)
        keep = values.topk(min(self.k, values.shape[1]), dim=1).indices
        self.values, self.rows, self.pos = values.gather(1, keep), image_rows.gather(1, keep), pos.gather(1, keep)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """values (C, k), image rows (C, k), positions (C, k, 2) as (y, x)."""
        yx = torch.stack([self.pos // self.width, self.pos % self.width], dim=-1)
        return self.values.clone(), self.rows.clone(), yx
