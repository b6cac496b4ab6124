"""Fine-tuning: start from weights made elsewhere (`--init-from`), keep the first layers fixed (`--freeze`, then
unfreeze after `--freeze-epochs`), and let the backbone learn slower than the head (`--backbone-lr-mult`): what
timm's `--pretrained --num-classes` and fastai's `fine_tune` give, for AlexNet.

Sources of weights, each an untrusted file read without unpickling code:
- one of our checkpoints, or a run folder (its best.pt);
- an `alexnet export` folder (config.json + model.safetensors);
- a torchvision AlexNet state_dict file (.pth), into `alexnet-owt` (conv1 summed over RGB for `--in-channels 1`);
- `torchvision`: torchvision's ImageNet weights, read from torch.hub's cache (downloaded there where the internet is
  reachable; elsewhere the message says where to put the file).

Only fc8 may differ from the source (a different class count: a fresh fc8 is trained, and the log says so); any
other layer that does not fit is refused by name. The source's input size and preset are used unless the run sets
its own (`resolve_preprocessing`), and the run records them like any other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet.config import INIT_TORCHVISION, TrainConfig
from alexnet.errors import CheckpointError, ConfigError, plural
from alexnet.export import load_hub
from alexnet.models.pretrained import load_torchvision_weights
from alexnet.store.checkpoint import checkpoint_if_any, load_checkpoint

TORCHVISION_SIZE, TORCHVISION_PRESET = 224, "seed"  # what torchvision's weights were trained with (ImageNet mean/std)


@dataclass
class InitialWeights:
    """Weights to start a run from, with what their source says about its inputs."""

    source: str  # as given, for messages
    state: dict[str, torch.Tensor] | None  # the state_dict (None: a torchvision file, loaded by pretrained.py)
    torchvision_file: Path | None  # a torchvision state_dict file
    image_size: int | None  # the source's input size (None: unknown)
    preset: str | None  # the source's transform preset (None: unknown)


def read_initial_weights(source: str) -> InitialWeights:
    """Find and read `--init-from SRC` (see the module docstring for what SRC may be)."""
    if source == INIT_TORCHVISION:
        return InitialWeights(source, None, torchvision_cache_file(), TORCHVISION_SIZE, TORCHVISION_PRESET)
    path = Path(source)
    if not path.exists():
        raise ConfigError(f"field 'model.init_from': {source}: no such file or folder (give a checkpoint, a run "
                          f"folder, an `alexnet export` folder, a torchvision AlexNet .pth, or {INIT_TORCHVISION})")
    if path.is_dir() and (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        model, config = load_hub(path)
        pre = config.get("preprocessing") or {}
        return InitialWeights(source, model.state_dict(), None, _int_or_none(pre.get("image_size")),
                              pre.get("preset") if isinstance(pre.get("preset"), str) else None)
    ckpt = load_checkpoint(path, prefer="best") if path.is_dir() else checkpoint_if_any(path)
    if ckpt is not None:
        return InitialWeights(ckpt.path, ckpt.weights, None, ckpt.preprocessing.image_size, ckpt.preprocessing.preset)
    return InitialWeights(source, None, path, TORCHVISION_SIZE, TORCHVISION_PRESET)  # a torchvision state_dict


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def torchvision_cache_file() -> Path:
    """torchvision's ImageNet AlexNet weights in torch.hub's cache, downloaded there when missing and reachable."""
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=True)
    except Exception as e:  # no network here (URLError, timeouts, proxies): say where the file goes
        raise ConfigError(
            f"--init-from {INIT_TORCHVISION}: {path} is not there and could not be downloaded ({type(e).__name__}); "
            f"on a machine with internet, fetch {url} and put it at {path} (or set TORCH_HOME)") from None
    return path


def resolve_preprocessing(cfg: TrainConfig, init: InitialWeights | None) -> tuple[TrainConfig, list[str]]:
    """`cfg` with the source's input size and preset where the run leaves them open, and what was taken."""
    if init is None:
        return cfg, []
    data, taken = cfg.data, []
    if data.image_size is None and init.image_size is not None:
        data, taken = dataclasses.replace(data, image_size=init.image_size), taken + [f"input size {init.image_size}"]
    if data.preset is None and init.preset is not None:
        data, taken = dataclasses.replace(data, preset=init.preset), taken + [f"preset {init.preset}"]
    return dataclasses.replace(cfg, data=data), taken


