"""The checkpoint file's layout, field by field: the upgrade of older formats, and the one validation of every field.

Format 2 (written since the typed record, `alexnet.store.checkpoint.Checkpoint`):

    format, format_version      "alexnet-checkpoint", 2
    model                       the model's state_dict
    model_name, model_args      the variant and every field of its config (models.build_from_config(model_args))
    class_names                 one name per output
    image_size, in_channels,    how an image becomes the model's input (Preprocessing)
    preset, mean, std
    data                        how to rebuild the data (build_from_description), less the fields above
    config                      the run's TrainConfig
    train_state                 what resume restores (alexnet.training.state.TrainState.state_dict())
    versions                    alexnet, torch, torchvision

Format 1 held the train state's fields at the top level, copies of image_size / in_channels / preset / class_names /
mean / std inside `data`, and a `sampler` entry that nothing read; `upgrade` turns it into format 2 after checking
that the copies agree.

Everything in a file is untrusted: `validate` checks each field's type, range and upper bound, and their agreement,
and raises CheckpointError naming the field before anything is built from it.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch

from alexnet import checks
from alexnet.checks import Fields
from alexnet.config import PRESETS, TrainConfig
from alexnet.errors import AlexNetError, CheckpointError, clip, short
from alexnet.models import build_from_config, config_from_dict
from alexnet.store.safeload import first_line
from alexnet.training.determinism import as_tuple

FORMAT = "alexnet-checkpoint"
FORMAT_VERSION = 2

PREPROCESSING_FIELDS = ("image_size", "in_channels", "preset", "mean", "std")
REQUIRED_FIELDS = ("model", "model_name", "model_args", "class_names", *PREPROCESSING_FIELDS, "data", "config",
                   "train_state")
OPTIONAL_FIELDS = ("format", "format_version", "versions")
TRAIN_STATE_REQUIRED = ("epoch", "step_in_epoch", "global_step", "best_val_top1", "epoch_totals", "optimizer",
                        "scheduler", "rng")
TRAIN_STATE_OPTIONAL = ("scaler", "chance_warned", "world_size", "optimizer_params", "frozen",
                        "epochs_without_improvement", "ema")
DATA_REQUIRED = ("source", "kind", "val_split", "seed")
# Format 1: these were stored twice (top level and inside data), and `sampler` was never read.
V1_DATA_COPIES = ("image_size", "in_channels", "preset", "class_names", "mean", "std")
V1_TRAIN_FIELDS = TRAIN_STATE_REQUIRED + TRAIN_STATE_OPTIONAL


def upgrade(obj: dict[str, Any], version: int, where: str) -> dict[str, Any]:
    """A format-1 file's fields in the format-2 layout (a new dict; `obj` is left as it was)."""
    if version >= 2:
        return obj
    f = Fields(CheckpointError, where, noun="checkpoint")
    f.mapping(obj, "", required=tuple(k for k in REQUIRED_FIELDS if k != "train_state") + TRAIN_STATE_REQUIRED)
    data = dict(f.mapping(obj["data"], "data", required=DATA_REQUIRED + ("image_size", "in_channels", "preset",
                                                                         "class_names")))
    for key in V1_DATA_COPIES:  # a copy that disagrees means the file was edited: refuse rather than pick one
        if key in ("mean", "std") or key not in data:  # the statistics' copies were never read: dropped unread
            data.pop(key, None)
            continue
        if not _same(data[key], obj[key]):
            if key == "class_names":
                f.fail("data.class_names", "the same list as class_names", data[key])
            raise CheckpointError(f"{f.prefix}field 'data.{key}' is {short(data[key])} but {key} is {short(obj[key])}")
        del data[key]
    out = {k: v for k, v in obj.items() if k not in V1_TRAIN_FIELDS and k != "sampler"}
    out["data"] = data
    out["train_state"] = {k: obj[k] for k in V1_TRAIN_FIELDS if k in obj}
    out["format_version"] = FORMAT_VERSION
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return type(a) is type(b) and a == b


