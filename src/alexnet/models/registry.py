"""The registry of named variants: each states where it comes from and how it differs from the 2012 paper.
`alexnet.models.build_model(name, **overrides)` builds one.

No torch import: the CLI lists the names (`--model` help) before torch is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from alexnet.errors import ConfigError
from alexnet.models import cuda_convnet
from alexnet.models.architecture import AlexNetConfig, parameter_count
from alexnet.models.cuda_convnet import CudaConvnetConfig

ModelConfig = AlexNetConfig | CudaConvnetConfig
CONFIG_CLASSES = {"alexnet": AlexNetConfig, cuda_convnet.FAMILY: CudaConvnetConfig}  # family -> its config


@dataclass(frozen=True)
class Variant:
    """A named network: where it comes from, how it differs from its source, and its config overrides."""

    name: str
    summary: str  # one line
    source: str
    deviations: str
    overrides: dict[str, Any]
    family: str = "alexnet"  # a key of CONFIG_CLASSES: which class builds it

    def config(self, **overrides: Any) -> ModelConfig:
        return CONFIG_CLASSES[self.family](**{"name": self.name, **self.overrides, **overrides})


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
_CC = ("Krizhevsky, cuda-convnet (2011), example-layers/layers-{0}.cfg and layer-params-{0}.cfg, the CIFAR-10 "
       "networks of the paper's sections 3.1 and 3.3")
_CC_SAME = ("The file's layers, filter counts, padding, ceil-rounded pooling and initW; a new run uses the "
            "--recipe's optimiser rather than the file's per-layer epsW/wc (models/cuda_convnet.py keeps them). ")
_VARIANTS += [
    Variant("cc-80sec", "cuda-convnet's 26% CIFAR-10 net in 80 s: 3 convs (32-32-64), max/avg pools, fc64, fc10",
            _CC.format("80sec"), _CC_SAME + "32x32 inputs, as the file's cifar data provider gives.",
            {"net": "80sec"}, cuda_convnet.FAMILY),
    Variant("cc-18pct", "cuda-convnet's 18% CIFAR-10 net: cc-19pct with within-map response normalisation (rnorm)",
            _CC.format("18pct"), _CC_SAME + "32x32 inputs. rnorm normalises within one map (3x3), not across maps.",
            {"net": "18pct", "norm": "lrn"}, cuda_convnet.FAMILY),
    Variant("cc-19pct", "cuda-convnet's 19% CIFAR-10 net: the four-layer net (3 convs, fc10) of Figure 1",
            _CC.format("19pct"), _CC_SAME + "32x32 inputs. Figure 1's four-layer net: the paper names no file; this "
            "is the one whose four weight layers and no normalisation fit its description.",
            {"net": "19pct"}, cuda_convnet.FAMILY),
    Variant("cc-conv-local-11pct", "cuda-convnet's 11% CIFAR-10 net: 2 convs, cross-map LRN, 2 locally-connected",
            _CC.format("conv-local-11pct"), _CC_SAME + "24x24 inputs: the files' methodology trains on random 24x24 "
            "crops with flips (convdata.py's CroppedCIFARDataProvider) and tests on 10 views.",
            {"net": "conv-local-11pct", "norm": "lrn", "image_size": 24}, cuda_convnet.FAMILY),
    Variant("cc-conv-local-13pct", "cuda-convnet's 13% CIFAR-10 net: 2 convs, 2 locally-connected, no normalisation",
            _CC.format("conv-local-13pct"), _CC_SAME + "24x24 inputs, as cc-conv-local-11pct. Its local3 has 32 "
            "filters where the 11% net's has 64.",
            {"net": "conv-local-13pct", "image_size": 24}, cuda_convnet.FAMILY),
]
VARIANTS: dict[str, Variant] = {v.name: v for v in _VARIANTS}


def list_models(family: str | None = None) -> list[str]:
    """Registered variant names, in a stable order (the paper first); only `family`'s when given."""
    return [v.name for v in VARIANTS.values() if family in (None, v.family)]


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The variant's config with overrides of any field of its config class (None means: keep the variant's
    value)."""
    variant = get_variant(name)
    fields = {f.name for f in dataclasses.fields(CONFIG_CLASSES[variant.family])} - {"family"}
    # A switch of the other family left at None (a run's unset --pooling on a cuda-convnet net) is no error.
    anywhere = {f.name for cls in CONFIG_CLASSES.values() for f in dataclasses.fields(cls)}
    unknown = sorted(k for k, v in overrides.items() if k not in fields and (v is not None or k not in anywhere))
    if unknown:
        raise ConfigError(f"unknown model option(s) {', '.join(unknown)} for {name}; valid: {', '.join(sorted(fields))}")
    return variant.config(**{k: v for k, v in overrides.items() if v is not None})


def config_from_dict(d: Any) -> ModelConfig:
    """A checkpoint's model_args back into its config class: its `family` names the class (none: AlexNet's)."""
    family = d.get("family", "alexnet") if isinstance(d, dict) else "alexnet"
    if family not in CONFIG_CLASSES:
        raise ConfigError(f"unknown model family {str(family)[:40]!r}; known: {', '.join(CONFIG_CLASSES)}")
    return CONFIG_CLASSES[family].from_dict(d)


def count_parameters(cfg: ModelConfig) -> int:
    """Parameters of the model a config builds, by arithmetic (nothing is built)."""
    if isinstance(cfg, CudaConvnetConfig):
        return cuda_convnet.parameter_count(cfg)
    return parameter_count(cfg)
