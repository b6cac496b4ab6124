"""`CudaConvNet`: a network of models/cuda_convnet.py's NETS, built layer by layer from its file's sections, with the
interface every model here has (AlexNet's): `features` (the spatial layers), `classifier` (the fc layers),
`named_layers()` with the file's names, `layer(name)`, `conv1`, `check_input`, `head_name` (the layer a new class
count replaces) and `feature_name` (the last hidden layer: `alexnet features` and the inspection's default).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import ConfigError
from alexnet.models.cuda_convnet import FILTER_KINDS, CudaConvnetConfig, Layer, out_side
from alexnet.models.local import LocallyConnected2d
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.named import NamedLayers


class ResponseNormWithinMap(nn.Module):
    """cuda-convnet's `rnorm`: x / (1 + scale/size^2 * sum of x^2 over a size x size window of the same map)^pow,
    the window centred and zero outside the image (the files' only use is size 3)."""

    def __init__(self, size: int, scale: float, pow: float) -> None:
        super().__init__()
        self.size, self.scale, self.pow = size, scale, pow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo = self.size // 2
        padded = F.pad(x * x, (lo, self.size - 1 - lo, lo, self.size - 1 - lo))
        total = F.avg_pool2d(padded, self.size, stride=1) * (self.size ** 2)
        return x / (1 + self.scale / self.size ** 2 * total) ** self.pow

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, pow={self.pow}"


class CudaConvNet(NamedLayers):
    """One of the authors' CIFAR-10 networks: spatial layers -> flatten -> fc layers."""

    def __init__(self, config: CudaConvnetConfig | dict[str, Any]) -> None:
        super().__init__()
        cfg = CudaConvnetConfig.from_dict(config) if isinstance(config, dict) else config
        self.config = cfg
        self.min_input_size = cfg.image_size  # fc and local layers are built for this size only
        spatial, head = _build(cfg)
        self.features = nn.Sequential(*(m for _, m in spatial))
        self.avgpool = nn.Identity()
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(*(m for _, m in head))
        layers = [*spatial, ("flatten", self.flatten), *head]
        self._layer_names = [name for name, _ in layers]
        self._layers = dict(layers)
        self.head_name = cfg.layers()[-1].name  # fc10
        # what fc10 reads: the last layer before it that is not an activation, BatchNorm or the flatten
        extra = ("flatten", "bn_", f"{cfg.activation}_")
        self.feature_name = [n for n in self._layer_names[:-1] if not n.startswith(extra)][-1]
        _init_weights(self, cfg)

    @property
    def conv1(self) -> nn.Conv2d:
        return self._layers["conv1"]

    def named_layers(self) -> Iterator[tuple[str, nn.Module]]:
        """(file name, module) for every layer in forward order: conv1, pool1, relu_pool1, ..., fc10."""
        for name in self._layer_names:
            yield name, self._layers[name]

    def check_input(self, x: torch.Tensor) -> None:
        h, w = self.batch_side(x)
        size = self.config.image_size
        if h != size or w != size:
            raise ConfigError(f"{self.config.name} takes {size}x{size} inputs (its fc and locally-connected layers "
                              f"are built for that size), got {h}x{w}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))


def _build(cfg: CudaConvnetConfig) -> tuple[list[tuple[str, nn.Module]], list[tuple[str, nn.Module]]]:
    """(spatial layers, fc layers) with the file's names; an activation module follows every neuron=relu layer."""
    spatial: list[tuple[str, nn.Module]] = []
    head: list[tuple[str, nn.Module]] = []
    channels, side = cfg.in_channels, cfg.image_size
    for x in cfg.layers():
        target = head if x.kind == "fc" else spatial
        target.append((x.name, _module(x, channels, side)))
        if x.kind == "fc":
            channels, side = x.filters, 1
        else:
            side = out_side(x, side)
            channels = x.filters or channels
        if cfg.norm == "bn" and x.kind in FILTER_KINDS:
            target.append((f"bn_{x.name}", nn.BatchNorm2d(channels)))
        if x.neuron:
            target.append((f"{cfg.activation}_{x.name}", nn.ReLU(inplace=True) if cfg.activation == "relu"
                           else nn.Tanh()))
    return spatial, head


def _module(x: Layer, channels: int, side: int) -> nn.Module:
    if x.kind == "conv":
        return nn.Conv2d(channels, x.filters, x.size, x.stride, x.padding)
    if x.kind == "local":
        return LocallyConnected2d(channels, x.filters, x.size, side, x.stride, x.padding)
    if x.kind == "maxpool":
        return nn.MaxPool2d(x.size, x.stride, ceil_mode=True)
    if x.kind == "avgpool":  # ceil_mode without padding: a window cut by the border averages its inside pixels
        return nn.AvgPool2d(x.size, x.stride, ceil_mode=True)
    if x.kind == "rnorm":
        return ResponseNormWithinMap(x.size, x.scale, x.pow)
    if x.kind == "cmrnorm":  # alpha divided by the window, k = 1: layer.py's scale / size and the "1 +"
        return LocalResponseNorm(x.size, x.scale, x.pow, 1.0, "per_size")
    return nn.Linear(channels * side * side, x.filters)


@torch.no_grad()
def _init_weights(model: CudaConvNet, cfg: CudaConvnetConfig) -> None:
    if cfg.init == "default" or next(model.parameters()).is_meta:
        return
    by_name = {x.name: x for x in cfg.layers()}
    for name, m in model.named_layers():
        if not isinstance(m, (nn.Conv2d, nn.Linear, LocallyConnected2d)):
            continue
        if cfg.init == "paper":  # the authors' own: the file's initW as the Gaussian's std, biases 0 (initB's default)
            nn.init.normal_(m.weight, 0.0, by_name[name].init_w)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        else:  # He-normal on each position's fan-in (a local layer's fan-in is its filter's)
            fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.weight.shape[-1]
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_in) ** 0.5)
        nn.init.zeros_(m.bias)
