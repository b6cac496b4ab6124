"""Checkpoints and the run folder: atomic writes, safe reads, and refusals that name what does not match.

A checkpoint is a dict of tensors and plain Python types only, so it always loads with
`torch.load(weights_only=True)`: nothing in it can run code when it is read, and this module never falls back to
`weights_only=False`. It carries everything needed to rebuild the model without the command line
(`AlexNet(AlexNetConfig(**ckpt["model_args"]))`, nanoGPT style), to preprocess new images the way training did
(class names, mean/std, input size, preset), and to resume the run exactly (optimizer, schedule, scaler, epoch,
position in the epoch, RNG states).

Run folder layout (`RunPaths`):
    config.yaml  metrics.csv  log.txt  curves.png  filters.png  checkpoints/last.pt  checkpoints/best.pt
"""

from __future__ import annotations

import math
import pickle
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet import files
from alexnet import validate as limits
from alexnet.errors import AlexNetError, CheckpointError, clip, short
from alexnet.files import atomic_write  # the writers of checkpoints and exports import it from here
from alexnet.validate import Fields

FORMAT = "alexnet-checkpoint"
FORMAT_VERSION = 1

# torch.load(weights_only=True) is the only thing between a downloaded checkpoint and arbitrary code, and before 2.6
# it could be bypassed (CVE-2025-32434). pyproject requires 2.6; this refuses to read with an older one anyway.
MIN_TORCH = (2, 6)

# The pickled part of a checkpoint (everything but the tensors' bytes: class names, config, RNG words, optimizer
# layout) is about 20 KB; 100,000 class names fit in 4 MiB. The weights_only unpickler is pure Python (~1 s per
# million objects), so a pickle of tens of MB of tiny objects would take minutes before any field could be checked:
# it is refused by its size in the zip's directory, unread.
MAX_PICKLE_BYTES = 4 << 20
MAX_ARCHIVE_ENTRIES = 10_000  # one per tensor storage (~100 in an AlexNet checkpoint with Adam state)

# What today's writer (train.fit's checkpoint()) records and its readers index: eval and predict (model, classes,
# preprocessing, data), resume (config, train state). Absent from a file, each is named, never a KeyError.
REQUIRED_FIELDS = (
    "model", "model_name", "model_args", "class_names", "image_size", "in_channels", "preset", "mean", "std",
    "data", "config", "optimizer", "scheduler", "epoch", "step_in_epoch", "global_step", "best_val_top1",
    "epoch_totals", "rng",
)
# Read with .get() or only informational: validated when present.
OPTIONAL_FIELDS = ("format", "format_version", "scaler", "chance_warned", "sampler", "versions", "world_size", "path")


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes each of its files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def filters(self) -> Path:
        return self.root / "filters.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"


