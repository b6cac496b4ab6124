"""The conv stack's layer arithmetic: each spatial layer's window, floor((W + 2P - K) / S) + 1 (PyTorch) or its ceil
(cuda-convnet), the output map's side and the smallest input. `alexnet summary` and the config's checks use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alexnet.models.architecture import AlexNetConfig

ADAPTIVE_SIZE = 6  # torchvision's AdaptiveAvgPool2d((6, 6)): the paper's 6x6 map after pool5
GROUPED_CONVS = ("conv2", "conv4", "conv5")  # the layers the paper splits across its two GPUs (section 3.2, Fig. 2)


@dataclass(frozen=True)
class Window:
    """Geometry of one spatial layer of the conv stack (a conv or a max-pool)."""

    name: str  # conv1, pool1, ...
    kernel: int
    stride: int
    padding: int


def feature_windows(cfg: AlexNetConfig) -> list[Window]:
    """The conv stack's spatial layers, in order (section 3.5 of the paper: Figure 2)."""
    pk, ps = (3, 2) if cfg.pooling == "overlap" else (2, 2)
    return [
        Window("conv1", 11, 4, cfg.conv1_padding),
        Window("pool1", pk, ps, 0),
        Window("conv2", 5, 1, 2),
        Window("pool2", pk, ps, 0),
        Window("conv3", 3, 1, 1),
        Window("conv4", 3, 1, 1),
        Window("conv5", 3, 1, 1),
        Window("pool5", pk, ps, 0),
    ]


def out_size(size: int, kernel: int, stride: int, padding: int = 0, ceil: bool = False) -> int:
    """floor((W + 2P - K) / S) + 1 (PyTorch), or with ceil (cuda-convnet); 0 when the window does not fit."""
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    return (-(-span // stride) if ceil else span // stride) + 1


def feature_size(cfg: AlexNetConfig, size: int, ceil: bool = False) -> int:
    """Side of the conv stack's output map for a size x size input; 0 when some layer gets too small an input."""
    for w in feature_windows(cfg):
        size = out_size(size, w.kernel, w.stride, w.padding, ceil)
        if size < 1:
            return 0
    return size


def seen_input(cfg: AlexNetConfig, size: int) -> int:
    """How many leading rows (and columns) of a size x size input reach pool5's output under floor rounding: the
    windows of each layer, walked back from pool5's last one, end there. A layer that drops its last row does not
    always lose input (a later window may still cover it); this says what is lost all told (96 -> 91 for
    alexnet-bn). 0 when the input is too small."""
    sides = [size]
    for w in feature_windows(cfg):
        sides.append(out_size(sides[-1], w.kernel, w.stride, w.padding))
        if sides[-1] < 1:
            return 0
    last = sides[-1] - 1  # the last row of pool5's output: every row of it is used
    for w, side_in in zip(reversed(feature_windows(cfg)), reversed(sides[:-1]), strict=True):
        last = min(last * w.stride - w.padding + w.kernel - 1, side_in - 1)
    return last + 1


def min_input_size(cfg: AlexNetConfig, ceil: bool = False) -> int:
    """Smallest square input for which every layer of the conv stack gets a non-empty map."""
    size = 1
    while feature_size(cfg, size, ceil) < 1:  # monotone in size; stops well below 200 for every layout here
        size += 1
    return size
