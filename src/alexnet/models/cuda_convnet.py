"""The authors' CIFAR-10 networks, as cuda-convnet shipped them (`example-layers/layers-*.cfg` and
`layer-params-*.cfg`), transcribed layer by layer: the networks behind the paper's section 3.1 (Figure 1) and
section 3.3 (13% vs 11% test error on CIFAR-10), and the 2011 timings (26% in 80 seconds, 18% in 20 minutes).

Each layer keeps the file's name, kind, filter count, filter size, padding, stride, the file's `neuron=relu` (the
activation switch here: relu or tanh), the Gaussian std of its weights (`initW`) and its weight decay (`wc`).
cuda-convnet's arithmetic, reproduced by the module (models/cuda_convnet_model.py):
- pooling rounds up: outputsX = ceil((size - sizeX) / stride) + 1, and an average divides by the window's pixels
  inside the image (PyTorch's ceil_mode=True with no padding);
- `rnorm` normalises within one map over a size x size window: x / (1 + scale/size^2 * sum x^2)^pow; `cmrnorm`
  across `size` adjacent maps: x / (1 + scale/size * sum x^2)^pow (layer.py divides `scale` that way);
- a `local` layer has its own weights and biases at every output position (layer.py: modules * filters biases);
- conv biases are shared (sharedBiases=1); every bias starts at 0 (initB's default).

No torch import: the registry and the CLI read these before torch is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from alexnet import checks
from alexnet.config import ACTIVATIONS, NORMS
from alexnet.errors import ConfigError
from alexnet.models.architecture import config_from_fields

FAMILY = "cuda-convnet"
CC_INITS = ("paper", "default", "kaiming")  # paper: the authors' own, N(0, initW^2) weights and zero biases
FILTER_KINDS = ("conv", "local")  # layers with filters over a window: they set the channels, BatchNorm follows them
POOL_KINDS = ("maxpool", "avgpool")
NORM_KINDS = ("rnorm", "cmrnorm")
KINDS = (*FILTER_KINDS, *POOL_KINDS, *NORM_KINDS, "fc")


@dataclass(frozen=True)
class Layer:
    """One section of a layers-*.cfg file, with its layer-params-*.cfg numbers."""

    name: str  # the file's section name: conv1, pool1, rnorm1, local3, fc64, ...
    kind: str  # KINDS
    filters: int = 0  # conv/local filters, fc outputs (0: the layer keeps its input's channels)
    size: int = 0  # filterSize of conv/local, sizeX of pool, size of rnorm/cmrnorm
    stride: int = 1
    padding: int = 0
    neuron: bool = False  # the file's neuron=relu on this layer (applied after it)
    init_w: float = 0.0  # initW: the std of the weights' Gaussian
    wc: float = 0.0  # layer-params: weight decay of the weights (biases have none)
    scale: float = 0.0  # rnorm/cmrnorm: the file's scale (divided by size^2 or size when applied)
    pow: float = 0.0  # rnorm/cmrnorm: the exponent


def _conv(name, filters, init_w, wc, neuron=True, size=5, padding=2):
    return Layer(name, "conv", filters, size, 1, padding, neuron, init_w, wc)


def _pool(name, kind, neuron=False):
    return Layer(name, kind, size=3, stride=2, neuron=neuron)


# conv1 of every net has initW=0.0001 and, in 80sec/18pct/19pct, no neuron: pool1 (max) carries the relu.
_NET_18 = (
    _conv("conv1", 32, 1e-4, 0.004, neuron=False), _pool("pool1", "maxpool", neuron=True),
    Layer("rnorm1", "rnorm", size=3, scale=5e-5, pow=0.75),
    _conv("conv2", 32, 0.01, 0.004), _pool("pool2", "avgpool"),
    Layer("rnorm2", "rnorm", size=3, scale=5e-5, pow=0.75),
    _conv("conv3", 64, 0.01, 0.004), _pool("pool3", "avgpool"),
)
NETS: dict[str, tuple[Layer, ...]] = {
    "80sec": (*(x for x in _NET_18 if x.kind != "rnorm"),
              Layer("fc64", "fc", 64, neuron=True, init_w=0.1, wc=0.03), Layer("fc10", "fc", 10, init_w=0.1, wc=0.03)),
    "18pct": (*_NET_18, Layer("fc10", "fc", 10, init_w=0.01, wc=1.0)),
    "19pct": (*(x for x in _NET_18 if x.kind != "rnorm"), Layer("fc10", "fc", 10, init_w=0.01, wc=3.0)),
    "conv-local-11pct": (
        _conv("conv1", 64, 1e-4, 0.0), _pool("pool1", "maxpool"),
        Layer("rnorm1", "cmrnorm", size=9, scale=0.001, pow=0.75),
        _conv("conv2", 64, 0.01, 0.0), Layer("rnorm2", "cmrnorm", size=9, scale=0.001, pow=0.75),
        _pool("pool2", "maxpool"),
        Layer("local3", "local", 64, 3, 1, 1, True, 0.04, 0.004), Layer("local4", "local", 32, 3, 1, 1, True, 0.04, 0.004),
        Layer("fc10", "fc", 10, init_w=0.01, wc=0.01)),
    "conv-local-13pct": (
        _conv("conv1", 64, 1e-4, 0.0), _pool("pool1", "maxpool"),
        _conv("conv2", 64, 0.01, 0.0), _pool("pool2", "maxpool"),
        Layer("local3", "local", 32, 3, 1, 1, True, 0.04, 0.004), Layer("local4", "local", 32, 3, 1, 1, True, 0.04, 0.004),
        Layer("fc10", "fc", 10, init_w=0.01, wc=0.004)),
}
# The files' learning rates, the same for every layer: epsW for weights, epsB for biases, momentum 0.9, batches of
# 128 (convnet.py's default). cuda-convnet scales eps by 1/batch and adds -wc*eps*W: SGD on the mean loss with
# lr=eps, momentum, weight_decay=wc.
EPS_W, EPS_B, MOMENTUM, BATCH = 0.001, 0.002, 0.9, 128

_F = checks.Fields(ConfigError)


def out_side(layer: Layer, side: int) -> int:
    """The layer's output side for an input side, with cuda-convnet's rounding (pools round up)."""
    if layer.kind in FILTER_KINDS:
        return (side + 2 * layer.padding - layer.size) // layer.stride + 1
    if layer.kind in POOL_KINDS:
        return math.ceil((side - layer.size) / layer.stride) + 1 if side >= layer.size else 0
    return side


@dataclass(frozen=True)
class CudaConvnetConfig:
    """One of NETS with the switches the studies need. The defaults are the file's (`net`)."""

    family: str = FAMILY  # tells a checkpoint's model_args from an AlexNetConfig's
    name: str = "cc-80sec"  # the registry name this config started from (informational)
    net: str = "80sec"  # a key of NETS: which layers-*.cfg
    in_channels: int = 3
    num_classes: int = 10  # fc10's outputs
    image_size: int = 32  # the input side: fc and local layers are built for it (24: the files' 24x24 crops)
    width_mult: float = 1.0  # scales every conv/local layer's filters and the hidden fc64
    activation: str = "relu"  # what the file's neuron=relu becomes (tanh: Figure 1's dashed line)
    norm: str = "none"  # lrn: the file's rnorm/cmrnorm layers; none: without them; bn: BatchNorm after conv/local
    init: str = "paper"  # CC_INITS (the names of config.INITS; paper-bias0 has no meaning here)

    def __post_init__(self) -> None:
        _F.text(self.family, "family", choices=(FAMILY,))
        _F.text(self.name, "name", checks.MAX_NAME)
        _F.text(self.net, "net", choices=tuple(NETS))
        _F.integer(self.in_channels, "in_channels", 1, checks.MAX_IN_CHANNELS)
        _F.integer(self.num_classes, "num_classes", 1, checks.MAX_CLASSES)
        _F.integer(self.image_size, "image_size", 1, checks.MAX_IMAGE_SIZE)
        object.__setattr__(self, "width_mult",
                           _F.number(self.width_mult, "width_mult", 0, checks.MAX_WIDTH_MULT, lo_open=True))
        for field, choices in (("activation", ACTIVATIONS), ("norm", NORMS), ("init", CC_INITS)):
            _F.text(getattr(self, field), field, choices=choices)
        if self.norm == "lrn" and not any(x.kind in NORM_KINDS for x in NETS[self.net]):
            raise ConfigError(f"{self.name}: layers-{self.net}.cfg has no response normalisation, so norm='lrn' "
                              "has nothing to switch on (the nets with it: cc-18pct, cc-conv-local-11pct)")
        self._check_arithmetic()

    def _check_arithmetic(self) -> None:
        smallest = min_input_size(self.net)
        if self.image_size < smallest:
            raise ConfigError(f"image_size={self.image_size} is too small for {self.name}: the smallest valid input "
                              f"is {smallest}x{smallest}")
        params = parameter_count(self)
        if params > checks.MAX_PARAMETERS:
            raise ConfigError(f"{self.name} at width_mult={self.width_mult:g}, image_size={self.image_size} would "
                              f"have {params:,} parameters (limit {checks.MAX_PARAMETERS:,}): lower either")

    def layers(self) -> list[Layer]:
        """The net's layers after the switches: widths scaled, norm layers kept or dropped, fc10 sized."""
        out = []
        last_fc = [x.name for x in NETS[self.net] if x.kind == "fc"][-1]
        for x in NETS[self.net]:
            if x.kind in NORM_KINDS and self.norm != "lrn":
                continue
            if x.name == last_fc:
                x = dataclasses.replace(x, filters=self.num_classes)
            elif x.filters and self.width_mult != 1.0:
                x = dataclasses.replace(x, filters=max(1, round(x.filters * self.width_mult)))
            out.append(x)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CudaConvnetConfig:
        """Rebuild from `dataclasses.asdict` output (a checkpoint); unknown keys are an error."""
        return config_from_fields(cls, d)


def min_input_size(net: str) -> int:
    """The smallest input side every layer of `net` can take (each spatial layer keeps at least 1x1)."""
    for side in range(1, 4097):
        s = side
        for x in NETS[net]:
            s = out_side(x, s)
            if s < 1:
                break
        else:
            return side
    raise ConfigError(f"layers-{net}.cfg takes no input up to 4096 pixels")  # no net of NETS: a guard for edits


def parameter_count(cfg: CudaConvnetConfig) -> int:
    """Parameters of the net by arithmetic (nothing is built): weights, biases (one per position in a local layer)
    and BatchNorm's two per channel."""
    total, channels, side = 0, cfg.in_channels, cfg.image_size
    for x in cfg.layers():
        if x.kind == "fc":
            fan_in = channels * side * side
            total += fan_in * x.filters + x.filters
            channels, side = x.filters, 1
            continue
        out = out_side(x, side)
        if x.kind == "conv":
            total += x.filters * channels * x.size ** 2 + x.filters
        elif x.kind == "local":
            total += out * out * (x.filters * channels * x.size ** 2 + x.filters)
        if x.kind in FILTER_KINDS:
            channels = x.filters
            total += 2 * channels if cfg.norm == "bn" else 0
        side = out
    return total
