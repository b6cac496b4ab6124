"""The AlexNet family: one configurable class, named variants in a registry, and torchvision weight import.

Every variant is the same `AlexNet` built from a different `AlexNetConfig` (an ablation is a switch, not a copy):

    model = build_model("alexnet-bn", num_classes=2)
    AlexNet(AlexNetConfig(**dataclasses.asdict(model.config)))   # the same architecture again

Layer names follow the paper: conv1..conv5, fc6..fc8 (fc8 is the classifier). The module layout follows
torchvision (`features`, `avgpool`, `classifier`, flat `nn.Sequential`s), so `alexnet-owt` has exactly the
state_dict keys of `torchvision.models.alexnet`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alexnet import checks as limits
from alexnet.config import ACTIVATIONS, INITS, NORMS, POOLINGS
from alexnet.errors import ConfigError, clip, short
from alexnet.models.lrn import ALPHA_CONVENTIONS, LocalResponseNorm
from alexnet.models.lrn import MAX_SIZE as MAX_LRN_SIZE

DROPOUT_POSITIONS = ("after", "before")
HEADS = ("flatten", "adaptive")
ADAPTIVE_SIZE = 6  # torchvision's AdaptiveAvgPool2d((6, 6)): the paper's 6x6 map after pool5
GROUPED_CONVS = ("conv2", "conv4", "conv5")  # the layers the paper splits across its two GPUs (section 3.2, Fig. 2)


@dataclass(frozen=True)
class AlexNetConfig:
    """Everything that defines an AlexNet architecture. The defaults are the 2012 paper (`alexnet`)."""

    name: str = "alexnet"  # registry name this config started from (informational: not used to build)
    in_channels: int = 3  # 3 for RGB, 1 for MNIST-like data
    num_classes: int = 1000  # fc8's outputs
    image_size: int = 227  # nominal square input side; fixes fc6's in_features when head == "flatten"
    width_mult: float = 1.0  # scales every conv's channels and fc6/fc7's width (0.125 for tests and CPU studies)
    channels: tuple[int, ...] = (96, 256, 384, 384, 256)  # conv1..conv5 output channels before width_mult
    fc_width: int = 4096  # fc6 and fc7 outputs before width_mult
    conv1_padding: int = 0  # 0 in the paper and the notes; 2 in torchvision (so that 224 gives 55)
    norm: str = "lrn"  # lrn: after conv1, conv2 (paper); bn: after every conv (the cats-vs-dogs note); none
    activation: str = "relu"  # relu (the paper's section 3.1) or tanh (its saturating baseline)
    pooling: str = "overlap"  # overlap: 3/2 (paper); plain: 2/2 (the paper's non-overlapping baseline)
    dropout: float = 0.5  # p of zeroing, on the inputs of fc7 and fc8 ("after") or of fc6 and fc7 ("before")
    dropout_position: str = "after"  # after fc6/fc7's ReLU (paper, d2l) or before fc6/fc7 (torchvision, the bn note)
    groups: int = 2  # groups of conv2, conv4, conv5: 2 = the paper's two GPU towers, 1 = one tower
    init: str = "paper"  # paper: N(0, 0.01), bias 1 on conv2/4/5, fc6/7; paper-bias0: every bias 0; default:
    # PyTorch's; kaiming: He et al.
    head: str = "flatten"  # flatten: fc6 takes the conv stack's map at image_size; adaptive: avg-pool to 6x6 first
    lrn_size: int = 5  # the paper's n: channels in each normalisation window
    lrn_k: float = 2.0  # the paper's k
    lrn_alpha: float = 1e-4  # the paper's alpha (a number; its convention is lrn_alpha_convention)
    lrn_beta: float = 0.75  # the paper's beta
    lrn_alpha_convention: str = "per_size"  # per_size: alpha / n (cuda-convnet, torch); literal: the printed formula

    def __post_init__(self) -> None:
        """Types, ranges and upper bounds of every field, then the size of what they describe, by arithmetic.

        The same checks guard `alexnet train` flags, a run YAML and a checkpoint's model_args: a width_mult of 1e6 or
        an image_size of 10**7 is refused here in microseconds, before a single tensor is allocated.
        """
        # Lists come back from YAML/JSON: accept them, store a tuple so the config stays hashable and comparable.
        if isinstance(self.channels, list):
            object.__setattr__(self, "channels", tuple(self.channels))
        for field, maximum in (("in_channels", limits.MAX_IN_CHANNELS), ("num_classes", limits.MAX_CLASSES),
                               ("image_size", limits.MAX_IMAGE_SIZE), ("fc_width", limits.MAX_WIDTH), ("groups", limits.MAX_WIDTH),
                               ("lrn_size", MAX_LRN_SIZE)):  # the LRN kernel's own bound
            _check_int(field, getattr(self, field), minimum=1, maximum=maximum)
        _check_int("conv1_padding", self.conv1_padding, minimum=0, maximum=limits.MAX_CONV1_PADDING)
        if not isinstance(self.channels, tuple) or len(self.channels) != 5:
            raise ConfigError(f"channels must be 5 ints (conv1..conv5), got {short(self.channels)}")
        for i, c in enumerate(self.channels, start=1):
            _check_int(f"channels[conv{i}]", c, minimum=1, maximum=limits.MAX_WIDTH)
        for field in ("width_mult", "dropout", "lrn_k", "lrn_alpha", "lrn_beta"):
            value = getattr(self, field)
            if isinstance(value, str) and field == "lrn_alpha" and value in ALPHA_CONVENTIONS:
                raise ConfigError(
                    f"lrn_alpha is the number alpha (the paper's 1e-4), got {value!r}: "
                    f"set lrn_alpha_convention={value!r} instead"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
                raise ConfigError(f"{field} must be a finite number, got {short(value)}")
            object.__setattr__(self, field, float(value))
        if not 0 < self.width_mult <= limits.MAX_WIDTH_MULT:
            raise ConfigError(f"width_mult must be > 0 and <= {limits.MAX_WIDTH_MULT:g}, got {self.width_mult}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lrn_alpha < 0 or self.lrn_k < 0 or self.lrn_beta < 0:
            raise ConfigError(f"lrn_k, lrn_alpha, lrn_beta must be >= 0, got {self.lrn_k}, {self.lrn_alpha}, {self.lrn_beta}")
        for field, choices in (
            ("norm", NORMS),
            ("activation", ACTIVATIONS),
            ("pooling", POOLINGS),
            ("dropout_position", DROPOUT_POSITIONS),
            ("init", INITS),
            ("head", HEADS),
            ("lrn_alpha_convention", ALPHA_CONVENTIONS),
        ):
            if not isinstance(getattr(self, field), str) or getattr(self, field) not in choices:
                raise ConfigError(f"{field} must be one of {', '.join(choices)}; got {short(getattr(self, field))}")
        if not isinstance(self.name, str) or not self.name or len(self.name) > limits.MAX_NAME:
            raise ConfigError(f"name must be a non-empty string of at most {limits.MAX_NAME} characters, got {short(self.name)}")
        for i, c in enumerate(self.conv_channels, start=1):
            if c % self.groups:
                raise ConfigError(
                    f"groups={self.groups} must divide every conv's channels; conv{i} has {c} "
                    f"(channels={self.channels}, width_mult={self.width_mult})"
                )
        if self.norm == "lrn":
            normalised = min(self.conv_channels[:2])  # LRN follows conv1 and conv2
            if self.lrn_size > normalised:
                raise ConfigError(
                    f"lrn_size={self.lrn_size} is larger than the {normalised} channels it normalises across "
                    f"(conv1, conv2 of {self.name} at width_mult={self.width_mult:g})"
                )
        smallest = min_input_size(self)
        if self.image_size < smallest:
            raise ConfigError(
                f"image_size={self.image_size} is too small for {self.name}: the smallest valid input is "
                f"{smallest}x{smallest}"
            )
        params = parameter_count(self)
        if params > limits.MAX_PARAMETERS:
            raise ConfigError(
                f"{self.name} at width_mult={self.width_mult:g}, image_size={self.image_size}, "
                f"num_classes={self.num_classes} would have {params:,} parameters (limit {limits.MAX_PARAMETERS:,}); "
                "lower width_mult, fc_width or image_size, or use head='adaptive'"
            )
        activation = largest_activation(self)
        if activation > limits.MAX_ACTIVATION:
            raise ConfigError(
                f"{self.name} at width_mult={self.width_mult:g}, image_size={self.image_size} would need "
                f"{activation:,} values for one image's largest feature map (limit {limits.MAX_ACTIVATION:,}); "
                "lower image_size or width_mult"
            )

    @property
    def conv_channels(self) -> tuple[int, ...]:
        """conv1..conv5 output channels after width_mult, rounded to a multiple of groups (as given at 1.0)."""
        g = self.groups
        if self.width_mult == 1.0:
            return self.channels  # explicit widths are never changed behind the user's back; checked in validation
        return tuple(max(g, round(c * self.width_mult / g) * g) for c in self.channels)

    @property
    def fc_features(self) -> int:
        """fc6 and fc7 widths after width_mult."""
        return max(1, round(self.fc_width * self.width_mult))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlexNetConfig:
        """Rebuild from `dataclasses.asdict` output (a checkpoint, YAML, JSON); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be a mapping of fields, got {short(d)}")
        unknown = sorted((str(k) for k in d if k not in known), key=str)
        if unknown:
            raise ConfigError(f"unknown model config field(s) {clip(', '.join(unknown))}; "
                              f"valid fields: {', '.join(sorted(known))}")
        return cls(**d)