def apply_initial_weights(model: nn.Module, init: InitialWeights) -> list[str]:
    """Load `init` into `model` in place; the lines to log. fc8 is replaced where its shape differs; any other
    layer that does not fit is refused by name."""
    head_classes = model.layer(model.head_name).out_features
    if init.state is None:
        replace = head_classes != 1000  # torchvision's ImageNet head
        load_torchvision_weights(model, init.torchvision_file, skip_head=replace)
        lines = [f"initialised from torchvision's AlexNet weights ({init.torchvision_file})"]
        return lines + ([f"fc8 replaced: the source has 1000 classes, this data {head_classes}"] if replace else [])
    own = model.state_dict()
    layer_of = _layer_names(model)
    head_keys = {k for k in own if layer_of(k) == model.head_name}
    unexpected = sorted(set(init.state) - set(own))
    if unexpected:
        raise CheckpointError(f"--init-from {init.source}: holds weights this {model.config.name} has no place for "
                              f"({', '.join(unexpected[:3])}): another variant or norm")
    replaced = []
    for key, want in own.items():
        have = init.state.get(key)
        if have is not None and tuple(have.shape) == tuple(want.shape):
            continue
        if key in head_keys:
            replaced.append(key)
            continue
        where = "missing" if have is None else f"{tuple(have.shape)} there"
        raise CheckpointError(
            f"--init-from {init.source}: layer {layer_of(key)} does not fit ({key}: {where}, {tuple(want.shape)} in "
            f"this {model.config.name}); only {model.head_name} may differ: use the source's variant, width, input size and norm")
    model.load_state_dict({k: (own[k] if k in replaced else init.state[k]) for k in own})
    lines = [f"initialised from {init.source} ({len(own) - len(replaced)} of {len(own)} tensors)"]
    if replaced:
        source_classes = init.state[next(k for k in replaced if k.endswith("weight"))].shape[0]
        lines.append(f"{model.head_name} replaced: the source has {source_classes} classes, this data "
                     f"{head_classes}: a fresh {model.head_name} is trained")
    return lines


def _layer_names(model: nn.Module):
    """state_dict key -> the paper's name of its layer (conv1, bn1, fc6, ...)."""
    by_module = {id(module): name for name, module in model.named_layers()}
    path_of = {path: by_module.get(id(module)) for path, module in model.named_modules()}
    return lambda key: path_of.get(key.rpartition(".")[0]) or key


# --- freezing -------------------------------------------------------------------------------------------------------


def _last_weighted_feature(model: nn.Module) -> str:
    inside = {id(m) for m in model.features}
    return [name for name, m in model.named_layers() if id(m) in inside and any(True for _ in m.parameters())][-1]


def frozen_modules(model: nn.Module, freeze: str) -> list[tuple[str, nn.Module]]:
    """The modules `--freeze` keeps fixed: every layer up to and including `freeze` and the BatchNorm right after
    it; "features" is the whole conv stack (up to its last layer with weights: conv5 or bn5 in AlexNet, conv3 or
    local4 in the cuda-convnet nets); "none" is nothing."""
    if freeze == "none":
        return []
    last = _last_weighted_feature(model) if freeze == "features" else freeze
    layers = list(model.named_layers())
    names = [name for name, _ in layers]
    if last not in names:
        raise ConfigError(f"field 'model.freeze': no layer {last!r} in {model.config.name}")
    end = names.index(last) + 1
    if end < len(names) and names[end] == f"bn{last[-1]}" and last.startswith("conv"):
        end += 1
    return layers[:end]


class Freezer:
    """Which parameters train, epoch by epoch: the frozen part has no gradient, its BatchNorm layers keep their
    statistics (eval mode), and the optimizer holds only what trains (see `optimizer_groups`)."""

    def __init__(self, model: nn.Module, freeze: str, freeze_epochs: int):
        named = frozen_modules(model, freeze)
        self.names = [name for name, _ in named]  # paper names, in forward order
        self.modules = [module for _, module in named]
        self.until = freeze_epochs or None  # the epoch (0-based) that starts unfrozen; None: frozen for the whole run
        self.frozen = False
        if self.modules:
            self._set_trainable(False)
            self.frozen = True

    def _params(self) -> list[nn.Parameter]:
        return [p for m in self.modules for p in m.parameters(recurse=True)]

    def _set_trainable(self, on: bool) -> None:
        for p in self._params():
            p.requires_grad_(on)

    def due(self, epoch: int) -> bool:
        """Whether the frozen part is to be released at the start of `epoch`."""
        return self.frozen and self.until is not None and epoch >= self.until

    def release(self) -> list[nn.Parameter]:
        """Unfreeze; returns the parameters that now train (for the optimizer)."""
        params = self._params()
        self._set_trainable(True)
        self.frozen = False
        return params

    def train_mode(self, model: nn.Module) -> None:
        """model.train(), with the frozen layers left in eval mode: no BatchNorm statistics move, no dropout."""
        model.train()
        if self.frozen:
            for module in self.modules:
                module.eval()

    def describe(self) -> str:
        if not self.modules:
            return ""
        count = sum(p.numel() for p in self._params())
        when = f" for {plural(self.until, 'epoch')}" if self.until else " for the whole run"
        learned = [n for n in self.names if n.startswith(("conv", "fc", "bn"))]
        return f"frozen{when}: {', '.join(learned)} ({count:,} parameters)"
