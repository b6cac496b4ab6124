"""The typed sections of a run's configuration (ModelSpec, DataSpec, OptimSpec, RunSpec -> TrainConfig), each
field declared once with its flag, help and check, and the generated flags of `alexnet train` (`train_flags`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from alexnet import checks
from alexnet.config.choices import (
    ACTIVATIONS,
    ADAPTABLE,
    CLASS_WEIGHTS,
    CONV1_INITS,
    FREEZE_POINTS,
    IN_CHANNELS,
    INITS,
    LAYOUTS,
    LOADERS,
    LR_SCHEDULES,
    NORMS,
    OPTIMIZERS,
    PIXEL_SCALES,
    POOLINGS,
    PRESETS,
    TRAIN_AMP_MODES,
    TTA_MODES,
)
from alexnet.config.values import (
    _is_int,
    _require,
    _valid_device,
    adapt_fields,
    check_cache_fields,
    parse_channels,
    parse_class_weights,
    parse_duration,
)
from alexnet.errors import ConfigError, short

_F = checks.Fields(ConfigError)  # the checks of every section: messages "field 'optim.lr' must be ..., got ..."


def flag(default: Any, *, help: str | None = None, metavar: str | None = None, choices: tuple | None = None,
         name: str | None = None) -> Any:
    """A field that `alexnet train` also takes as a flag: `--<field-name>` unless `name` says otherwise."""
    return field(default=default, metadata={"flag": name or "", "help": help, "metavar": metavar, "choices": choices})


def yaml_only(default: Any) -> Any:
    """A field set only in a recipe or a `--config` YAML: it has no flag."""
    return field(default=default, metadata={"flag": None})


@dataclass
class ModelSpec:
    """Which AlexNet variant to build; `None` keeps the variant's own value (see `alexnet models`)."""

    # a name in the registry (alexnet.models.registry, which checks it when the model is built); `alexnet train`
    # lists the names in this flag's help
    name: str = flag("alexnet-bn", name="--model", metavar="NAME", help="a registered model")
    # channel and fc widths scaled by this (1.0 = the paper's 96-256-384-384-256, 4096)
    width_mult: float = flag(1.0, metavar="X", help="scale every layer's width (e.g. 0.25 on a CPU)")
    dropout: float | None = flag(None, metavar="P", help="dropout probability of fc6/fc7")  # before/after fc6, fc7
    norm: str | None = flag(None, choices=NORMS, help="normalisation layers")
    in_channels: int | None = flag(None, choices=IN_CHANNELS, help="1 (grayscale) or 3 (RGB)")  # 1: the d2l note
    # weights to start from (alexnet.training.finetune): a checkpoint or run folder, an export folder, a torchvision
    # AlexNet state_dict file, or "torchvision"; fc8 is replaced where the class count differs
    init_from: str | None = flag(None, metavar="SRC", help="start from these weights: a checkpoint or run folder, "
                                 "an `alexnet export` folder, a torchvision AlexNet .pth, or torchvision (ImageNet "
                                 "weights via torch.hub's cache); a different class count replaces fc8")
    freeze: str = flag("none", choices=FREEZE_POINTS, help="keep every layer up to and including this one fixed "
                       "(no gradient, BatchNorm statistics too; the optimizer never sees them)")
    freeze_epochs: int = flag(0, metavar="N", help="with --freeze: unfreeze everything after N epochs (0: frozen for "
                              "the whole run), as fastai's fine_tune")
    # the ablation switches of alexnet.models.AlexNetConfig (alexnet ablate's studies); None keeps the variant's
    activation: str | None = flag(None, choices=ACTIVATIONS, help="non-linearity of every layer")
    pooling: str | None = flag(None, choices=POOLINGS, help="max-pooling: overlap (3/2, the paper) or plain (2/2)")
    groups: int | None = flag(None, metavar="G", help="groups of conv2/4/5 (2: the paper's two towers, 1: one)")
    init: str | None = flag(None, choices=INITS, help="weight init (paper-bias0: the paper's without the bias 1)")
    # patches: conv1 from the training set's patch statistics (training.whiten); a new run on the cache loader
    conv1_init: str = flag("random", choices=CONV1_INITS, help="random (the init's), or patches: conv1 starts as "
                           "the whitening filters of the training images' patches")
    # conv1..conv5 channels before width_mult, "c1,c2,c3,c4,c5" (48,128,192,192,256: the paper's half-kernel
    # one-GPU net of section 3.2)
    channels: str | None = flag(None, metavar="C1,...,C5", help="conv1..conv5 channels before --width-mult")

    def __post_init__(self):
        _F.text(self.name, "model.name")  # the registry (alexnet.models) names the valid ones when it builds
        _F.number(self.width_mult, "model.width_mult", 0, checks.MAX_WIDTH_MULT, lo_open=True)
        _F.optional(self.dropout, _F.number, "model.dropout", 0.0, 1.0, hi_open=True)
        _F.optional(self.norm, _F.text, "model.norm", choices=NORMS)
        if self.in_channels is not None:
            _require(_is_int(self.in_channels) and self.in_channels in IN_CHANNELS, "model.in_channels",
                     self.in_channels, "1 or 3")
        _F.optional(self.init_from, _F.text, "model.init_from", checks.MAX_PATH)
        _F.text(self.conv1_init, "model.conv1_init", choices=CONV1_INITS)
        _F.text(self.freeze, "model.freeze", choices=FREEZE_POINTS)
        _F.integer(self.freeze_epochs, "model.freeze_epochs", 0, checks.MAX_EPOCHS)
        if self.freeze_epochs and self.freeze == "none":
            raise ConfigError(f"field 'model.freeze_epochs' ({self.freeze_epochs}) needs field 'model.freeze' "
                              "(--freeze LAYER|features): there is nothing to unfreeze")
        _F.optional(self.activation, _F.text, "model.activation", choices=ACTIVATIONS)
        _F.optional(self.pooling, _F.text, "model.pooling", choices=POOLINGS)
        _F.optional(self.groups, _F.integer, "model.groups", 1, checks.MAX_WIDTH)
        _F.optional(self.init, _F.text, "model.init", choices=INITS)
        if self.channels is not None:
            parse_channels(self.channels)

    def architecture(self) -> dict[str, Any]:
        """The AlexNetConfig fields this section sets (None keeps the variant's value), for models.model_config."""
        return {"width_mult": self.width_mult, "dropout": self.dropout, "norm": self.norm,
                "in_channels": self.in_channels, "activation": self.activation, "pooling": self.pooling,
                "groups": self.groups, "init": self.init,
                "channels": None if self.channels is None else parse_channels(self.channels)}


