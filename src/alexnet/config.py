"""Typed configuration for a training run: what to train, on what, how, and where to write it.

A run is resolved in layers, each overriding the one before: the dataclass defaults, a named recipe
(`configs/<name>.yaml`), the user's `--config run.yaml`, then command-line flags given as dotted keys
(`{"optim.lr": 0.01}`). The resolved `TrainConfig` is saved into the run folder and into every checkpoint as a
plain dict, so a run can be read back and resumed without the command line.

No torch import here: the CLI parses and validates a configuration before paying for torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alexnet.errors import ConfigError

# The named recipes ship inside the package (package data), so they are there however alexnet was installed.
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

# The run that `alexnet train` with no --data and `alexnet demo` do.
DEFAULT_RECIPE = "demo"

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("plateau", "step", "cosine", "none")
AMP_MODES = ("bf16", "fp16", "none")
PRESETS = ("seed", "d2l", "paper")
LOADERS = ("cache", "pil")
NORMS = ("lrn", "bn", "none")


@dataclass
class ModelSpec:
    """Which AlexNet variant to build; `None` keeps the variant's own value (see `alexnet models`)."""

    name: str = "alexnet-bn"  # a name from alexnet.models.list_models()
    width_mult: float = 1.0  # channel and fc widths scaled by this (1.0 = the paper's 96-256-384-384-256, 4096)
    dropout: float | None = None  # p of the dropout layers before/after fc6 and fc7
    norm: str | None = None  # lrn | bn | none
    in_channels: int | None = None  # 3 (RGB) or 1 (grayscale, as in the d2l note)

    def __post_init__(self):
        _require(isinstance(self.name, str) and self.name, "model.name", self.name, "a model name")
        _require(self.width_mult > 0, "model.width_mult", self.width_mult, "a number > 0")
        if self.dropout is not None:
            _require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a probability in [0, 1)")
        if self.norm is not None:
            _require(self.norm in NORMS, "model.norm", self.norm, f"one of {', '.join(NORMS)}")
        if self.in_channels is not None:
            _require(self.in_channels in (1, 3), "model.in_channels", self.in_channels, "1 or 3")


@dataclass
class DataSpec:
    """Where the images come from and how they reach the model."""

    source: str | None = None  # None: the built-in dataset; a folder; mnist | fashion-mnist | cifar10
    image_size: int | None = None  # the side the model sees (None: the variant's own, 227 or 224)
    preset: str = "seed"  # transform preset: seed (resize + ImageNet norm), d2l (resize), paper (crop/flip/PCA)
    val_split: float = 0.2  # fraction held out when the source has no val/ split of its own
    split_seed: int = 0  # seed of that held-out split (kept apart from run.seed: the split is part of the data)
    strict: bool = False  # unreadable images are errors instead of skipped-and-listed
    download: bool = False  # let torchvision download mnist / fashion-mnist / cifar10
    root: str | None = None  # where downloaded datasets live (None: $ALEXNET_CACHE/datasets)
    augment: bool | None = None  # training augmentation on/off (None: the preset's own: paper on, seed/d2l off)
    loader: str = "cache"  # cache: uint8 tensor + whole-batch augmentation (fast, exactly resumable); pil: DataLoader
    workers: int = 0  # DataLoader worker processes (pil loader, and decoding into the cache)
    # cache loader: make the next batch in a background thread during the step (None: on for CUDA; off on the CPU,
    # where it measured slower: benchmarks/README.md). The pil loader overlaps through its DataLoader workers instead.
    prefetch: bool | None = None

    def __post_init__(self):
        if self.image_size is not None:
            _require(self.image_size >= 1, "data.image_size", self.image_size, "a positive integer")
        _require(self.preset in PRESETS, "data.preset", self.preset, f"one of {', '.join(PRESETS)}")
        _require(0.0 < self.val_split < 1.0, "data.val_split", self.val_split, "a fraction in (0, 1)")
        _require(self.loader in LOADERS, "data.loader", self.loader, f"one of {', '.join(LOADERS)}")
        _require(self.workers >= 0, "data.workers", self.workers, "an integer >= 0")