def _check_int(field: str, value: Any, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be an int, got {short(value)}")
    if value < minimum:
        raise ConfigError(f"{field} must be >= {minimum}, got {short(value)}")
    if value > maximum:
        raise ConfigError(f"{field} must be <= {maximum:,}, got {short(value)}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def parameter_count(cfg: AlexNetConfig) -> int:
    """Parameters of `AlexNet(cfg)`, by arithmetic (nothing is built): the bound that validation checks."""
    total, c_in = 0, cfg.in_channels
    windows = {w.name: w for w in feature_windows(cfg)}
    for i, c_out in enumerate(cfg.conv_channels, start=1):
        k = windows[f"conv{i}"].kernel
        groups = cfg.groups if f"conv{i}" in GROUPED_CONVS else 1
        total += c_out * (c_in // groups) * k * k + c_out  # weight + bias
        if cfg.norm == "bn":
            total += 2 * c_out  # BatchNorm's weight and bias (its running statistics are buffers)
        c_in = c_out
    head_map = ADAPTIVE_SIZE if cfg.head == "adaptive" else feature_size(cfg, cfg.image_size)
    width = cfg.fc_features
    fc_in = c_in * head_map * head_map
    return total + (fc_in + 1) * width + (width + 1) * width + (width + 1) * cfg.num_classes


def largest_activation(cfg: AlexNetConfig) -> int:
    """Values in the largest feature map of one image (the input included), by arithmetic."""
    size, channels, largest = cfg.image_size, cfg.in_channels, cfg.in_channels * cfg.image_size ** 2
    conv = iter(cfg.conv_channels)
    for w in feature_windows(cfg):
        size = out_size(size, w.kernel, w.stride, w.padding)
        if w.name.startswith("conv"):
            channels = next(conv)
        largest = max(largest, channels * size * size)
    return max(largest, cfg.fc_features, cfg.num_classes)


# --- layer arithmetic ------------------------------------------------------------------------------------------


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


def min_input_size(cfg: AlexNetConfig, ceil: bool = False) -> int:
    """Smallest square input for which every layer of the conv stack gets a non-empty map."""
    size = 1
    while feature_size(cfg, size, ceil) < 1:  # monotone in size; stops well below 200 for every layout here
        size += 1
    return size


# --- the model ---------------------------------------------------------------------------------------------------


class AlexNet(nn.Module):
    """AlexNet with switches: features (conv stack) -> avgpool -> flatten -> classifier (fc6, fc7, fc8)."""

    def __init__(self, config: AlexNetConfig | dict[str, Any] | None = None) -> None:
        """Build from a config (default: the paper), or from its `dataclasses.asdict` form."""
        super().__init__()
        cfg = config if config is not None else AlexNetConfig()
        if isinstance(cfg, dict):
            cfg = AlexNetConfig.from_dict(cfg)
        self.config = cfg
        self.min_input_size = min_input_size(cfg)
        names: list[str] = []  # paper names of the modules, in forward order

        features: list[nn.Module] = []
        c_in = cfg.in_channels
        windows = {w.name: w for w in feature_windows(cfg)}
        for i, c_out in enumerate(cfg.conv_channels, start=1):
            w = windows[f"conv{i}"]
            groups = cfg.groups if f"conv{i}" in GROUPED_CONVS else 1
            features.append(nn.Conv2d(c_in, c_out, w.kernel, w.stride, w.padding, groups=groups))
            names.append(f"conv{i}")
            if cfg.norm == "bn":
                features.append(nn.BatchNorm2d(c_out))
                names.append(f"bn{i}")
            features.append(_activation(cfg.activation))
            names.append(f"{cfg.activation}{i}")
            if cfg.norm == "lrn" and i in (1, 2):  # section 3.3: after the ReLU of conv1 and conv2
                features.append(
                    LocalResponseNorm(cfg.lrn_size, cfg.lrn_alpha, cfg.lrn_beta, cfg.lrn_k, cfg.lrn_alpha_convention)
                )
                names.append(f"lrn{i}")
            if f"pool{i}" in windows:  # section 3.4: after both LRN layers and after conv5
                p = windows[f"pool{i}"]
                features.append(nn.MaxPool2d(p.kernel, p.stride))
                names.append(f"pool{i}")
            c_in = c_out
        self.features = nn.Sequential(*features)

        if cfg.head == "adaptive":
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((ADAPTIVE_SIZE, ADAPTIVE_SIZE))
            self.head_map = ADAPTIVE_SIZE
        else:
            self.avgpool = nn.Identity()  # fc6 sees the conv stack's map as it is, as in the notes
            self.head_map = feature_size(cfg, cfg.image_size)
        self.flatten = nn.Flatten(1)
        names += ["avgpool", "flatten"]

        fc_in = c_in * self.head_map * self.head_map  # 256 * 6 * 6 = 9216 in the paper
        width, p = cfg.fc_features, cfg.dropout
        classifier: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(((fc_in, width), (width, width)), start=6):
            # Dropout modules stay even at p=0 so that state_dict keys do not move with the switch.
            if cfg.dropout_position == "before":
                classifier.append(nn.Dropout(p))
                names.append(f"drop{i}")
            classifier += [nn.Linear(n_in, n_out), _activation(cfg.activation)]
            names += [f"fc{i}", f"{cfg.activation}{i}"]
            if cfg.dropout_position == "after":
                classifier.append(nn.Dropout(p))
                names.append(f"drop{i}")
        classifier.append(nn.Linear(width, cfg.num_classes))
        names.append("fc8")
        self.classifier = nn.Sequential(*classifier)

        modules = [*self.features, self.avgpool, self.flatten, *self.classifier]
        self._layer_names = names
        self._layers = dict(zip(names, modules, strict=True))  # plain dict: not registered twice as submodules
        _init_weights(self, cfg)

    @property
    def conv1(self) -> nn.Conv2d:
        """The first convolution (its 96 filters are the paper's Figure 3)."""
        return self.features[0]

    def named_layers(self) -> Iterator[tuple[str, nn.Module]]:
        """(paper name, module) for every layer, in forward order: conv1, lrn1, pool1, ..., fc8."""
        for name in self._layer_names:
            if name == "avgpool" and isinstance(self.avgpool, nn.Identity):
                continue
            yield name, self._layers[name]

    def layer(self, name: str) -> nn.Module:
        """The module with this paper name (conv1, fc6, ...)."""
        if name not in self._layers:
            raise ConfigError(f"no layer {name!r} in {self.config.name}; layers: {', '.join(self._layer_names)}")
        return self._layers[name]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ConfigError for an input this model cannot take, naming what it can take."""
        if x.dim() != 4:
            raise ConfigError(f"{self.config.name} expects a batch shaped (B, C, H, W), got {tuple(x.shape)}")
        c, h, w = x.shape[1:]
        if c != self.config.in_channels:
            raise ConfigError(
                f"{self.config.name} was built for {self.config.in_channels} input channel(s), got {c}: "
                f"convert the images (grayscale <-> RGB) or build with in_channels={c}"
            )
        if h < self.min_input_size or w < self.min_input_size:
            m = self.min_input_size
            raise ConfigError(f"input {h}x{w} is too small for {self.config.name}: the smallest valid input is {m}x{m}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 3, 227, 227) -> (B, 256, 6, 6) in the paper

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(x)  # (B, 256, 6, 6)
        if x.shape[-1] != self.head_map or x.shape[-2] != self.head_map:
            raise ConfigError(
                f"{self.config.name} has head='flatten' built for {self.config.image_size}x{self.config.image_size} "
                f"inputs (fc6 takes a {self.head_map}x{self.head_map} map); this input gives "
                f"{x.shape[-2]}x{x.shape[-1]}: build it with image_size=<your size>, or head='adaptive'"
            )
        return self.classifier(self.flatten(x))  # (B, 9216) -> (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))


def _activation(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else nn.Tanh()


@torch.no_grad()
def _init_weights(model: AlexNet, cfg: AlexNetConfig) -> None:
    if cfg.init == "default":
        return  # PyTorch's own (Kaiming-uniform with a=sqrt(5)), as torchvision and the notes use
    if next(model.parameters()).is_meta:
        return  # shapes only (alexnet summary): normal_ on meta tensors would import torch._dynamo, ~2 s, for nothing
    for name, m in model.named_layers():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        if cfg.init in ("paper", "paper-bias0"):
            # Section 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fc layers (to give
            # the ReLUs positive inputs early on), 0 elsewhere. paper-bias0 keeps the weights and zeroes every bias:
            # the ablation of that claim ("accelerates the early stages of learning").
            nn.init.normal_(m.weight, 0.0, 0.01)
            one = cfg.init == "paper" and name in ("conv2", "conv4", "conv5", "fc6", "fc7")
            nn.init.constant_(m.bias, 1.0 if one else 0.0)
        else:  # kaiming, as torchvision's VGG: He-normal convs (fan_out), N(0, 0.01) linears, zero biases
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=cfg.activation)
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


# --- the registry --------------------------------------------------------------------------------------------------


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
        "(see `alexnet summary alexnet --input-size 224 --ceil`). The two GPU towers run on one device as "
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


def build_model(name: str, **overrides: Any) -> AlexNet:
    """A freshly initialised variant: `build_model("alexnet-bn", num_classes=2, width_mult=0.25)`."""
    return AlexNet(model_config(name, **overrides))


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_variants() -> list[dict[str, Any]]:
    """One dict per registered variant, for `alexnet models`: name, parameters, input, classes, source, deviations."""
    rows = []
    for v in VARIANTS.values():
        cfg = v.config()
        with torch.device("meta"):  # parameter counts without allocating 60M floats each
            params = num_params(AlexNet(cfg))
        rows.append({
            "name": v.name,
            "params": params,
            "input": [cfg.in_channels, cfg.image_size, cfg.image_size],
            "num_classes": cfg.num_classes,
            "summary": v.summary,
            "source": v.source,
            "deviations": v.deviations,
        })
    return rows
