"""The registry of named variants: each states where it comes from and how it differs from the 2012 paper.
`alexnet.models.build_model(name, **overrides)` builds one.

No torch import: the CLI lists the names (`--model` help) before torch is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from alexnet.errors import ConfigError
from alexnet.models.architecture import AlexNetConfig


@dataclass(frozen=True)
class Variant:
    """A named AlexNet: where it comes from, how it differs from the 2012 paper, and its config overrides."""

    name: str
    summary: str  # one line
    source: str
    deviations: str
    overrides: dict[str, Any]

    def config(self, **overrides: Any) -> AlexNetConfig:
        return AlexNetConfig(**{"name": self.name, **self.overrides, **overrides})


_PAPER = "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural Networks, NIPS 2012"

_VARIANTS = [
    Variant(
        "alexnet",
        "the 2012 paper: two towers (groups=2), LRN, overlapping pooling, dropout, paper init",
        _PAPER + ", sections 3-5 and Figure 2.",
        "227x227 input instead of the paper's 224: PyTorch floors the size arithmetic, cuda-convnet rounded up "
        "(see `alexnet summary alexnet --image-size 224 --ceil`). The two GPU towers run on one device as "
        "grouped convolutions (groups=2 on conv2, conv4, conv5). LRN divides alpha by n, as the authors' "
        "cuda-convnet and torch.nn.LocalResponseNorm do (lrn_alpha_convention='literal' gives the printed formula).",
        {},
    ),
    Variant(
        "alexnet-1gpu",
        "the paper's layers in one tower: conv2, conv4, conv5 see every channel",
        _PAPER + ", without the split across two GPUs.",
        "groups=1: conv2, conv4 and conv5 connect to all channels of the layer below (1,413,120 more parameters "
        "than `alexnet`), as most single-GPU re-implementations do. Otherwise as `alexnet` (227 input, LRN, paper init).",
        {"groups": 1},
    ),
    Variant(
        "alexnet-bn",
        "the cats-vs-dogs note: BatchNorm after every conv, no LRN, 2 classes, 227 input",
        "The first seed note's ClassicalNet.AlexNet (cats vs dogs, trained with Adam).",
        "BatchNorm (2015) after every conv instead of LRN; one tower (groups=1); dropout before fc6 and fc7 instead "
        "of after; PyTorch's default init instead of N(0, 0.01); 2 classes.",
        {"num_classes": 2, "norm": "bn", "groups": 1, "dropout_position": "before", "init": "default"},
    ),
    Variant(
        "alexnet-d2l",
        "the Fashion-MNIST note (Dive into Deep Learning): 1 channel, 224 input, fc6 takes 6400",
        "Dive into Deep Learning (d2lzh_pytorch, section 5.6), as run on Fashion-MNIST in the second seed note.",
        "1 input channel and 10 classes; 224 input with no padding in conv1, so conv1 gives 54x54 and the conv "
        "stack 5x5 (fc6 takes 256*5*5 = 6400 instead of 9216); no LRN; one tower; PyTorch's default init.",
        {"in_channels": 1, "num_classes": 10, "image_size": 224, "norm": "none", "groups": 1, "init": "default"},
    ),
    Variant(
        "alexnet-owt",
        "torchvision's layout (64-192-384-256-256), state_dict-compatible with torchvision.models.alexnet",
        "Krizhevsky 2014, One weird trick for parallelizing convolutional neural networks, as implemented by "
        "torchvision.models.alexnet.",
        "64-192-384-256-256 conv channels; conv1 padded by 2 (so 224 gives 55); no LRN; one tower; dropout before "
        "fc6 and fc7; adaptive average pooling to 6x6, so any input from 63x63 works; PyTorch's default init.",
        {
            "image_size": 224,
            "channels": (64, 192, 384, 256, 256),
            "conv1_padding": 2,
            "norm": "none",
            "groups": 1,
            "dropout_position": "before",
            "init": "default",
            "head": "adaptive",
        },
    ),
]
VARIANTS: dict[str, Variant] = {v.name: v for v in _VARIANTS}


def list_models() -> list[str]:
    """Registered variant names, in a stable order (the paper first)."""
    return list(VARIANTS)


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def model_config(name: str, **overrides: Any) -> AlexNetConfig:
    """The variant's config with overrides of any AlexNetConfig field (None means: keep the variant's value)."""
    variant = get_variant(name)
    fields = {f.name for f in dataclasses.fields(AlexNetConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown model option(s) {', '.join(unknown)} for {name}; valid: {', '.join(sorted(fields))}")
    return variant.config(**{k: v for k, v in overrides.items() if v is not None})
