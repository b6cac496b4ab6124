"""What every model class here shares (AlexNet, CudaConvNet): its layers by name, in forward order, and the check of
a batch's shape and channels that names what the model can take."""

from __future__ import annotations

import torch
from torch import nn

from alexnet.errors import ConfigError


class NamedLayers(nn.Module):
    """A model whose layers have names (`_layer_names`, forward order; `_layers`: name -> module) and a `config`
    with `name` and `in_channels`."""

    _layer_names: list[str]
    _layers: dict[str, nn.Module]

    def layer(self, name: str) -> nn.Module:
        """The module with this name (the paper's conv1, fc6, ...; the cuda-convnet file's local3, fc10, ...)."""
        if name not in self._layers:
            raise ConfigError(f"no layer {name!r} in {self.config.name}; layers: {', '.join(self._layer_names)}")
        return self._layers[name]

    @property
    def towers(self) -> int:
        """How many GPU towers the model has (the paper's two: conv1's filters in consecutive halves), else 1."""
        return int(getattr(self.config, "groups", 1) or 1)

    def batch_side(self, x: torch.Tensor) -> tuple[int, int]:
        """(H, W) of a batch shaped (B, C, H, W) with the model's channels; else a ConfigError saying what to do."""
        if x.dim() != 4:
            raise ConfigError(f"{self.config.name} expects a batch shaped (B, C, H, W), got {tuple(x.shape)}")
        c, h, w = x.shape[1:]
        if c != self.config.in_channels:
            raise ConfigError(
                f"{self.config.name} was built for {self.config.in_channels} input channel(s), got {c}: "
                f"convert the images (grayscale <-> RGB) or build with in_channels={c}"
            )
        return h, w
