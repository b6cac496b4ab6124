"""The AlexNet family: one configurable class (`AlexNet`), built from an `AlexNetConfig` (models/architecture.py).

Every variant is the same `AlexNet` built from a different `AlexNetConfig` (an ablation is a switch, not a copy):

    model = build_model("alexnet-bn", num_classes=2)
    AlexNet(AlexNetConfig(**dataclasses.asdict(model.config)))   # the same architecture again

Layer names follow the paper: conv1..conv5, fc6..fc8 (fc8 is the classifier). The module layout follows
torchvision (`features`, `avgpool`, `classifier`, flat `nn.Sequential`s), so `alexnet-owt` has exactly the
state_dict keys of `torchvision.models.alexnet`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from alexnet.errors import ConfigError
from alexnet.models.architecture import AlexNetConfig
from alexnet.models.cuda_convnet import CudaConvnetConfig
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.named import NamedLayers
from alexnet.models.registry import VARIANTS, config_from_dict, model_config
from alexnet.models.shapes import ADAPTIVE_SIZE, GROUPED_CONVS, feature_size, feature_windows, min_input_size


class AlexNet(NamedLayers):
    """AlexNet with switches: features (conv stack) -> avgpool -> flatten -> classifier (fc6, fc7, fc8)."""

    def __init__(self, config: AlexNetConfig | dict[str, Any] | None = None) -> None:
        """Build from a config (default: the paper), or from its `dataclasses.asdict` form."""
        super().__init__()
        cfg = config if config is not None else AlexNetConfig()
        if isinstance(cfg, dict):
            cfg = AlexNetConfig.from_dict(cfg)
        self.config = cfg
        self.min_input_size = min_input_size(cfg)
        features = _conv_stack(cfg)
        self.features = nn.Sequential(*(m for _, m in features))
        if cfg.head == "adaptive":
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((ADAPTIVE_SIZE, ADAPTIVE_SIZE))
            self.head_map = ADAPTIVE_SIZE
        else:
            self.avgpool = nn.Identity()  # fc6 sees the conv stack's map as it is, as in the notes
            self.head_map = feature_size(cfg, cfg.image_size)
        self.flatten = nn.Flatten(1)
        fc_in = cfg.conv_channels[-1] * self.head_map * self.head_map  # 256 * 6 * 6 = 9216 in the paper
        classifier = _classifier(cfg, fc_in)
        self.classifier = nn.Sequential(*(m for _, m in classifier))
        layers = [*features, ("avgpool", self.avgpool), ("flatten", self.flatten), *classifier]
        self._layer_names = [name for name, _ in layers]  # the paper's names, in forward order
        self._layers = dict(layers)  # plain dict: not registered twice as submodules
        self.head_name = "fc8"  # the layer a new class count replaces
        self.feature_name = "fc7"  # the paper's 4096-dimensional last hidden layer (section 6.1)
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

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ConfigError for an input this model cannot take, naming what it can take."""
        h, w = self.batch_side(x)
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


def _conv_stack(cfg: AlexNetConfig) -> list[tuple[str, nn.Module]]:
    """conv1 ... pool5 with the paper's names: (B, 3, 227, 227) -> (B, 256, 6, 6) in the paper."""
    layers: list[tuple[str, nn.Module]] = []
    c_in = cfg.in_channels
    windows = {w.name: w for w in feature_windows(cfg)}
    for i, c_out in enumerate(cfg.conv_channels, start=1):
        w = windows[f"conv{i}"]
        groups = cfg.groups if f"conv{i}" in GROUPED_CONVS else 1
        layers.append((f"conv{i}", nn.Conv2d(c_in, c_out, w.kernel, w.stride, w.padding, groups=groups)))
        if cfg.norm == "bn":
            layers.append((f"bn{i}", nn.BatchNorm2d(c_out)))
        layers.append((f"{cfg.activation}{i}", _activation(cfg.activation)))
        if cfg.norm == "lrn" and i in (1, 2):  # section 3.3: after the ReLU of conv1 and conv2
            lrn = LocalResponseNorm(cfg.lrn_size, cfg.lrn_alpha, cfg.lrn_beta, cfg.lrn_k, cfg.lrn_alpha_convention)
            layers.append((f"lrn{i}", lrn))
        if f"pool{i}" in windows:  # section 3.4: after both LRN layers and after conv5
            p = windows[f"pool{i}"]
            layers.append((f"pool{i}", nn.MaxPool2d(p.kernel, p.stride)))
        c_in = c_out
    return layers


def _classifier(cfg: AlexNetConfig, fc_in: int) -> list[tuple[str, nn.Module]]:
    """fc6, fc7 (each with its activation and dropout) and fc8, with the paper's names."""
    layers: list[tuple[str, nn.Module]] = []
    width, p = cfg.fc_features, cfg.dropout
    for i, (n_in, n_out) in enumerate(((fc_in, width), (width, width)), start=6):
        # Dropout modules stay even at p=0 so that state_dict keys do not move with the switch.
        if cfg.dropout_position == "before":
            layers.append((f"drop{i}", nn.Dropout(p)))
        layers += [(f"fc{i}", nn.Linear(n_in, n_out)), (f"{cfg.activation}{i}", _activation(cfg.activation))]
        if cfg.dropout_position == "after":
            layers.append((f"drop{i}", nn.Dropout(p)))
    layers.append(("fc8", nn.Linear(width, cfg.num_classes)))
    return layers


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
        elif cfg.init == "paper-he":
            # The paper's N(0, 0.01) in conv1 and fc8, He-normal from the layer's fan_in (He et al. 2015) between
            # them, every bias 0. With N(0, 0.01) everywhere (or torchvision's fan_out form, or PyTorch's default)
            # each layer shrinks the signal until, without BatchNorm, the logits barely depend on the image and the
            # net stays at chance (benchmarks/init_signal.py); He's fan_in keeps its scale from conv2 to fc7. conv1
            # keeps the paper's small weights so that what its filters learn is not buried in init noise (Figure
            # 3), and fc8's make the first loss ln(classes).
            if name in ("conv1", model.head_name):
                nn.init.normal_(m.weight, 0.0, 0.01)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=cfg.activation)
            nn.init.zeros_(m.bias)
        else:  # kaiming, as torchvision's VGG: He-normal convs (fan_out), N(0, 0.01) linears, zero biases
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity=cfg.activation)
            else:
                nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def build_model(name: str, **overrides: Any) -> nn.Module:
    """A freshly initialised variant: `build_model("alexnet-bn", num_classes=2, width_mult=0.25)`."""
    return build_from_config(model_config(name, **overrides))


def build_from_config(cfg: Any) -> nn.Module:
    """The model a config describes: an `AlexNet`, or a `CudaConvNet` for a CudaConvnetConfig (or their dict form,
    a checkpoint's model_args)."""
    if isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    if isinstance(cfg, CudaConvnetConfig):
        from alexnet.models.cuda_convnet_model import CudaConvNet

        return CudaConvNet(cfg)
    return AlexNet(cfg)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_variants() -> list[dict[str, Any]]:
    """One dict per registered variant, for `alexnet models`: name, parameters, input, classes, source, deviations."""
    rows = []
    for v in VARIANTS.values():
        cfg = v.config()
        with torch.device("meta"):  # parameter counts without allocating 60M floats each
            params = num_params(build_from_config(cfg))
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