def find_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint file, or a run folder (or its checkpoints/ folder) -> the file to read.

    `prefer` is "best" for eval/predict (the weights that scored best on validation) and "last" for resume.
    """
    path = Path(path)
    if path.is_dir():
        other = "last" if prefer == "best" else "best"
        for folder in (path / "checkpoints", path):
            for name in (prefer, other):
                candidate = folder / f"{name}.pt"
                if candidate.is_file():
                    return candidate
        raise CheckpointError(f"{path}: no checkpoints/{prefer}.pt or checkpoints/{other}.pt in this folder")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def run_dir_of(checkpoint_path: Path) -> Path:
    """The run folder a checkpoint belongs to (its checkpoints/ folder's parent), else the file's folder."""
    parent = checkpoint_path.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save through `atomic_write`: a reader or a crash never sees half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Checkpoint temporaries left by a process killed mid-write (SIGKILL cannot be caught)."""
    files.remove_stale_temporaries(folder, name="*.pt")


def check_torch_version(version: str) -> None:
    """Refuse to unpickle anything with a torch whose weights_only loader is known to be bypassable (< 2.6)."""
    match = re.match(r"(\d+)\.(\d+)", str(version))
    if match is None or (int(match[1]), int(match[2])) < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise CheckpointError(
            f"torch {clip(str(version), 40)} cannot read checkpoints safely: its weights_only loader can be made to "
            f"run code (CVE-2025-32434); install torch >= {need} (pip install 'torch>={need}')"
        )


def load_checkpoint(path: str | Path, prefer: str = "best", check_finite: bool = True) -> dict[str, Any]:
    """Read an alexnet checkpoint with weights_only=True, or raise CheckpointError naming the file and the cause.

    Every field is then validated (`validate_checkpoint`) before the caller sees it: the file is untrusted input.
    """
    check_torch_version(torch.__version__)
    path = find_checkpoint(path, prefer)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    check_archive(path, size)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch reports both "a class it will not construct" and "bytes that are not a pickle" this way.
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain types; refusing to unpickle it "
                "(that could run arbitrary code). alexnet checkpoints never need it"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({_unpickler_cause(e)})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, IndexError, BadZipFile... for damaged files
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({_first_line(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(
                f"{path}: a bare state_dict, not an alexnet checkpoint (it records no model, classes or "
                "preprocessing); train with `alexnet train` to get one"
            )
        raise CheckpointError(f"{path}: not an alexnet checkpoint (no '{FORMAT}' marker)")
    version = Fields(CheckpointError, str(path)).integer(obj.get("format_version", 0), "format_version", 0, 1 << 31)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer alexnet (format {version} > {FORMAT_VERSION}); upgrade alexnet"
        )
    validate_checkpoint(obj, str(path), check_finite=check_finite)
    obj["path"] = str(path)
    return obj


def check_archive(path: Path, size: int) -> None:
    """Bound what torch.load would unpickle, from the zip directory alone (torch.save writes a zip since 1.6)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip (damaged, or the legacy format): torch.load reports it
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ARCHIVE_ENTRIES:
            raise CheckpointError(f"{path}: {len(entries):,} entries in the archive (limit {MAX_ARCHIVE_ENTRIES:,}); "
                                  "not a checkpoint alexnet writes")
        for info in entries:
            # torch.save stores every entry uncompressed, but torch.load inflates compressed ones: a 10 MB deflated
            # storage of zeros would become 10 GB in memory before any field could be looked at (a zip bomb).
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise CheckpointError(
                    f"{path}: archive entry {short(info.filename)} is compressed or larger than the file "
                    f"({info.file_size:,} bytes unpacked); torch.save never writes that: refused unread"
                )
            if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1 \
                    and info.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f"{path}: its pickled fields take {info.file_size / 2**20:.1f} MiB (limit "
                    f"{MAX_PICKLE_BYTES >> 20} MiB; an alexnet checkpoint's take about 20 KB): refused unread"
                )


def validate_checkpoint(ckpt: dict[str, Any], where: str = "checkpoint", check_finite: bool = True) -> None:
    """The one validation of a loaded checkpoint: every field's type, range and upper bound, and their agreement.

    Order matters: model_args is checked first and by arithmetic (AlexNetConfig bounds its parameter count), so
    that the expected weight shapes can then be computed on the meta device, and a file whose weights do not fit
    is refused before a model is allocated. Raises CheckpointError naming `where` and the field.
    """
    f = Fields(CheckpointError, where, noun="checkpoint")
    f.mapping(ckpt, "", required=REQUIRED_FIELDS)
    f.text(ckpt["model_name"], "model_name")
    cfg = _model_config(ckpt["model_args"], where)
    names = f.items(ckpt["class_names"], "class_names", 1, limits.MAX_CLASSES)
    for i, name in enumerate(names):
        f.text(name, f"class_names[{i}]", limits.MAX_CLASS_NAME)
    if len(set(names)) != len(names):
        f.fail("class_names", "distinct names", names)
    if len(names) != cfg.num_classes:
        raise CheckpointError(f"{where}: field 'class_names' holds {len(names)} names but model_args.num_classes is "
                              f"{cfg.num_classes}")
    _agree(f, ckpt, "image_size", cfg.image_size, 1, limits.MAX_IMAGE_SIZE)
    _agree(f, ckpt, "in_channels", cfg.in_channels, 1, limits.MAX_IN_CHANNELS)
    from alexnet.config import PRESETS

    f.text(ckpt["preset"], "preset", choices=PRESETS)
    f.numbers(ckpt["mean"], "mean", cfg.in_channels)
    f.numbers(ckpt["std"], "std", cfg.in_channels, 0, lo_open=True)
    params = _check_weights(f, ckpt["model"], cfg, where, check_finite)
    _check_data(f, ckpt, names)
    _check_config(ckpt["config"], where)
    _check_train_state(f, ckpt, params, check_finite)


def _model_config(model_args: Any, where: str):
    from alexnet.models import AlexNetConfig

    Fields(CheckpointError, where).mapping(model_args, "model_args")
    try:
        return AlexNetConfig.from_dict(dict(model_args))
    except (AlexNetError, TypeError) as e:
        raise CheckpointError(f"{where}: field 'model_args': {clip(str(e), 300)}") from None


def _agree(f: Fields, ckpt: dict[str, Any], field: str, want: int, lo: int, hi: int) -> None:
    have = f.integer(ckpt[field], field, lo, hi)
    if have != want:
        raise CheckpointError(f"{f.prefix}field '{field}' is {have} but model_args.{field} is {want}")


def _check_weights(f: Fields, state: Any, cfg: Any, where: str, check_finite: bool) -> list[tuple[int, ...]]:
    """The state_dict against the shapes `cfg` gives (computed on the meta device: nothing allocated).

    Returns the parameter shapes in `model.parameters()` order, which the optimizer's state is checked against."""
    from alexnet.models import AlexNet

    f.mapping(state, "model")
    with torch.device("meta"):
        expected = AlexNet(cfg)
    own = expected.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = sorted((k for k in state if k not in own), key=str)
    if missing or unexpected:
        parts = ([f"missing {short(missing, 120)}"] if missing else []) + (
            [f"unexpected {short(unexpected, 120)}"] if unexpected else [])
        raise CheckpointError(f"{where}: field 'model': weights do not fit model_args ({'; '.join(parts)})")
    for key, want in own.items():
        have = state[key]
        if not isinstance(have, torch.Tensor):
            f.fail(f"model.{key}", "a tensor", have)
        if tuple(have.shape) != tuple(want.shape) or have.is_floating_point() != want.is_floating_point():
            raise CheckpointError(
                f"{where}: field 'model.{key}' is a {have.dtype} tensor of shape {tuple(have.shape)}; model_args "
                f"give {want.dtype} {tuple(want.shape)}"
            )
        if check_finite and have.is_floating_point() and not bool(torch.isfinite(have).all()):
            raise CheckpointError(f"{where}: weight {key!r} holds NaN or Inf values")
    return [tuple(p.shape) for p in expected.parameters()]


def _check_data(f: Fields, ckpt: dict[str, Any], names: list[str]) -> None:
    """`data`: what eval and ONNX calibration rebuild the dataset from (`build_from_description`)."""
    from alexnet.config import PRESETS

    data = f.mapping(ckpt["data"], "data", required=("source", "kind", "image_size", "in_channels", "preset",
                                                      "val_split", "seed", "class_names"))
    f.optional(data["source"], f.text, "data.source", limits.MAX_PATH)
    f.text(data["kind"], "data.kind")
    for key in ("layout", "stats_from"):
        f.optional(data.get(key), f.text, f"data.{key}", limits.MAX_NAME)
    for key in ("image_size", "in_channels", "preset"):
        if data[key] != ckpt[key]:
            raise CheckpointError(f"{f.prefix}field 'data.{key}' is {short(data[key])} but {key} is {short(ckpt[key])}")
    f.text(data["preset"], "data.preset", choices=PRESETS)
    f.number(data["val_split"], "data.val_split", 0, 1, hi_open=True)
    f.integer(data["seed"], "data.seed", limits.MIN_SEED, limits.MAX_SEED)
    if not isinstance(data["class_names"], (list, tuple)) or len(data["class_names"]) != len(names) \
            or list(data["class_names"]) != names:
        f.fail("data.class_names", "the same list as class_names", data["class_names"])
    channels = ckpt["in_channels"]
    for key in ("mean", "std"):
        if data.get(key) is not None:
            f.numbers(data[key], f"data.{key}", channels, 0, lo_open=key == "std")
    if data.get("pca") is not None:
        pca = f.mapping(data["pca"], "data.pca", required=("eigval", "eigvec"), extra=False)
        f.numbers(pca["eigval"], "data.pca.eigval", channels, 0)
        for i, row in enumerate(f.items(pca["eigvec"], "data.pca.eigvec", channels, channels)):
            f.numbers(row, f"data.pca.eigvec[{i}]", channels)
    for key in ("num_train", "num_val", "num_skipped"):
        f.optional(data.get(key), f.integer, f"data.{key}", 0, limits.MAX_COUNT)
    f.optional(data.get("root"), f.text, "data.root", limits.MAX_PATH)
    if data.get("shapes") is not None:  # the built-in dataset is generated from this: bound what it may ask for
        shapes = f.mapping(data["shapes"], "data.shapes", optional=("image_size", "train_per_class",
                                                                    "val_per_class", "seed", "quality"), extra=False)
        bounds = {"image_size": (16, 1024), "train_per_class": (1, limits.MAX_IMAGES_PER_CLASS),
                  "val_per_class": (0, limits.MAX_IMAGES_PER_CLASS), "seed": (limits.MIN_SEED, limits.MAX_SEED),
                  "quality": (1, 100)}
        for key, value in shapes.items():
            f.integer(value, f"data.shapes.{key}", *bounds[key])


def _check_config(config: Any, where: str) -> None:
    """`config`: the run's TrainConfig, which resume rebuilds; the same checks as a run YAML."""
    from alexnet.config import TrainConfig

    try:
        TrainConfig.from_dict(config, origin="field 'config'")
    except AlexNetError as e:
        raise CheckpointError(f"{where}: {clip(str(e), 300)}") from None


def _check_train_state(f: Fields, ckpt: dict[str, Any], params: list[tuple[int, ...]], check_finite: bool) -> None:
    """What resume restores: position, best score, schedule, optimizer, loss scaler, per-rank sums, RNG states."""
    f.integer(ckpt["epoch"], "epoch", 0, limits.MAX_EPOCHS)
    f.integer(ckpt["step_in_epoch"], "step_in_epoch", 0, limits.MAX_STEPS)
    f.integer(ckpt["global_step"], "global_step", 0, limits.MAX_STEPS)
    f.number(ckpt["best_val_top1"], "best_val_top1", 0, 1, allow=(-math.inf,))  # -inf: no validation yet
    f.optional(ckpt.get("chance_warned"), f.boolean, "chance_warned")
    sched = f.mapping(ckpt["scheduler"], "scheduler", required=("drops", "best", "bad_epochs"), extra=False)
    f.integer(sched["drops"], "scheduler.drops", 0, limits.MAX_EPOCHS)
    f.number(sched["best"], "scheduler.best", 0, 1, allow=(-math.inf,))
    f.integer(sched["bad_epochs"], "scheduler.bad_epochs", 0, limits.MAX_EPOCHS)
    totals = f.items(ckpt["epoch_totals"], "epoch_totals", 1, limits.MAX_RANKS)
    for rank, t in enumerate(totals):
        key = f"epoch_totals[{rank}]"
        f.mapping(t, key, required=("loss_sum", "correct", "count", "seconds"), optional=("data_wait",), extra=False)
        count = f.integer(t["count"], f"{key}.count", 0, limits.MAX_COUNT)
        f.integer(t["correct"], f"{key}.correct", 0, count)
        for name in ("loss_sum", "seconds", "data_wait"):
            f.optional(t.get(name), f.number, f"{key}.{name}", 0)
    if ckpt.get("world_size") is not None:
        world = f.integer(ckpt["world_size"], "world_size", 1, limits.MAX_RANKS)
        if world != len(totals):
            raise CheckpointError(f"{f.prefix}field 'world_size' is {world} but epoch_totals holds {len(totals)} ranks")
    if ckpt.get("sampler") is not None:
        sampler = f.mapping(ckpt["sampler"], "sampler", required=("seed", "epoch", "kind"))
        f.integer(sampler["seed"], "sampler.seed", limits.MIN_SEED, limits.MAX_SEED)
        f.integer(sampler["epoch"], "sampler.epoch", 0, limits.MAX_EPOCHS)
        f.text(sampler["kind"], "sampler.kind")
    if ckpt.get("versions") is not None:
        for key, value in f.mapping(ckpt["versions"], "versions").items():
            f.text(value, f"versions.{key}")
    _check_optimizer(f, ckpt["optimizer"], params, check_finite)
    if ckpt.get("scaler"):  # None or {} when fp16 loss scaling is off
        scaler = f.mapping(ckpt["scaler"], "scaler", required=("scale", "growth_factor", "backoff_factor",
                                                               "growth_interval", "_growth_tracker"))
        f.number(scaler["scale"], "scaler.scale", 0, lo_open=True)
        f.number(scaler["growth_factor"], "scaler.growth_factor", 0, lo_open=True)
        f.number(scaler["backoff_factor"], "scaler.backoff_factor", 0, lo_open=True)
        f.integer(scaler["growth_interval"], "scaler.growth_interval", 1, limits.MAX_STEPS)
        f.integer(scaler["_growth_tracker"], "scaler._growth_tracker", 0, limits.MAX_STEPS)
    _check_rng(f, ckpt["rng"])


def _check_optimizer(f: Fields, opt: Any, params: list[tuple[int, ...]], check_finite: bool) -> None:
    """torch.optim's state_dict: groups whose ids cover the model's parameters once, per-parameter state that fits
    them (a momentum buffer of the wrong shape would only fail at the first step, or broadcast silently)."""
    f.mapping(opt, "optimizer", required=("state", "param_groups"), extra=False)
    groups = f.items(opt["param_groups"], "optimizer.param_groups", 1, 64)
    ids: list[int] = []
    for g, group in enumerate(groups):
        key = f"optimizer.param_groups[{g}]"
        f.mapping(group, key, required=("params", "lr"))
        ids += [f.integer(i, f"{key}.params", 0, len(params) - 1)
                for i in f.items(group["params"], f"{key}.params", 0, len(params))]
        for name, value in group.items():
            if name != "params":
                _check_hyperparameter(f, value, f"{key}.{name}")
        f.number(group["lr"] if not isinstance(group["lr"], torch.Tensor) else group["lr"].item(), f"{key}.lr", 0)
    if sorted(ids) != list(range(len(params))):
        raise CheckpointError(f"{f.prefix}field 'optimizer.param_groups' covers {len(ids)} parameter ids, "
                              f"the model has {len(params)} parameters (ids 0..{len(params) - 1}, each once)")
    state = opt["state"]
    if not isinstance(state, dict):
        f.fail("optimizer.state", "a mapping of parameter ids", state)
    for pid, entry in state.items():
        key = f"optimizer.state[{short(pid)}]"
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < len(params):
            f.fail("optimizer.state", f"keyed by parameter ids 0..{len(params) - 1}", pid)
        for name, value in f.mapping(entry, key).items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1 and tuple(value.shape) != params[pid]:
                    raise CheckpointError(f"{f.prefix}field '{key}.{name}' has shape {tuple(value.shape)}, its "
                                          f"parameter {params[pid]}")
                if check_finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise CheckpointError(f"{f.prefix}field '{key}.{name}' holds NaN or Inf values")
            else:
                _check_hyperparameter(f, value, f"{key}.{name}")


def _check_hyperparameter(f: Fields, value: Any, field: str) -> None:
    """An optimizer group's setting: None, a flag, a short string, a finite number, a tuple of them (betas)."""
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            f.text(value, field)
        return
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            f.fail(field, "a number (a one-element tensor)", value)
        value = value.item()
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(f.items(value, field, 0, 8)):
            _check_hyperparameter(f, item, f"{field}[{i}]")
        return
    f.number(value, field)


def _check_rng(f: Fields, rng: Any) -> None:
    """random's, numpy's and torch's generator states, as `rng_state` writes them and `set_rng_state` reads them."""
    f.mapping(rng, "rng", required=("python", "numpy", "torch"), optional=("cuda",), extra=False)
    py = f.items(rng["python"], "rng.python", 3, 3)
    f.integer(py[0], "rng.python[0]", 3, 3)  # random.VERSION
    internal = f.items(py[1], "rng.python[1]", 625, 625)
    for i, word in enumerate(internal[:624]):
        f.integer(word, f"rng.python[1][{i}]", 0, (1 << 32) - 1)
    f.integer(internal[624], "rng.python[1][624]", 0, 624)
    f.optional(py[2], f.number, "rng.python[2]")
    np_state = f.mapping(rng["numpy"], "rng.numpy", required=("bit_generator", "key", "pos", "has_gauss", "gauss"),
                         extra=False)
    f.text(np_state["bit_generator"], "rng.numpy.bit_generator", choices=("MT19937",))
    key = np_state["key"]
    if not isinstance(key, torch.Tensor) or tuple(key.shape) != (624,) or key.dtype != torch.int64:
        f.fail("rng.numpy.key", "an int64 tensor of 624 values", key)
    f.integer(np_state["pos"], "rng.numpy.pos", 0, 624)
    f.integer(np_state["has_gauss"], "rng.numpy.has_gauss", 0, 1)
    f.number(np_state["gauss"], "rng.numpy.gauss")
    size = torch.get_rng_state().numel()
    for name, state in [("rng.torch", rng["torch"])] + [
            (f"rng.cuda[{i}]", s) for i, s in enumerate(f.items(rng.get("cuda", []), "rng.cuda", 0, 1024))]:
        want = size if name == "rng.torch" else None
        if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.dim() != 1 or (
                want is not None and state.numel() != want) or state.numel() > 1 << 20:
            f.fail(name, f"a uint8 tensor of {want or 'at most 1048576'} bytes", state)
    # The right shapes can still hold a state the generators reject ("Invalid mt19937 state" from torch, a
    # ValueError from numpy): try them on scratch generators now, not on the global ones mid-resume.
    for name, apply in (
        ("rng.python", lambda: random.Random().setstate(_to_tuple(rng["python"]))),
        ("rng.numpy", lambda: np.random.RandomState().set_state(
            ("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
             np_state["gauss"]))),
        ("rng.torch", lambda: torch.Generator().set_state(rng["torch"])),
    ):
        try:
            apply()
        except (ValueError, TypeError, RuntimeError, OverflowError) as e:
            raise CheckpointError(f"{f.prefix}field '{name}' is not a valid generator state ({_first_line(e)})") from None


def check_matches(ckpt: dict[str, Any], expected: dict[str, Any], action: str) -> None:
    """Refuse, naming the first differing field, when a checkpoint does not fit what it is used with.

    `expected` maps checkpoint fields (class_names, model_name, image_size, in_channels, model_args...) to the
    values of the run or data at hand.
    """
    for key, want in expected.items():
        have = ckpt.get(key)
        if key == "model_args" and isinstance(have, dict) and isinstance(want, dict):
            for arg in sorted(set(have) | set(want)):
                if have.get(arg) != want.get(arg):
                    raise CheckpointError(
                        f"cannot {action}: model_args.{arg} differs: checkpoint {ckpt.get('path', '')} has "
                        f"{short(have.get(arg))}, this run has {short(want.get(arg))}"
                    )
            continue
        if have != want:
            raise CheckpointError(
                f"cannot {action}: {key} differs: checkpoint {ckpt.get('path', '')} has {short(have)}, "
                f"this run has {short(want)}"
            )


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as tensors and plain types (numpy's key array becomes a tensor)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def versions() -> dict[str, str]:
    import torchvision

    from alexnet import __version__

    # str(): torch.__version__ is a TorchVersion object, which a weights_only load refuses.
    return {"alexnet": str(__version__), "torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}


def _to_tuple(x: Any) -> Any:
    # random.setstate wants tuples all the way down; a round trip through some serialisers yields lists.
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _unpickler_cause(e: BaseException) -> str:
    """The cause torch's weights-only unpickler names, without its first line's advice to retry with
    weights_only=False (never right for a file that is not a checkpoint, and unsafe for one from a stranger)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        cause = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n", 1)[0].strip()
        return clip(f"weights-only unpickler: {cause}") if cause else "weights-only unpickler refused it"
    return _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return clip(text[0]) if text else type(e).__name__


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu"):
    """Rebuild the model without the command line (`AlexNet(AlexNetConfig(**model_args))`), weights loaded, eval mode."""
    from alexnet.models import AlexNet, AlexNetConfig

    model = AlexNet(AlexNetConfig.from_dict(dict(ckpt["model_args"])))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: weights do not fit model_args ({_first_line(e)})") from None
    return model.to(device).eval()