@dataclass
class DataSpec:
    """Where the images come from and how they reach the model."""

    # None: the built-in dataset; a folder (images, IDX files, CIFAR-10 batches); mnist | fashion-mnist | cifar10
    source: str | None = flag(None, name="--data", metavar="SRC", help="folder (train/ + val/ class folders, class "
                              "folders, or a flat Kaggle folder), IDX folder, CIFAR-10 batches folder, mnist | "
                              "fashion-mnist | cifar10; default: the built-in dataset")
    image_size: int | None = flag(None, metavar="N", help="side of the model's input (default: the variant's)")
    # transform preset: seed (resize + ImageNet norm), d2l (resize), paper (crop/flip/PCA). None: the note the kind
    # of data comes from: IDX digits and clothes (MNIST, Fashion-MNIST) d2l, photos seed (data.sources.PRESET_BY_KIND)
    preset: str | None = flag(None, choices=PRESETS, help="transform preset")
    val_split: float = flag(0.2, metavar="F", help="fraction held out when the data has no val/ split")
    split_seed: int = yaml_only(0)  # seed of that held-out split (kept apart from run.seed: the split is data)
    strict: bool = flag(False, help="unreadable images are errors, not skipped")  # (skipped ones are listed)
    download: bool = flag(False, help="let torchvision download mnist/fashion-mnist/cifar10")
    # None: $ALEXNET_CACHE/datasets
    root: str | None = flag(None, name="--data-root", metavar="DIR", help="where downloaded datasets live")
    # None: the preset's own (paper on, seed/d2l off)
    augment: bool | None = flag(None, help="training augmentation (default: the preset's)")
    loader: str = flag("cache", choices=LOADERS, help="cache: uint8 tensor + batch augmentation (default); pil: a "
                       "DataLoader decoding every image every epoch, as the notes do")  # cache: fast, exactly resumable
    workers: int = flag(0, metavar="N", help="decoding threads / DataLoader workers")  # pil, and decoding the cache
    # cache loader: make the next batch in a background thread during the step (None: on for CUDA; off on the CPU,
    # where it measured slower: benchmarks/README.md). The pil loader overlaps through its DataLoader workers instead.
    prefetch: bool | None = flag(None, help="cache loader: make the next batch in a background thread during the "
                                 "step (default: on for CUDA, off on the CPU where it measured slower)")
    layout: str = flag("auto", choices=LAYOUTS, help="image folder with class folders inside class folders: "
                       "classes (the top ones) or leaves (each folder holding images); auto refuses to guess")
    # each epoch's order draws the classes equally (small classes repeated, large ones cut): training.balance
    balanced_sampler: bool = flag(False, help="each epoch draws every class equally often (unbalanced data)")
    # the standard deviation of the paper preset's PCA colour noise (0: crops and flips only); cache loader only
    pca_sigma: float = flag(0.1, metavar="S", help="paper preset: PCA colour noise sigma (0 turns it off; the "
                            "paper: 0.1)")
    # random-resized crops and flips (data.augment.random_resized_crop) in place of the preset's augmentation
    crop_scale: float = flag(0.0, metavar="S", help="cache loader: train on random-resized crops covering at least "
                             "this fraction of each image (e.g. 0.35), and flips (0: the preset's augmentation)")
    train_cache_scale: float = flag(1.0, metavar="F", help="cache loader: crops cut from photos kept at F x the input")
    # the paper's init N(0, 0.01) was made for its inputs: 0-255 pixels less the mean, about 60x larger than unit std
    pixel_scale: str = flag("std", choices=PIXEL_SCALES, help="the mean-subtracted pixels divided by the channels' "
                            "std (default), or on the paper's 0-255 scale (255), which its N(0, 0.01) init assumes")
    # the views validation averages; eval and predict of the run's checkpoints take it as their default
    tta: str = flag("none", choices=TTA_MODES, help="validation's test-time augmentation: none, or flip (the image "
                    "and its mirror averaged); eval and predict of this run's checkpoints default to it")

    def __post_init__(self):
        _F.optional(self.source, _F.text, "data.source", checks.MAX_PATH)
        _F.optional(self.image_size, _F.integer, "data.image_size", 1, checks.MAX_IMAGE_SIZE)
        _F.optional(self.preset, _F.text, "data.preset", choices=PRESETS)
        _F.number(self.val_split, "data.val_split", 0.0, 1.0, lo_open=True, hi_open=True)
        _F.integer(self.split_seed, "data.split_seed", checks.MIN_SEED, checks.MAX_SEED)
        _F.boolean(self.strict, "data.strict")
        _F.boolean(self.download, "data.download")
        _F.optional(self.root, _F.text, "data.root", checks.MAX_PATH)
        _F.optional(self.augment, _F.boolean, "data.augment")
        _F.text(self.loader, "data.loader", choices=LOADERS)
        _F.integer(self.workers, "data.workers", 0, checks.MAX_WORKERS)
        _F.optional(self.prefetch, _F.boolean, "data.prefetch")
        _F.text(self.layout, "data.layout", choices=LAYOUTS)
        _F.boolean(self.balanced_sampler, "data.balanced_sampler")
        _F.number(self.pca_sigma, "data.pca_sigma", 0, 10)
        if self.pca_sigma != 0.1 and self.loader != "cache":
            raise ConfigError("field 'data.pca_sigma' is honoured by the cache loader only (--loader cache)")
        _F.number(self.crop_scale, "data.crop_scale", 0.0, 1.0)
        if self.crop_scale and (self.loader != "cache" or self.augment is False):
            raise ConfigError("field 'data.crop_scale' is training augmentation of the cache loader: not with "
                              "--loader pil or --no-augment")
        _F.text(self.tta, "data.tta", choices=TTA_MODES)
        _F.text(self.pixel_scale, "data.pixel_scale", choices=PIXEL_SCALES)