@dataclass
class OptimSpec:
    """Optimizer and learning-rate schedule."""

    opt: str = "adam"  # sgd (the paper) | adam (both notes) | adamw
    lr: float = 1e-3  # peak learning rate
    momentum: float = 0.9  # SGD momentum (the paper: 0.9); ignored by Adam
    weight_decay: float = 0.0  # L2 penalty (the paper: 5e-4)
    lr_schedule: str = "none"  # plateau (the paper) | step | cosine | none
    warmup_epochs: float = 0.0  # linear warm-up from 0 over this many epochs (fractions allowed)
    step_size: int = 30  # step schedule: epochs between divisions
    gamma: float = 0.1  # step and plateau schedules: multiply the lr by this (the paper: divide by 10)
    patience: int = 1  # plateau: epochs without a better val top-1 before the lr is divided
    max_drops: int = 3  # plateau: at most this many divisions (the paper: 3)
    label_smoothing: float = 0.0  # cross-entropy label smoothing (0 = plain cross-entropy, as in the paper)

    def __post_init__(self):
        _require(self.opt in OPTIMIZERS, "optim.opt", self.opt, f"one of {', '.join(OPTIMIZERS)}")
        _require(self.lr >= 0, "optim.lr", self.lr, "a number >= 0")
        _require(0 <= self.momentum < 1, "optim.momentum", self.momentum, "a number in [0, 1)")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a number >= 0")
        _require(self.lr_schedule in SCHEDULES, "optim.lr_schedule", self.lr_schedule, f"one of {', '.join(SCHEDULES)}")
        _require(self.warmup_epochs >= 0, "optim.warmup_epochs", self.warmup_epochs, "a number >= 0")
        _require(self.step_size >= 1, "optim.step_size", self.step_size, "an integer >= 1")
        _require(0 < self.gamma <= 1, "optim.gamma", self.gamma, "a factor in (0, 1]")
        _require(self.patience >= 0, "optim.patience", self.patience, "an integer >= 0")
        _require(self.max_drops >= 0, "optim.max_drops", self.max_drops, "an integer >= 0")
        _require(0 <= self.label_smoothing < 1, "optim.label_smoothing", self.label_smoothing, "a number in [0, 1)")