def validate(ckpt: dict[str, Any], where: str = "checkpoint", check_finite: bool = True) -> None:
    """The one validation of a format-2 checkpoint: every field's type, range and upper bound, and their agreement.

    Order matters: model_args is checked first and by arithmetic (AlexNetConfig bounds its parameter count), so
    that the expected weight shapes can then be computed on the meta device, and a file whose weights do not fit
    is refused before a model is allocated. Raises CheckpointError naming `where` and the field.
    """
    f = Fields(CheckpointError, where, noun="checkpoint")
    f.mapping(ckpt, "", required=REQUIRED_FIELDS)
    f.text(ckpt["model_name"], "model_name")
    cfg = _model_config(ckpt["model_args"], where)
    names = f.items(ckpt["class_names"], "class_names", 1, checks.MAX_CLASSES)
    for i, name in enumerate(names):
        f.text(name, f"class_names[{i}]", checks.MAX_CLASS_NAME)
    if len(set(names)) != len(names):
        f.fail("class_names", "distinct names", names)
    if len(names) != cfg.num_classes:
        raise CheckpointError(f"{where}: field 'class_names' holds {len(names)} names but model_args.num_classes is "
                              f"{cfg.num_classes}")
    _agree(f, ckpt, "image_size", cfg.image_size, 1, checks.MAX_IMAGE_SIZE)
    _agree(f, ckpt, "in_channels", cfg.in_channels, 1, checks.MAX_IN_CHANNELS)
    f.text(ckpt["preset"], "preset", choices=PRESETS)
    f.numbers(ckpt["mean"], "mean", cfg.in_channels)
    f.numbers(ckpt["std"], "std", cfg.in_channels, 0, lo_open=True)
    params = _check_weights(f, ckpt["model"], cfg, where, check_finite)
    _check_data(f, ckpt["data"], cfg.in_channels)
    _check_config(ckpt["config"], where)
    if ckpt.get("versions") is not None:
        for key, value in f.mapping(ckpt["versions"], "versions").items():
            f.text(value, f"versions.{key}")
    _check_train_state(f, ckpt["train_state"], params, check_finite)
    if ckpt["train_state"].get("ema") is not None:  # --ema-decay: the averaged weights, the model's shapes
        _check_weights(f, ckpt["train_state"]["ema"], cfg, where, check_finite, field="train_state.ema")


def _model_config(model_args: Any, where: str):
    Fields(CheckpointError, where).mapping(model_args, "model_args")
    try:
        return config_from_dict(dict(model_args))
    except (AlexNetError, TypeError) as e:
        raise CheckpointError(f"{where}: field 'model_args': {clip(str(e), 300)}") from None


def _agree(f: Fields, ckpt: dict[str, Any], field: str, want: int, lo: int, hi: int) -> None:
    have = f.integer(ckpt[field], field, lo, hi)
    if have != want:
        raise CheckpointError(f"{f.prefix}field '{field}' is {have} but model_args.{field} is {want}")


def _check_weights(f: Fields, state: Any, cfg: Any, where: str, check_finite: bool,
                   field: str = "model") -> list[tuple[int, ...]]:
    """The state_dict against the shapes `cfg` gives (computed on the meta device: nothing allocated).

    Returns the parameter shapes in `model.parameters()` order, which the optimizer's state is checked against."""
    f.mapping(state, field)
    with torch.device("meta"):
        expected = build_from_config(cfg)
    own = expected.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = sorted((k for k in state if k not in own), key=str)
    if missing or unexpected:
        parts = ([f"missing {short(missing, 120)}"] if missing else []) + (
            [f"unexpected {short(unexpected, 120)}"] if unexpected else [])
        raise CheckpointError(f"{where}: field '{field}': weights do not fit model_args ({'; '.join(parts)})")
    for key, want in own.items():
        have = state[key]
        if not isinstance(have, torch.Tensor):
            f.fail(f"{field}.{key}", "a tensor", have)
        if tuple(have.shape) != tuple(want.shape) or have.is_floating_point() != want.is_floating_point():
            raise CheckpointError(
                f"{where}: field '{field}.{key}' is a {have.dtype} tensor of shape {tuple(have.shape)}; model_args "
                f"give {want.dtype} {tuple(want.shape)}"
            )
        if check_finite and have.is_floating_point() and not bool(torch.isfinite(have).all()):
            raise CheckpointError(f"{where}: {'' if field == 'model' else field + ' '}weight {key!r} holds NaN or Inf "
                                  "values")
    return [(name, tuple(p.shape)) for name, p in expected.named_parameters()]