@dataclass
class OptimSpec:
    """Optimizer and learning-rate schedule."""

    opt: str = flag("adam", choices=OPTIMIZERS)  # sgd (the paper) | adam (both notes) | adamw
    lr: float = flag(1e-3, metavar="X")  # peak learning rate
    momentum: float = flag(0.9, metavar="X")  # SGD momentum (the paper: 0.9); ignored by Adam
    weight_decay: float = flag(0.0, metavar="X")  # L2 penalty (the paper: 5e-4)
    lr_schedule: str = flag("none", choices=LR_SCHEDULES)  # plateau (the paper) | step | cosine | none
    warmup_epochs: float = flag(0.0, metavar="N")  # linear warm-up from 0 over this many epochs (fractions allowed)
    step_size: int = yaml_only(30)  # step schedule: epochs between divisions
    gamma: float = yaml_only(0.1)  # step and plateau schedules: multiply the lr by this (the paper: divide by 10)
    patience: int = yaml_only(1)  # plateau: epochs without a better val top-1 before the lr is divided
    max_drops: int = yaml_only(3)  # plateau: at most this many divisions (the paper: 3)
    label_smoothing: float = flag(0.0, metavar="X")  # cross-entropy label smoothing (0 = plain, as in the paper)
    # an exponential moving average of the weights (training.ema), validated beside them; best.pt keeps the better
    ema_decay: float = flag(0.0, metavar="D", help="keep a moving average of the weights, decaying by D per step "
                            "(e.g. 0.998; 0: none); validated each epoch, best.pt keeps it when it scores higher")
    # discriminative learning rates: every layer but fc8 learns at lr x this (1: one rate for all)
    backbone_lr_mult: float = flag(1.0, metavar="X", help="learning rate of every layer but fc8, as a multiple of "
                                   "--lr (fine-tuning: e.g. 0.1)")
    # the loss's weight per class: none, auto (inverse class frequency, mean 1) or "w1,w2,..." in class-name order
    class_weights: str = flag("none", metavar="auto|none|W,...", help="loss weight per class: none, auto (inverse "
                              "frequency, mean 1) or one positive weight per class in class order")

    def __post_init__(self):
        _F.text(self.opt, "optim.opt", choices=OPTIMIZERS)
        _F.number(self.lr, "optim.lr", 0)
        _F.number(self.momentum, "optim.momentum", 0, 1, hi_open=True)
        _F.number(self.weight_decay, "optim.weight_decay", 0)
        _F.text(self.lr_schedule, "optim.lr_schedule", choices=LR_SCHEDULES)
        _F.number(self.warmup_epochs, "optim.warmup_epochs", 0, checks.MAX_EPOCHS)
        _F.integer(self.step_size, "optim.step_size", 1, checks.MAX_EPOCHS)
        _F.number(self.gamma, "optim.gamma", 0, 1, lo_open=True)
        _F.integer(self.patience, "optim.patience", 0, checks.MAX_EPOCHS)
        _F.integer(self.max_drops, "optim.max_drops", 0, checks.MAX_EPOCHS)
        _F.number(self.label_smoothing, "optim.label_smoothing", 0, 1, hi_open=True)
        _F.number(self.ema_decay, "optim.ema_decay", 0, 1, hi_open=True)
        _F.number(self.backbone_lr_mult, "optim.backbone_lr_mult", 0, 1e3)
        _F.text(self.class_weights, "optim.class_weights")
        if self.class_weights not in CLASS_WEIGHTS:
            parse_class_weights(self.class_weights)  # the count is checked against the classes when the data is read


