"""AlexNetConfig: everything that defines an AlexNet architecture, checked on construction, and what it costs by
arithmetic (parameters, the largest feature map) before anything is built. The defaults are the 2012 paper.

No torch import: the CLI and the registry read configs before torch is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from alexnet import checks
from alexnet.config import ACTIVATIONS, INITS, NORMS, POOLINGS
from alexnet.errors import ConfigError, clip, short
from alexnet.models.shapes import ADAPTIVE_SIZE, GROUPED_CONVS, feature_size, feature_windows, min_input_size, out_size

ALPHA_CONVENTIONS = ("per_size", "literal")  # LRN alpha: divided by n (cuda-convnet, torch), or as printed
# The widest window accepted. A window wider than a layer's channels sums all of them (the paper's max/min bounds),
# so n matters beyond that only through alpha / n; 4096 is ten times the widest layer of the paper's model. The
# bound keeps the window a C int for the native kernel and keeps an absurd n from reaching any kernel at all.
MAX_LRN_SIZE = 4096
DROPOUT_POSITIONS = ("after", "before")
HEADS = ("flatten", "adaptive")

_F = checks.Fields(ConfigError)  # the checks every config uses: "field 'width_mult' must be ..., got ..."


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
    # PyTorch's; kaiming: He et al. (fan_out convs); paper-he: N(0, 0.01) conv1/fc8, He fan_in between
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
        self._check_fields()
        self._check_arithmetic()

    def _check_fields(self) -> None:
        for field, maximum in (("in_channels", checks.MAX_IN_CHANNELS), ("num_classes", checks.MAX_CLASSES),
                               ("image_size", checks.MAX_IMAGE_SIZE), ("fc_width", checks.MAX_WIDTH),
                               ("groups", checks.MAX_WIDTH), ("lrn_size", MAX_LRN_SIZE)):  # the LRN kernel's bound
            _F.integer(getattr(self, field), field, 1, maximum)
        _F.integer(self.conv1_padding, "conv1_padding", 0, checks.MAX_CONV1_PADDING)
        for i, c in enumerate(_F.items(self.channels, "channels", 5, 5), start=1):  # conv1..conv5
            _F.integer(c, f"channels[conv{i}]", 1, checks.MAX_WIDTH)
        if isinstance(self.lrn_alpha, str) and self.lrn_alpha in ALPHA_CONVENTIONS:
            raise ConfigError(f"lrn_alpha is the number alpha (the paper's 1e-4), got {self.lrn_alpha!r}: "
                              f"set lrn_alpha_convention={self.lrn_alpha!r} instead")
        numbers = {
            "width_mult": _F.number(self.width_mult, "width_mult", 0, checks.MAX_WIDTH_MULT, lo_open=True),
            "dropout": _F.number(self.dropout, "dropout", 0, 1, hi_open=True),
            **{field: _F.number(getattr(self, field), field, 0) for field in ("lrn_k", "lrn_alpha", "lrn_beta")},
        }
        for field, value in numbers.items():
            object.__setattr__(self, field, value)
        for field, choices in (("norm", NORMS), ("activation", ACTIVATIONS), ("pooling", POOLINGS),
                               ("dropout_position", DROPOUT_POSITIONS), ("init", INITS), ("head", HEADS),
                               ("lrn_alpha_convention", ALPHA_CONVENTIONS)):
            _F.text(getattr(self, field), field, choices=choices)
        _F.text(self.name, "name", checks.MAX_NAME)

    def _check_arithmetic(self) -> None:
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
        if params > checks.MAX_PARAMETERS:
            raise ConfigError(
                f"{self.name} at width_mult={self.width_mult:g}, image_size={self.image_size}, "
                f"num_classes={self.num_classes} would have {params:,} parameters (limit {checks.MAX_PARAMETERS:,}); "
                "lower width_mult, fc_width or image_size, or use head='adaptive'"
            )
        activation = largest_activation(self)
        if activation > checks.MAX_ACTIVATION:
            raise ConfigError(
                f"{self.name} at width_mult={self.width_mult:g}, image_size={self.image_size} would need "
                f"{activation:,} values for one image's largest feature map (limit {checks.MAX_ACTIVATION:,}); "
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
        return config_from_fields(cls, d)


def config_from_fields(cls: type, d: Any) -> Any:
    """A model config dataclass from a mapping of its fields (every model family's `from_dict`); a mapping that
    is not one, or a key the class lacks, is a ConfigError naming the valid fields."""
    known = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, dict):
        raise ConfigError(f"model config must be a mapping of fields, got {short(d)}")
    unknown = sorted((str(k) for k in d if k not in known), key=str)
    if unknown:
        raise ConfigError(f"unknown model config field(s) {clip(', '.join(unknown))}; "
                          f"valid fields: {', '.join(sorted(known))}")
    return cls(**d)


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