def _check_data(f: Fields, data: Any, channels: int) -> None:
    """`data`: what eval and ONNX calibration rebuild the dataset from (`build_from_description`)."""
    f.mapping(data, "data", required=DATA_REQUIRED)
    f.optional(data["source"], f.text, "data.source", checks.MAX_PATH)
    f.text(data["kind"], "data.kind")
    for key in ("layout", "stats_from"):
        f.optional(data.get(key), f.text, f"data.{key}", checks.MAX_NAME)
    f.number(data["val_split"], "data.val_split", 0, 1, hi_open=True)
    f.integer(data["seed"], "data.seed", checks.MIN_SEED, checks.MAX_SEED)
    if data.get("pca") is not None:
        pca = f.mapping(data["pca"], "data.pca", required=("eigval", "eigvec"), extra=False)
        f.numbers(pca["eigval"], "data.pca.eigval", channels, 0)
        for i, row in enumerate(f.items(pca["eigvec"], "data.pca.eigvec", channels, channels)):
            f.numbers(row, f"data.pca.eigvec[{i}]", channels)
    for key in ("num_train", "num_val", "num_skipped"):
        f.optional(data.get(key), f.integer, f"data.{key}", 0, checks.MAX_COUNT)
    f.optional(data.get("root"), f.text, "data.root", checks.MAX_PATH)
    if data.get("shapes") is not None:  # the built-in dataset is generated from this: bound what it may ask for
        shapes = f.mapping(data["shapes"], "data.shapes", optional=("image_size", "train_per_class",
                                                                    "val_per_class", "seed", "quality"), extra=False)
        bounds = {"image_size": (16, 1024), "train_per_class": (1, checks.MAX_IMAGES_PER_CLASS),
                  "val_per_class": (0, checks.MAX_IMAGES_PER_CLASS), "seed": (checks.MIN_SEED, checks.MAX_SEED),
                  "quality": (1, 100)}
        for key, value in shapes.items():
            f.integer(value, f"data.shapes.{key}", *bounds[key])


def _check_config(config: Any, where: str) -> None:
    """`config`: the run's TrainConfig, which resume rebuilds; the same checks as a run YAML."""
    try:
        TrainConfig.from_dict(config, origin="field 'config'")
    except AlexNetError as e:
        raise CheckpointError(f"{where}: {clip(str(e), 300)}") from None


