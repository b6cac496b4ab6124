"""Training: `fit()` is the one place that wires files -> dataset -> batches -> model -> loss/optimizer ->
checkpoint/metrics. Read it top to bottom to see a whole run; each step it calls is a function below, and the pieces
those call live in alexnet.training (one job per module, see its docstring).

Exact resume: every random draw is seeded by its position (alexnet.training.determinism), and a checkpoint holds
the weights and the whole `TrainState` (alexnet.training.state), so a resumed run draws exactly what the
uninterrupted run drew and, on CPU with `--deterministic`, ends with bitwise-equal weights.

Batch size is GLOBAL: each torchrun rank takes a contiguous part of every batch, and the loss is scaled so that
DDP's gradient mean equals the gradient of the whole batch's mean loss.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet.config import TrainConfig, load_yaml, merge, overrides_to_dict, parse_duration, save_yaml
from alexnet.data import at_image_size, build_datasets
from alexnet.errors import AlexNetError, CheckpointError, ConfigError, DataError
from alexnet.models import build_from_config, model_config
from alexnet.runtime import distributed
from alexnet.runtime.amp import AMP_DTYPES
from alexnet.runtime.distributed import DistInfo
from alexnet.runtime.memory import keep_freed_memory
from alexnet.runtime.precision import auto_amp, precision_line, warn_if_slow
from alexnet.store.checkpoint import Checkpoint, load_checkpoint, plain, remove_stale_temporaries, run_dir_of
from alexnet.store.runfolder import (
    RunLock,
    RunPaths,
    check_new_run_folder,
    default_output_dir,
    refuse_if_locked,
    truncate_metrics,
)
from alexnet.training import balance
from alexnet.training.adapt import apply_to_run
from alexnet.training.batches import build_batches
from alexnet.training.budget import plan_budget, schedule_epochs
from alexnet.training.determinism import (
    CUBLAS_DETERMINISTIC,
    check_deterministic_backward,
    set_determinism,
)
from alexnet.training.ema import WeightAverage
from alexnet.training.epoch import ChanceWatch, TrainingError
from alexnet.training.estimate import log_first_run_estimate
from alexnet.training.finetune import (
    Freezer,
    InitialWeights,
    apply_initial_weights,
    read_initial_weights,
    resolve_preprocessing,
)
from alexnet.training.loop import EpochLoop, RunContext, RunData, checkpoint_record, wrap_model
from alexnet.training.lr_find import find_lr
from alexnet.training.optim import LRSchedule, build_optimizer
from alexnet.training.report import RunLog, describe_run, gap_line, make_bar
from alexnet.training.rungs import choose_rung
from alexnet.training.signals import RunInterrupted, StopFlag
from alexnet.training.state import TrainState
from alexnet.training.tensorboard import hyperparameters
from alexnet.training.whiten import whiten_conv1

__all__ = ["FitResult", "RunInterrupted", "TrainingError", "fit", "resume_config"]


@dataclass
class FitResult:
    run_dir: Path
    epochs_done: int
    global_step: int
    best_val_top1: float
    rows: list[dict[str, Any]]  # metrics.csv, one dict per epoch
    reached_max_steps: bool = False  # run.max_steps reached before the last epoch ended
    early_stopped: bool = False  # --early-stop: validation top-1 stopped improving


def fit(cfg: TrainConfig, resume: str | Path | None = None, *, progress: bool | None = None,
        started: float | None = None) -> FitResult:
    """Train `cfg`; with `resume` (a run folder or checkpoint), continue that run exactly where it stopped.
    `started`: the time.perf_counter() reading a --time-budget counts from (default: now). Under torchrun every
    rank calls this; rank 0 alone prints and writes files."""
    started = time.perf_counter() if started is None else started  # a --time-budget counts from here
    info = distributed.env_info()
    device = open_device(cfg, info)
    stop = StopFlag()
    lock: RunLock | None = None
    try:
        if cfg.run.batch_size < info.world_size:
            raise AlexNetError(f"field 'run.batch_size' ({cfg.run.batch_size}) is smaller than the number of ranks "
                               f"({info.world_size}): it is the global batch, split over ranks")
        set_determinism(cfg.run.deterministic, device)
        ckpt = checkpoint_to_resume(resume, info) if resume is not None else None
        # --init-from on a new run: its weights, and its input size and preset where the run leaves them open
        init = read_initial_weights(cfg.model.init_from) if cfg.model.init_from and ckpt is None else None
        cfg, taken = resolve_preprocessing(cfg, init)
        ctx, lock = open_run_folder(cfg, resume, ckpt, info, device, stop)
        if taken:
            ctx.log(f"from {cfg.model.init_from}: {', '.join(taken)}")
        ctx, data = build_data(ctx, started if ckpt is None else None)
        cfg = ctx.cfg
        raw_model, freezer = build_run_model(ctx, data, ckpt, init)
        if ckpt is None:
            ctx = start_new_run(ctx, data, raw_model, init)
            cfg = ctx.cfg
        state = build_state(ctx, raw_model, freezer, len(data.train_source), len(data.class_names), ckpt)
        if cfg.run.lr_find:  # the range test instead of training: a copy trains, nothing is saved but the plot
            find_lr(ctx, raw_model, state, data.train_source)
            return FitResult(run_dir=ctx.paths.root, epochs_done=0, global_step=0, best_val_top1=-math.inf, rows=[])
        keeper = None
        if cfg.run.time_budget and ckpt is None:  # planned once; a resume follows the recorded plan
            ctx, keeper = plan_budget(ctx, raw_model, state, data.train_source, len(data.bundle.val), started,
                                      record=lambda train_state: checkpoint_record(cfg, raw_model, data, train_state))
            cfg = ctx.cfg
        # a new user's first run (no recipe, on a CPU): how long it will take, and a shorter run when that is long
        log_first_run_estimate(ctx, raw_model, state, data.train_source, len(data.bundle.val), ckpt is not None)
        model = wrap_model(ctx, raw_model)
        # Signals: finish the step, save, stop. Installed before the collective below, so that once rank 0 goes on
        # every rank honours a SIGTERM (with a checkpoint) instead of dying of it.
        stop.install()
        rows = prepare_run_folder(ctx, state.epoch)
        announce(ctx, raw_model, data, state, ckpt)
        bar = make_bar(progress, info, total=len(data.train_source) * cfg.run.batch_size)
        loop = EpochLoop(ctx, data, state, raw_model, model, rows, bar, budget=keeper)
        reached_max_steps = loop.run()
        bar.close()
        return finish_run(ctx, loop, reached_max_steps, started)
    finally:
        stop.restore()
        if lock is not None:
            lock.release()
        distributed.cleanup()


# --- the steps fit() calls, in order ------------------------------------------------------------------------------


def open_device(cfg: TrainConfig, info: DistInfo) -> torch.device:
    """The run's device, made ready: its process group under torchrun, and on the CPU the allocator's policy."""
    if cfg.run.deterministic and cfg.run.device != "cpu":
        # cuBLAS reads it when its first handle is made: set before anything below can touch CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    device = distributed.resolve_device(cfg.run.device, info)
    if device.type == "cpu":  # no page faults on each step's activations (alexnet.runtime.memory)
        keep_freed_memory()
    distributed.setup(info, device)
    return device


def open_run_folder(cfg: TrainConfig, resume: str | Path | None, ckpt: Checkpoint | None, info: DistInfo,
                    device: torch.device, stop: StopFlag) -> tuple[RunContext, RunLock | None]:
    """The run folder (a new one, or the one being resumed) with its lock: one writer per folder, rank 0 for all."""
    run_dir = Path(resume).resolve() if resume is not None and Path(resume).is_dir() else None
    if ckpt is not None and run_dir is None:
        run_dir = run_dir_of(Path(ckpt.path))
    if run_dir is None:
        run_dir = Path(cfg.run.output_dir or default_output_dir(cfg)).resolve()
    paths = RunPaths(run_dir)
    lock = None
    try:
        with distributed.fail_together("checking the run folder"):
            if info.is_main:
                if ckpt is None:
                    check_new_run_folder(run_dir)
                lock = RunLock(run_dir).acquire()
                if ckpt is None and paths.last.exists():
                    raise ConfigError(f"{run_dir} already holds a run (checkpoints/last.pt): continue it with "
                                      f"--resume {run_dir}, or choose another --output-dir")
    except BaseException:
        if lock is not None:  # refused after taking it (or another rank failed): the folder is free again at once
            lock.release()
        raise
    log = RunLog(paths.log if info.is_main else None, enabled=info.is_main)
    log(f"run folder: {run_dir}")
    if cfg.run.amp == "auto":  # resolved once, here: config.yaml and the checkpoints record the precision used
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, amp=auto_amp(device.type)))
        log(f"amp auto: {cfg.run.amp} (measured on this machine: {precision_line(device.type)})")
    elif info.is_main:  # an explicit --amp that measured clearly slower than fp32 on this CPU: say so with the factor
        warn_if_slow(cfg.run.amp, device.type, emit=log)
    return RunContext(cfg, info, device, AMP_DTYPES[cfg.run.amp], paths, log, stop), lock


def build_data(ctx: RunContext, started: float) -> tuple[RunContext, RunData]:
    """Datasets and batches. The model variant decides channels and the default input size; the data decides the
    number of classes; a recipe that leaves the input size and width to a budgeted run has them chosen here, before
    the photos are decoded (training.rungs). An error on any rank stops every rank (no rank is left waiting in a
    collective)."""
    cfg, info = ctx.cfg, ctx.info
    source = cfg.data.source or "the built-in dataset"
    ctx.log(f"preparing data: {source} (decoded once into the uint8 cache under $ALEXNET_CACHE; the first use takes "
            "longer)" if cfg.data.loader == "cache" else f"preparing data: {source}")
    if not info.is_main:  # the data layer reports each skipped file once: on rank 0, not once per rank
        logging.getLogger("alexnet.data").setLevel(logging.ERROR)
    with distributed.fail_together("preparing the data"):
        with distributed.rank0_first(info, "preparing the data"):  # the built-in dataset and caches: once per machine
            bundle = read_data(ctx.cfg, info)
            sized = choose_rung(ctx, len(bundle.train), len(bundle.class_names), started)
            ctx, cfg = sized, sized.cfg
            base = model_config(cfg.model.name, **cfg.model.architecture())
            image_size = cfg.data.image_size or base.image_size
            if image_size != bundle.image_size:  # the rung's size: new transforms, the same scan
                bundle = at_image_size(bundle, image_size, cfg.data.augment)
            train_source, val_batches = build_batches(cfg, bundle, image_size, base.in_channels, info, ctx.device)
        if len(bundle.val) == 0:
            raise DataError(f"{bundle.source}: the validation split is empty; training needs validation "
                            "images (they choose best.pt and drive the plateau schedule): add a val/ folder "
                            "or more images per class")
    if info.world_size > 1:  # DDP would silently average different data (the identity hashes every file name)
        distributed.check_same("data", distributed.data_identity(bundle))
    config = dataclasses.replace(base, num_classes=len(bundle.class_names), image_size=image_size)
    weights, warning = balance.prepare(cfg, bundle.train.targets, bundle.class_names, ctx.device)
    if warning:
        ctx.log(warning)
    return ctx, RunData(bundle, config, train_source, val_batches, weights)


def read_data(cfg: TrainConfig, info: DistInfo) -> Any:
    """The run's DataBundle: its source scanned (nothing decoded yet) at the run's input size."""
    base = model_config(cfg.model.name, **cfg.model.architecture())
    return build_datasets(
        source=distributed.data_source_for_rank(cfg.data.source, info),
        image_size=cfg.data.image_size or base.image_size, in_channels=base.in_channels, preset=cfg.data.preset,
        val_split=cfg.data.val_split, seed=cfg.data.split_seed, strict=cfg.data.strict, download=cfg.data.download,
        root=cfg.data.root, augment=cfg.data.augment, layout=cfg.data.layout, pixel_scale=cfg.data.pixel_scale,
    )


def build_run_model(ctx: RunContext, data: RunData, ckpt: Checkpoint | None,
                init: InitialWeights | None) -> tuple[torch.nn.Module, Freezer]:
    """The model, with the checkpoint's weights on resume or the --init-from weights on a new run, on its device and
    memory format, with its --freeze part fixed. The same init on every rank (DDP also broadcasts rank 0's)."""
    cfg, device = ctx.cfg, ctx.device
    torch.manual_seed(cfg.run.seed)
    raw_model = build_from_config(data.model_config)
    if ckpt is not None:
        ckpt.check_matches({"model_name": cfg.model.name, "class_names": data.class_names,
                            "image_size": data.image_size, "in_channels": data.model_config.in_channels,
                            "model_args": plain(dataclasses.asdict(raw_model.config))}, "resume")
        raw_model.load_state_dict(ckpt.weights)
    elif init is not None:
        for line in apply_initial_weights(raw_model, init):
            ctx.log(line)
    freezer = Freezer(raw_model, cfg.model.freeze, cfg.model.freeze_epochs)
    if freezer.modules:
        ctx.log(freezer.describe())
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    raw_model.to(device=device, memory_format=memory_format)
    if cfg.run.deterministic and device.type != "cpu":
        check_deterministic_backward(raw_model, device, data.image_size, data.model_config.in_channels,
                                     ctx.amp_dtype, memory_format, cfg.model.name)
    return raw_model, freezer


def start_new_run(ctx: RunContext, data: RunData, raw_model: torch.nn.Module, init: InitialWeights | None) -> RunContext:
    """What only a new run does before its state is built: conv1 from the training patches (--conv1-init patches,
    not over --init-from weights), and a recipe's regularisation for its epochs (a budget adapts to the epochs it
    plans instead, in plan_budget)."""
    cfg = ctx.cfg
    if cfg.model.conv1_init == "patches" and init is None:
        ctx.log(whiten_conv1(raw_model, data.train_source.images, data.val_batches.augment))
    if cfg.run.adapt and not cfg.run.time_budget:
        ctx = apply_to_run(ctx, data.train_source, None, raw_model, cfg.run.epochs,
                           cfg.run.epochs * len(data.train_source))
    return ctx


def build_state(ctx: RunContext, raw_model: torch.nn.Module, freezer: Freezer, steps_per_epoch: int,
                num_classes: int, ckpt: Checkpoint | None) -> TrainState:
    """Optimizer (of what trains), schedule and loss scaling, at the start of the run or exactly where the
    checkpoint left off."""
    cfg = ctx.cfg
    state = TrainState(
        optimizer=build_optimizer(cfg.optim, raw_model),
        schedule=LRSchedule(cfg.optim, schedule_epochs(cfg, steps_per_epoch), steps_per_epoch),
        scaler=torch.amp.GradScaler(ctx.device.type) if ctx.amp_dtype == torch.float16 else None,
        chance=ChanceWatch(num_classes, cfg.run.chance_warn_steps),
        freezer=freezer, backbone_lr_mult=cfg.optim.backbone_lr_mult,
        param_names={id(p): name for name, p in raw_model.named_parameters()},
        ema=WeightAverage(raw_model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None,
    )
    if ckpt is not None:
        state.load_state_dict(ckpt.train_state, ctx.info)
    return state


def announce(ctx: RunContext, raw_model: torch.nn.Module, data: RunData, state: TrainState,
             ckpt: Checkpoint | None) -> None:
    """The run's description for the user (and log.txt): where a resume starts, what trains on what."""
    if ckpt is not None:
        ctx.log(f"resuming from {ckpt.path}: epoch {state.epoch + 1}, step {state.step_in_epoch} of "
                f"{len(data.train_source)}")
    ctx.log(describe_run(ctx.cfg, raw_model, data.bundle, data.image_size, ctx.device, ctx.info,
                         len(data.train_source)))
    for path, reason in list(getattr(data.bundle, "skipped", []) or []):  # shown by the data layer; kept in log
        ctx.log(f"skipped {path}: {reason}", console=False)


def finish_run(ctx: RunContext, loop: EpochLoop, reached_max_steps: bool, started: float) -> FitResult:
    """The run's last words: TensorBoard's hyperparameters, how a time budget was spent, the best score."""
    cfg, state, rows = ctx.cfg, loop.state, loop.rows
    if loop.tensorboard is not None:
        loop.tensorboard.finish(hyperparameters(cfg), state.best_val_top1)
    if cfg.run.time_budget:
        reached_max_steps = False  # the plan's last step is its end, not an interruption
        ctx.log(f"time budget {parse_duration(cfg.run.time_budget):.0f} s: the run took "
                f"{time.perf_counter() - started:.1f} s, of which {loop.seconds:.1f} s "
                "training and validating")
    augmented = bool(cfg.data.crop_scale) or cfg.data.augment or (cfg.data.augment is None and cfg.data.preset == "paper")
    gap = gap_line(rows[-1], augmented=bool(augmented)) if rows else None
    if gap:
        ctx.log(gap)
    ctx.log(f"best val top-1 {state.best_val_top1:.4f}; results in {ctx.paths.root}")
    return FitResult(run_dir=ctx.paths.root, epochs_done=state.epoch, global_step=state.global_step,
                     best_val_top1=state.best_val_top1, rows=rows, reached_max_steps=reached_max_steps,
                     early_stopped=loop.early_stopped)


def prepare_run_folder(ctx: RunContext, epoch: int) -> list[dict[str, Any]]:
    """checkpoints/, config.yaml, and metrics.csv cut to the epochs done (a resumed run rewrites the later ones)."""
    rows: list[dict[str, Any]] = []
    with distributed.fail_together("writing the run folder"):
        if ctx.info.is_main:
            ctx.paths.checkpoints.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(ctx.paths.checkpoints)
            save_yaml(ctx.cfg, ctx.paths.config)
            rows = truncate_metrics(ctx.paths.metrics, keep_epochs=epoch)
    return rows


def checkpoint_to_resume(resume: str | Path, info: DistInfo) -> Checkpoint:
    """The last checkpoint of the run to resume; a run still alive in that folder is refused first, naming its pid,
    whether or not it has written a checkpoint yet. Rank 0 alone probes: under torchrun the lock it is about to take
    is its own, and another rank could see it taken."""
    path = Path(resume)
    if info.is_main and (path.is_dir() or path.is_file()):
        refuse_if_locked(path if path.is_dir() else run_dir_of(path))
    return load_checkpoint(resume, prefer="last")


def resume_config(resume: str | Path, config_path: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration of the run being resumed, with the user's YAML and flags on top. fit() then refuses
    changes that would not fit the checkpoint (model, classes, size).

    The base is the checkpoint's own config, the one its weights were trained with, and never config.yaml: that
    file is a copy for people to read, and one cut by a crash or edited by hand must not change (or silently
    default) a resumed run. Changes go through --config and flags."""
    ckpt = checkpoint_to_resume(resume, distributed.env_info())
    if not isinstance(ckpt.config, dict):
        raise CheckpointError(f"{ckpt.path}: the checkpoint lacks its run's 'config'; cannot resume from it")
    user = load_yaml(config_path) if config_path is not None else {}
    user.pop("recipe", None)
    return TrainConfig.from_dict(merge(merge(ckpt.config, user), overrides_to_dict(overrides or {})),
                                 origin="resume")