@dataclass
class RunSpec:
    """How long, on what, with which numerics, and where the results go."""

    epochs: int = flag(10, metavar="N")
    # GLOBAL batch: split evenly over torchrun ranks, so a recipe means the same on 1 or N
    batch_size: int = flag(128, metavar="N", help="global batch (split over torchrun ranks)")
    # smoke tests, benchmarks
    max_steps: int | None = flag(None, metavar="N", help="stop after N optimizer steps in total")
    amp: str = flag("none", choices=TRAIN_AMP_MODES, help="autocast dtype (auto: bf16 or fp16 where this machine "
                    "measured it faster than fp32, else none; the run records what it chose)")
    channels_last: bool = flag(False, help="NHWC memory format")  # faster convolutions on recent CPUs and GPUs
    compile: bool = flag(False, help="torch.compile the model")  # opt-in: minutes of compile time
    device: str = flag("auto", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps")
    seed: int = flag(0, metavar="N")  # model init, epoch order, augmentation and dropout all derive from it
    # with the cache loader: bitwise-exact resume on the CPU
    deterministic: bool = flag(False, help="deterministic kernels (exact resume)")
    output_dir: str | None = flag(None, metavar="DIR", help="run folder (default: runs/<recipe>-<time>)")
    # also write checkpoints/last.pt every N steps (0: at the end of each epoch only)
    # Figure 1's grain: train_curve.csv holds the training batches' error N times per epoch (training.curve)
    curve_points: int = flag(0, metavar="N", help="write train_curve.csv: the training error N times per epoch")
    save_every_steps: int = flag(0, metavar="N", help="also checkpoint every N steps")
    # warn once if, after this many steps, the loss still sits near ln(C) and the accuracy at 1/C (0: never)
    chance_warn_steps: int = flag(100, metavar="N",
                                  help="warn if loss and accuracy are still at chance after N steps (0: never)")
    # read the loss and accuracy back from the device every N steps (progress bar, non-finite check); each read
    # waits for the GPU. 0: every step on the CPU (free there), every 50 on GPUs
    sync_every: int = flag(0, metavar="N", help="read the loss back from the device every N steps (progress, "
                           "non-finite check; default: every step on the CPU, every 50 on GPUs)")
    # stop when validation top-1 has not improved for this many epochs (0: never); best.pt keeps the best epoch
    early_stop: int = flag(0, metavar="PATIENCE", help="stop when validation top-1 has not improved for PATIENCE "
                           "epochs (best.pt keeps the best)")
    # None: every epoch, or a --time-budget run's choice (validation at most training.budget.VAL_SHARE of it)
    val_every: int | None = flag(None, metavar="N", help="validate every N epochs and after the last (default: "
                                 "every epoch; a --time-budget run chooses it)")
    # TensorBoard event files in <run>/tensorboard (the tensorboard extra): tensorboard --logdir runs/
    tensorboard: bool = flag(False, help="log scalars, conv1 filters, the confusion matrix and the hyperparameters "
                             "for TensorBoard (pip install 'alexnet[tensorboard]')")
    # plan the run to end at this wall-clock budget ("5m", "90s", "1h30m"): steps from a measured step, a cosine
    # schedule to their end (alexnet.training.budget); the plan is written into this config
    time_budget: str | None = flag(None, metavar="DURATION", help="train for this long (e.g. 5m, 1h30m): the epochs "
                                   "are planned from a measured step and the learning rate decays to its end at the "
                                   "budget")
    # fields the run chooses itself from its data and its length (training.adapt); a recipe sets it, a user's own
    # setting of one of the fields takes it out (config.loading)
    adapt: str = yaml_only("")
    # an LR range test instead of training: lr_find.png and the suggested rate; no weights are written
    lr_find: bool = flag(False, help="run an LR range test (learning rate rising from 1e-7 to 10) instead of "
                         "training: writes lr_find.png and prints the suggested --lr, or why the curve suggests none")

    def __post_init__(self):
        _F.integer(self.epochs, "run.epochs", 1, checks.MAX_EPOCHS)
        _F.integer(self.batch_size, "run.batch_size", 1, checks.MAX_BATCH)
        _F.optional(self.max_steps, _F.integer, "run.max_steps", 1, checks.MAX_STEPS)
        _F.text(self.amp, "run.amp", choices=TRAIN_AMP_MODES)
        _F.boolean(self.channels_last, "run.channels_last")
        _F.boolean(self.compile, "run.compile")
        _require(_valid_device(self.device), "run.device", self.device, "auto, cpu, cuda, cuda:N or mps")
        _F.integer(self.seed, "run.seed", checks.MIN_SEED, checks.MAX_SEED)
        _F.integer(self.curve_points, "run.curve_points", 0, 1000)
        _F.boolean(self.deterministic, "run.deterministic")
        _F.optional(self.output_dir, _F.text, "run.output_dir", checks.MAX_PATH)
        _F.integer(self.save_every_steps, "run.save_every_steps", 0, checks.MAX_STEPS)
        _F.integer(self.chance_warn_steps, "run.chance_warn_steps", 0, checks.MAX_STEPS)
        _F.integer(self.sync_every, "run.sync_every", 0, checks.MAX_STEPS)
        _F.integer(self.early_stop, "run.early_stop", 0, checks.MAX_EPOCHS)
        _F.optional(self.val_every, _F.integer, "run.val_every", 1, checks.MAX_EPOCHS)
        _F.boolean(self.tensorboard, "run.tensorboard")
        _F.boolean(self.lr_find, "run.lr_find")
        if self.time_budget is not None:
            parse_duration(self.time_budget)
        _F.text(self.adapt, "run.adapt", 200, empty=True)
        for name in adapt_fields(self.adapt):
            _require(name in ADAPTABLE, "run.adapt", name, f"a list of fields among {', '.join(ADAPTABLE)}")


@dataclass
class TrainConfig:
    """A whole run. `recipe` records which named recipe it started from."""

    recipe: str | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    run: RunSpec = field(default_factory=RunSpec)

    def __post_init__(self):
        _F.optional(self.recipe, _F.text, "recipe")
        for name, spec in (("model", ModelSpec), ("data", DataSpec), ("optim", OptimSpec), ("run", RunSpec)):
            _require(isinstance(getattr(self, name), spec), name, getattr(self, name), f"a {spec.__name__}")
        if (self.run.val_every or 1) > 1 and (self.optim.lr_schedule == "plateau" or self.run.early_stop):
            judge = "the plateau schedule" if self.optim.lr_schedule == "plateau" else "--early-stop"
            raise ConfigError(f"field 'run.val_every' is {self.run.val_every}, but {judge} judges every epoch: use 1")
        check_cache_fields(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "config") -> TrainConfig:
        """Build from nested plain dicts; unknown fields and wrong types are errors that name `origin` and the field."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: expected a mapping of sections, got {type(raw).__name__}")
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted((k for k in raw if k not in sections), key=repr)  # YAML keys may be ints, None, ...
        if unknown:
            raise ConfigError(f"{origin}: unknown section {short(unknown[0])} (known: {', '.join(sections)})")
        kwargs: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for name, value in raw.items():
            spec_type = hints[name]
            if dataclasses.is_dataclass(spec_type):
                kwargs[name] = _build_section(spec_type, name, value, origin)
            else:
                kwargs[name] = _coerce(value, spec_type, name, origin)
        return cls(**kwargs)


@dataclass(frozen=True)
class FlagSpec:
    """One generated flag of `alexnet train`: what argparse needs, and the dotted config key its value goes to."""

    key: str  # "data.root"
    flag: str  # "--data-root"
    type: type  # bool, int, float or str: the field's annotation without None
    help: str | None
    metavar: str | None
    choices: tuple | None

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def train_flags() -> list[FlagSpec]:
    """The flags of every section field declared with `flag()`, in section then field order.

    A section field declared with neither `flag()` nor `yaml_only()` is an error here, so a new option cannot
    silently go without its flag (tests/test_cli.py builds the parser)."""
    out = []
    sections = typing.get_type_hints(TrainConfig)
    for section in dataclasses.fields(TrainConfig):
        spec = sections[section.name]
        if not dataclasses.is_dataclass(spec):
            continue  # recipe: --recipe, declared by the command itself
        hints = typing.get_type_hints(spec)
        for f in dataclasses.fields(spec):
            key = f"{section.name}.{f.name}"
            if "flag" not in f.metadata:
                raise TypeError(f"config field {key} is declared without flag() or yaml_only()")
            if f.metadata["flag"] is None:
                continue
            (kind,) = [t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None)]
            name = f.metadata["flag"] or "--" + f.name.replace("_", "-")
            out.append(FlagSpec(key, name, kind, f.metadata["help"], f.metadata["metavar"], f.metadata["choices"]))
    return out


def _build_section(spec_type: type, section: str, raw: Any, origin: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: section {section!r} must be a mapping, got {short(raw)}")
    hints = typing.get_type_hints(spec_type)
    unknown = sorted((k for k in raw if k not in hints), key=repr)
    if unknown:
        raise ConfigError(f"{origin}: unknown field {short(f'{section}.{unknown[0]}')} (known: {', '.join(hints)})")
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
            return _finite(value, key, origin)
        if option is str and isinstance(value, str):
            return value
    for option in options:  # strings from the command line or from YAML 1.1 ("1e-3" is not a float there)
        if isinstance(value, str) and option in (int, float):
            try:
                number = option(value)
            except ValueError:  # not a number, or an int string beyond Python's 4300-digit limit
                continue
            return _finite(number, key, origin) if option is float else number
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{origin}: field '{key}' must be {wanted}, got {short(value)}")


def _finite(value: int | float, key: str, origin: str) -> float:
    """inf and nan (YAML's .inf/.nan, the flag --lr nan, 1e999) are never a valid setting: refused here, for every
    float field at once, before a comparison like `lr >= 0` can let inf through."""
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{origin}: field '{key}' must be a finite number, got {short(value)}")
    return number