def _check_train_state(f: Fields, state: Any, params: list[tuple[str, tuple[int, ...]]], check_finite: bool) -> None:
    """What resume restores: position, best score, schedule, optimizer, loss scaler, per-rank sums, RNG states."""
    f.mapping(state, "train_state", required=TRAIN_STATE_REQUIRED, optional=TRAIN_STATE_OPTIONAL, extra=False)
    p = "train_state."
    f.integer(state["epoch"], p + "epoch", 0, checks.MAX_EPOCHS)
    f.integer(state["step_in_epoch"], p + "step_in_epoch", 0, checks.MAX_STEPS)
    f.integer(state["global_step"], p + "global_step", 0, checks.MAX_STEPS)
    f.number(state["best_val_top1"], p + "best_val_top1", 0, 1, allow=(-math.inf,))  # -inf: no validation yet
    f.optional(state.get("chance_warned"), f.boolean, p + "chance_warned")
    sched = f.mapping(state["scheduler"], p + "scheduler", required=("drops", "best", "bad_epochs"),
                      optional=("anchor",), extra=False)
    if sched.get("anchor") is not None:  # a time budget's re-planned cosine: (epoch time, progress then)
        t0, p0 = f.items(sched["anchor"], p + "scheduler.anchor", 2, 2)
        f.number(t0, p + "scheduler.anchor[0]", 0, checks.MAX_EPOCHS)
        f.number(p0, p + "scheduler.anchor[1]", 0, 1)
    f.integer(sched["drops"], p + "scheduler.drops", 0, checks.MAX_EPOCHS)
    f.number(sched["best"], p + "scheduler.best", 0, 1, allow=(-math.inf,))
    f.integer(sched["bad_epochs"], p + "scheduler.bad_epochs", 0, checks.MAX_EPOCHS)
    totals = f.items(state["epoch_totals"], p + "epoch_totals", 1, checks.MAX_RANKS)
    for rank, t in enumerate(totals):
        key = f"{p}epoch_totals[{rank}]"
        f.mapping(t, key, required=("loss_sum", "correct", "count", "seconds"), optional=("data_wait",), extra=False)
        count = f.integer(t["count"], f"{key}.count", 0, checks.MAX_COUNT)
        f.integer(t["correct"], f"{key}.correct", 0, count)
        for name in ("loss_sum", "seconds", "data_wait"):
            f.optional(t.get(name), f.number, f"{key}.{name}", 0)
    if state.get("world_size") is not None:
        world = f.integer(state["world_size"], p + "world_size", 1, checks.MAX_RANKS)
        if world != len(totals):
            raise CheckpointError(f"{f.prefix}field '{p}world_size' is {world} but {p}epoch_totals holds "
                                  f"{len(totals)} ranks")
    f.optional(state.get("frozen"), f.boolean, p + "frozen")
    f.optional(state.get("epochs_without_improvement"), f.integer, p + "epochs_without_improvement", 0,
               checks.MAX_EPOCHS)
    _check_optimizer(f, state["optimizer"], _optimizer_shapes(f, state.get("optimizer_params"), params), check_finite)
    if state.get("scaler"):  # None or {} when fp16 loss scaling is off
        scaler = f.mapping(state["scaler"], p + "scaler", required=("scale", "growth_factor", "backoff_factor",
                                                                    "growth_interval", "_growth_tracker"))
        f.number(scaler["scale"], p + "scaler.scale", 0, lo_open=True)
        f.number(scaler["growth_factor"], p + "scaler.growth_factor", 0, lo_open=True)
        f.number(scaler["backoff_factor"], p + "scaler.backoff_factor", 0, lo_open=True)
        f.integer(scaler["growth_interval"], p + "scaler.growth_interval", 1, checks.MAX_STEPS)
        f.integer(scaler["_growth_tracker"], p + "scaler._growth_tracker", 0, checks.MAX_STEPS)
    _check_rng(f, state["rng"])


def _optimizer_shapes(f: Fields, listed: Any, params: list[tuple[str, tuple[int, ...]]]) -> list[tuple[int, ...]]:
    """The shapes of the optimizer's parameters in the order its state numbers them: those `optimizer_params` names
    (a fine-tuned run's optimizer holds only what trains), else every parameter in model order."""
    if listed is None:
        return [shape for _, shape in params]
    shapes = dict(params)
    key = "train_state.optimizer_params"
    names = f.items(listed, key, 0, len(params))
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in shapes:
            f.fail(f"{key}[{i}]", "the name of one of the model's parameters", name)
    if len(set(names)) != len(names):
        f.fail(key, "distinct names", names)
    return [shapes[name] for name in names]