@dataclass
class RunSpec:
    """How long, on what, with which numerics, and where the results go."""

    epochs: int = 10
    batch_size: int = 128  # GLOBAL batch: split evenly over torchrun ranks, so a recipe means the same on 1 or N
    max_steps: int | None = None  # stop after this many optimizer steps in total (smoke tests, benchmarks)
    amp: str = "none"  # autocast dtype: bf16 | fp16 | none
    channels_last: bool = False  # NHWC memory format (faster convolutions on recent CPUs and GPUs)
    compile: bool = False  # torch.compile the model (opt-in: minutes of compile time)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    seed: int = 0  # model init, epoch order, augmentation and dropout all derive from it
    deterministic: bool = False  # deterministic kernels (with the cache loader: bitwise-exact resume on CPU)
    output_dir: str | None = None  # the run folder (None: runs/<recipe>-<timestamp>)
    save_every_steps: int = 0  # also write checkpoints/last.pt every N steps (0: at the end of each epoch only)
    chance_warn_steps: int = 100  # warn once if the loss still sits near ln(C) after this many steps (0: never)
    # read the loss and accuracy back from the device every N steps (progress bar, non-finite check); each read
    # waits for the GPU. 0: every step on the CPU (free there), every 50 on GPUs
    sync_every: int = 0

    def __post_init__(self):
        _require(self.epochs >= 1, "run.epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "run.batch_size", self.batch_size, "an integer >= 1")
        if self.max_steps is not None:
            _require(self.max_steps >= 1, "run.max_steps", self.max_steps, "an integer >= 1")
        _require(self.amp in AMP_MODES, "run.amp", self.amp, f"one of {', '.join(AMP_MODES)}")
        _require(_valid_device(self.device), "run.device", self.device, "auto, cpu, cuda, cuda:N or mps")
        _require(self.save_every_steps >= 0, "run.save_every_steps", self.save_every_steps, "an integer >= 0")
        _require(self.chance_warn_steps >= 0, "run.chance_warn_steps", self.chance_warn_steps, "an integer >= 0")
        _require(self.sync_every >= 0, "run.sync_every", self.sync_every, "an integer >= 0")


@dataclass
class TrainConfig:
    """A whole run. `recipe` records which named recipe it started from."""

    recipe: str | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "config") -> TrainConfig:
        """Build from nested plain dicts; unknown fields and wrong types are errors that name `origin` and the field."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise ConfigError(f"{origin}: unknown section {unknown[0]!r} (known: {', '.join(sections)})")
        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for name, value in raw.items():
            spec_type = hints[name]
            if dataclasses.is_dataclass(spec_type):
                kwargs[name] = _build_section(spec_type, name, value, origin)
            else:
                kwargs[name] = _coerce(value, spec_type, name, origin)
        return cls(**kwargs)


def _build_section(spec_type: type, section: str, raw: Any, origin: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: section {section!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(spec_type)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"{origin}: unknown field '{section}.{unknown[0]}' (known: {', '.join(hints)})")
    values = {k: _coerce(v, hints[k], f"{section}.{k}", origin) for k, v in raw.items()}
    try:
        return spec_type(**values)
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None


def _coerce(value: Any, hint: Any, key: str, origin: str) -> Any:
    """Check `value` against a field's annotation; accept what YAML and the CLI produce for it ("1e-3", 1 for 1.0)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{origin}: field '{key}' must not be empty")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    for option in options:  # strings from the command line or from YAML 1.1 ("1e-3" is not a float there)
        if isinstance(value, str) and option in (int, float):
            try:
                return option(value)
            except ValueError:
                pass
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{origin}: field '{key}' must be {wanted}, got {value!r}")


def _require(ok: bool, key: str, value: Any, wanted: str) -> None:
    if not ok:
        raise ConfigError(f"field '{key}' must be {wanted}, got {value!r}")


def _valid_device(device: str) -> bool:
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    return device.startswith("cuda:") and device[5:].isdigit()


def list_recipes() -> list[str]:
    """Names accepted by `--recipe`: the YAML files in configs/."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")) if CONFIGS_DIR.is_dir() else []


def recipe_path(name: str) -> Path:
    path = CONFIGS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_recipes()) or f"none found in {CONFIGS_DIR}"
        raise ConfigError(f"unknown recipe {name!r} (known: {known})")
    return path


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a run YAML into nested dicts; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({e})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, data, optim, run), got {type(raw).__name__}")
    return raw


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update: sections merge field by field, everything else is replaced."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def overrides_to_dict(overrides: dict[str, Any]) -> dict[str, Any]:
    """{"optim.lr": 0.01, "recipe": "paper"} -> {"optim": {"lr": 0.01}, "recipe": "paper"}; None values dropped."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *sections, leaf = key.split(".")
        node = nested
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = value
    return nested


def resolve_config(
    recipe: str | None = None,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults <- recipe <- --config YAML <- flags. A YAML may name its own base with a top-level `recipe:`.

    With no recipe anywhere and no data source, the run is the default demo recipe on the built-in dataset.
    """
    user = load_yaml(config_path) if config_path is not None else {}
    flags = overrides_to_dict(overrides or {})
    name = recipe or user.get("recipe")
    data_given = (flags.get("data") or {}).get("source") or (user.get("data") or {}).get("source")
    if name is None and not data_given:
        name = DEFAULT_RECIPE
    layers: dict[str, Any] = {}
    if name is not None:
        path = recipe_path(name)
        layers = load_yaml(path)
        TrainConfig.from_dict(layers, origin=str(path))  # each layer is checked alone, so errors blame the right file
    if config_path is not None:
        TrainConfig.from_dict({k: v for k, v in user.items() if k != "recipe"}, origin=str(config_path))
    layers = merge(layers, user)
    layers["recipe"] = name
    return TrainConfig.from_dict(merge(layers, flags), origin="command line")


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