def _check_optimizer(f: Fields, opt: Any, params: list[tuple[int, ...]], check_finite: bool) -> None:
    """torch.optim's state_dict: groups whose ids cover the model's parameters once, per-parameter state that fits
    them (a momentum buffer of the wrong shape would only fail at the first step, or broadcast silently)."""
    f.mapping(opt, "train_state.optimizer", required=("state", "param_groups"), extra=False)
    groups = f.items(opt["param_groups"], "train_state.optimizer.param_groups", 1, 64)
    ids: list[int] = []
    for g, group in enumerate(groups):
        key = f"train_state.optimizer.param_groups[{g}]"
        f.mapping(group, key, required=("params", "lr"))
        ids += [f.integer(i, f"{key}.params", 0, len(params) - 1)
                for i in f.items(group["params"], f"{key}.params", 0, len(params))]
        for name, value in group.items():
            if name != "params":
                _check_hyperparameter(f, value, f"{key}.{name}")
        f.number(group["lr"] if not isinstance(group["lr"], torch.Tensor) else group["lr"].item(), f"{key}.lr", 0)
    if sorted(ids) != list(range(len(params))):
        raise CheckpointError(f"{f.prefix}field 'train_state.optimizer.param_groups' covers {len(ids)} parameter ids, "
                              f"the run trains {len(params)} parameters (ids 0..{len(params) - 1}, each once)")
    state = opt["state"]
    if not isinstance(state, dict):
        f.fail("train_state.optimizer.state", "a mapping of parameter ids", state)
    for pid, entry in state.items():
        key = f"train_state.optimizer.state[{short(pid)}]"
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 <= pid < len(params):
            f.fail("train_state.optimizer.state", f"keyed by parameter ids 0..{len(params) - 1}", pid)
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
    f.mapping(rng, "train_state.rng", required=("python", "numpy", "torch"), optional=("cuda",), extra=False)
    py = f.items(rng["python"], "train_state.rng.python", 3, 3)
    f.integer(py[0], "train_state.rng.python[0]", 3, 3)  # random.VERSION
    internal = f.items(py[1], "train_state.rng.python[1]", 625, 625)
    for i, word in enumerate(internal[:624]):
        f.integer(word, f"train_state.rng.python[1][{i}]", 0, (1 << 32) - 1)
    f.integer(internal[624], "train_state.rng.python[1][624]", 0, 624)
    f.optional(py[2], f.number, "train_state.rng.python[2]")
    np_state = f.mapping(rng["numpy"], "train_state.rng.numpy", required=("bit_generator", "key", "pos", "has_gauss", "gauss"),
                         extra=False)
    f.text(np_state["bit_generator"], "train_state.rng.numpy.bit_generator", choices=("MT19937",))
    key = np_state["key"]
    if not isinstance(key, torch.Tensor) or tuple(key.shape) != (624,) or key.dtype != torch.int64:
        f.fail("train_state.rng.numpy.key", "an int64 tensor of 624 values", key)
    f.integer(np_state["pos"], "train_state.rng.numpy.pos", 0, 624)
    f.integer(np_state["has_gauss"], "train_state.rng.numpy.has_gauss", 0, 1)
    f.number(np_state["gauss"], "train_state.rng.numpy.gauss")
    size = torch.get_rng_state().numel()
    for name, state in [("train_state.rng.torch", rng["torch"])] + [
            (f"train_state.rng.cuda[{i}]", s) for i, s in enumerate(f.items(rng.get("cuda", []), "train_state.rng.cuda", 0, 1024))]:
        want = size if name == "train_state.rng.torch" else None
        if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8 or state.dim() != 1 or (
                want is not None and state.numel() != want) or state.numel() > 1 << 20:
            f.fail(name, f"a uint8 tensor of {want or 'at most 1048576'} bytes", state)
    # The right shapes can still hold a state the generators reject ("Invalid mt19937 state" from torch, a
    # ValueError from numpy): try them on scratch generators now, not on the global ones mid-resume.
    for name, apply in (
        ("train_state.rng.python", lambda: random.Random().setstate(as_tuple(rng["python"]))),
        ("train_state.rng.numpy", lambda: np.random.RandomState().set_state(
            ("MT19937", np_state["key"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
             np_state["gauss"]))),
        ("train_state.rng.torch", lambda: torch.Generator().set_state(rng["torch"])),
    ):
        try:
            apply()
        except (ValueError, TypeError, RuntimeError, OverflowError) as e:
            raise CheckpointError(f"{f.prefix}field '{name}' is not a valid generator state ({first_line(e)})") from None
