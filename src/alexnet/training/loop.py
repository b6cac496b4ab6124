"""The epochs of a run: steps (alexnet.training.epoch), and around them what a run does between steps and epochs:
read-back points, periodic checkpoints, signals, validation, metrics.csv, last.pt / best.pt and the plots.

`EpochLoop` holds the objects the run was built from and the one mutable `TrainState`; its methods are the hooks
`train_one_epoch` calls (`must_sync`, `after_step`) and the epoch's end (`end_epoch`). `RunContext` and `RunData`
are what the run was built on (alexnet.train builds them); `wrap_model` and `checkpoint_record` are what the loop
makes of the model again and again: the module the steps run, and the record a checkpoint holds.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import torch

from alexnet.config import TrainConfig, save_yaml
from alexnet.errors import plural
from alexnet.evaluate import evaluate
from alexnet.runtime import distributed
from alexnet.runtime.distributed import DistInfo
from alexnet.store.checkpoint import Checkpoint, Preprocessing, plain, save_checkpoint
from alexnet.store.checkpoint import versions as library_versions
from alexnet.store.runfolder import RunPaths, draw_plots, write_metrics
from alexnet.training.batches import BatchSource
from alexnet.training.budget import BudgetKeeper
from alexnet.training.curve import TrainingCurve
from alexnet.training.epoch import (
    EpochHooks,
    EpochSettings,
    StepStats,
    TrainingError,
    WeightUpdate,
    check_validation,
    first_non_finite,
    reduce_totals,
    resolve_sync_every,
    train_one_epoch,
)
from alexnet.training.report import RunLog, d2l_line
from alexnet.training.signals import RunInterrupted, StopFlag
from alexnet.training.state import TrainState
from alexnet.training.tensorboard import TensorBoardLog


@dataclass
class RunContext:
    """Where and how the run executes: fixed for its whole length (but `cfg`, which a time budget's new plan
    shortens or lengthens)."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    paths: RunPaths
    log: RunLog
    stop: StopFlag

    def probe_settings(self) -> EpochSettings:
        """The steps of a scratch copy of the model (--lr-find, the --time-budget probe): the run's device,
        precision and memory format, seed 0, no label smoothing, the loss read at every step."""
        return EpochSettings(seed=0, info=self.info, device=self.device, amp_dtype=self.amp_dtype,
                             channels_last=self.cfg.run.channels_last, label_smoothing=0.0, sync_every=1)


@dataclass
class RunData:
    """The datasets and this rank's batches, with what the model needs to know of them."""

    bundle: Any  # alexnet.data.DataBundle
    model_config: Any  # the variant's AlexNetConfig, sized for this data (input size, channels, classes)
    train_source: BatchSource
    val_batches: Any
    class_weights: torch.Tensor | None = None  # the loss's weight per class (training.balance)

    @property
    def image_size(self) -> int:
        return self.model_config.image_size

    @property
    def class_names(self) -> list[str]:
        return list(self.bundle.class_names)


def wrap_model(ctx: RunContext, raw_model: torch.nn.Module) -> torch.nn.Module:
    """The module the steps run: DDP- and torch.compile-wrapped as asked. DDP registers the parameters that train
    when it is made, so a run that unfreezes makes it again (EpochLoop)."""
    model: torch.nn.Module = raw_model
    if ctx.info.enabled:
        device = ctx.device
        model = torch.nn.parallel.DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    if ctx.cfg.run.compile:
        model = torch.compile(model)
    return model


def checkpoint_record(cfg: TrainConfig, raw_model: torch.nn.Module, data: RunData,
                      train_state: dict[str, Any]) -> Checkpoint:
    """What last.pt and best.pt hold: tensors and plain types only (weights_only=True loads them)."""
    bundle = data.bundle
    return Checkpoint(
        model_name=cfg.model.name, model_args=plain(dataclasses.asdict(raw_model.config)),
        weights=raw_model.state_dict(), class_names=data.class_names,
        preprocessing=Preprocessing(data.image_size, data.model_config.in_channels, bundle.preset,
                                    tuple(bundle.mean), tuple(bundle.std)),
        data=plain(bundle.describe()), config=cfg.to_dict(), train_state=train_state, versions=library_versions(),
    )


class EpochLoop:
    def __init__(self, ctx: RunContext, data: RunData, state: TrainState, raw_model: torch.nn.Module,
                 model: torch.nn.Module, rows: list[dict[str, Any]], bar: Any, budget: BudgetKeeper | None = None):
        """`model` is `raw_model` as the steps run it (wrap_model); `rows` are metrics.csv's rows of the epochs
        done; `budget` holds a --time-budget run to its budget."""
        cfg = ctx.cfg
        self.ctx, self.data, self.state = ctx, data, state
        self.raw_model, self.model = raw_model, model
        self.rows, self.bar, self.budget = rows, bar, budget
        self.settings = EpochSettings(
            seed=cfg.run.seed, info=ctx.info, device=ctx.device, amp_dtype=ctx.amp_dtype,
            channels_last=cfg.run.channels_last, label_smoothing=cfg.optim.label_smoothing,
            sync_every=resolve_sync_every(cfg.run.sync_every, ctx.device), class_weights=data.class_weights)
        self.hooks = EpochHooks(must_sync=self.must_sync, after_step=self.after_step, train_mode=state.train_mode)
        self.tensorboard = (TensorBoardLog(ctx.paths.tensorboard, resume_step=state.global_step)
                            if cfg.run.tensorboard and ctx.info.is_main else None)
        self.early_stopped = False
        self.seconds = 0.0  # this process's epochs, training and validating, validated or not
        self.curve = (TrainingCurve(ctx.paths.curve, cfg.run.curve_points, len(data.train_source), state.global_step)
                      if cfg.run.curve_points and ctx.info.is_main else None)

    # --- between steps -------------------------------------------------------------------------------------------

    def checkpoint_due(self, step: int, number: int) -> bool:
        """The `--save-every-steps` checkpoint after global step `number` (epoch ends save anyway)."""
        every = self.ctx.cfg.run.save_every_steps
        return bool(every) and number % every == 0 and step + 1 < len(self.data.train_source)

    def must_sync(self, step: int) -> bool:
        """Steps after which after_step may checkpoint or stop: their losses must be read first. The same on
        every rank; a signal counts on a single process only (under torchrun ranks agree at read steps)."""
        number = self.state.global_step + 1
        max_steps = self.ctx.cfg.run.max_steps
        return (self.checkpoint_due(step, number) or (max_steps is not None and number >= max_steps)
                or distributed.stop_agreement_due(number, self.ctx.info, bool(self.ctx.stop.signum)))

    def after_step(self, step: int, images: int, reads: list[StepStats] | None) -> bool:
        """Progress, the chance warning, periodic checkpoints and signals; True when the run must stop now."""
        ctx, state = self.ctx, self.state
        state.global_step += 1
        state.step_in_epoch = step + 1
        if state.ema is not None:
            state.ema.update(self.raw_model)
        self.bar.update(images)
        if reads is None:  # the loss stays on the device this step: nothing to show, save or agree on
            return False
        for number, read in enumerate(reads, start=state.global_step - len(reads) + 1):  # each read's step number
            warning = state.chance.check(number, read)
            if warning:
                ctx.log(warning)
            if self.curve is not None:
                self.curve.add(number, read)
        lr = state.optimizer.param_groups[0]["lr"]
        self.bar.set_postfix(loss=f"{reads[-1].loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        if self.tensorboard is not None:
            self.tensorboard.step(state.global_step, reads[-1].loss, lr)
        if self.budget is not None and ctx.info.world_size == 1 and state.global_step % self.budget.every == 0:
            self.budget.observe(state.global_step)  # mid-epoch on one process; ranks agree at epoch ends
            self.follow(self.budget.replan(ctx.cfg, state.global_step, state.step_in_epoch))
        stopping = ctx.stop.agreed(ctx.device, ctx.info)
        if stopping or self.checkpoint_due(step, state.global_step):
            self.save("saving a checkpoint", best=False)
        if stopping:
            raise RunInterrupted(f"{ctx.stop.name}: finished step {step + 1} of epoch {state.epoch + 1} and saved "
                                 f"{ctx.paths.last}; continue with: alexnet train --resume {ctx.paths.root}",
                                 ctx.stop.signum)
        return ctx.cfg.run.max_steps is not None and state.global_step >= ctx.cfg.run.max_steps

    def follow(self, replanned: tuple[TrainConfig, str] | None) -> bool:
        """Take a shorter budget plan: the config the run (and its next checkpoint) follows, and the schedule."""
        if replanned is None:
            return False
        cfg, message = replanned
        self.ctx.cfg = cfg
        state, steps = self.state, len(self.data.train_source)
        state.schedule.respan(cfg.run.max_steps / steps, state.epoch + state.step_in_epoch / steps)
        self.ctx.log(message)
        if self.ctx.info.is_main:
            save_yaml(cfg, self.ctx.paths.config)  # the people's copy; the checkpoints record it too
        return True

    def budget_epoch_end(self, eval_s: float | None) -> None:
        """After an epoch's end (`eval_s`: what it took, None when it did not validate): plan again from the figures
        of the slowest rank and the least time left."""
        budget, state = self.budget, self.state
        if eval_s is not None:
            budget.epoch_end(eval_s)
        ranks = distributed.all_gather((budget.step_s, budget.eval_s, budget.deadline - time.perf_counter()))
        step_s, eval_s, left_s = (max(r[0] for r in ranks), max(r[1] for r in ranks), min(r[2] for r in ranks))
        if self.follow(budget.replan(self.ctx.cfg, state.global_step, state.step_in_epoch, step_s=step_s,
                                     eval_s=eval_s, now=budget.deadline - left_s)):
            self.save("recording the shorter plan", best=False)  # last.pt, which a resume follows, has it too

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def kept(self) -> str:
        """What a refusal to save leaves behind, for its message."""
        if self.state.saved_step is None:
            return "no checkpoint had been written yet, and none was"
        both = self.ctx.paths.best.exists()
        return (f"{self.ctx.paths.last}{' and best.pt are' if both else ' is'} left as "
                f"{'they were' if both else 'it was'} (last.pt from global step {self.state.saved_step})")

    def checkpoint(self) -> Checkpoint:
        """The record of the state as it is now. Never of weights or optimizer state that are not all finite: the
        step before a save may have diverged after its loss was read. Collective under torchrun."""
        state = self.state
        bad = first_non_finite(self.raw_model, state.optimizer, self.ctx.device)  # every rank stops at once
        if bad is not None:
            raise TrainingError(
                f"{bad} holds NaN or Inf after global step {state.global_step} (epoch {state.epoch + 1}): the run "
                f"diverged, so it was not saved and training stopped; {self.kept()}. Usual causes: a learning rate "
                "too high for this optimizer/init (try 10x lower), fp16 overflow (--amp bf16 or none)")
        # ctx.cfg: a time budget's keeper may shorten the plan, and the checkpoint records it
        return checkpoint_record(self.ctx.cfg, self.raw_model, self.data, state.state_dict(self.ctx.info))

    def save(self, what: str, best: bool, metrics: bool = False, best_is_ema: bool = False) -> None:
        """last.pt, and best.pt when `best`: of the moving average's weights when `best_is_ema`."""
        record = self.checkpoint()
        ctx = self.ctx
        if best and best_is_ema:
            best_record = dataclasses.replace(record, weights=self.state.ema.module.state_dict())
        with distributed.fail_together(what):
            if ctx.info.is_main:
                if metrics:
                    write_metrics(ctx.paths.metrics, self.rows)
                    if self.curve is not None:
                        self.curve.save()
                save_checkpoint(record, ctx.paths.last)
                if best:
                    save_checkpoint(best_record if best_is_ema else record, ctx.paths.best)
                if metrics:
                    draw_plots(ctx.paths, self.rows, self.raw_model, ctx.cfg)
        self.state.saved_step = self.state.global_step

    # --- epochs --------------------------------------------------------------------------------------------------

    def run(self) -> bool:
        """Train until the last epoch ends (False) or run.max_steps stops it mid-epoch (True)."""
        state = self.state
        steps = len(self.data.train_source)
        while state.epoch < self.ctx.cfg.run.epochs:
            cfg = self.ctx.cfg  # a time budget's keeper may shorten the plan
            if self.budget is not None:
                self.budget.start_epoch(state.global_step)
            if state.freezer is not None and state.freezer.due(state.epoch):
                count = sum(p.numel() for p in state.release())
                self.model = wrap_model(self.ctx, self.raw_model)
                self.ctx.log(f"epoch {state.epoch + 1}: unfrozen, {count:,} more parameters train from now on")
            self.bar.reset(total=steps * cfg.run.batch_size)
            self.bar.update(state.step_in_epoch * cfg.run.batch_size)
            self.bar.set_description(f"epoch {state.epoch + 1}/{cfg.run.epochs}")
            position = train_one_epoch(self.model, WeightUpdate(state.optimizer, state.schedule, state.scaler),
                                       self.data.train_source, state.epoch, state.step_in_epoch, state.totals,
                                       self.settings, self.hooks)
            complete = position >= steps
            if self.budget is not None:
                self.budget.observe(state.global_step)
            end_start = time.perf_counter()
            validated = self.end_epoch(position, complete)
            if self.budget is not None:
                self.budget_epoch_end(time.perf_counter() - end_start if validated else None)
            cfg = self.ctx.cfg
            reached = cfg.run.max_steps is not None and state.global_step >= cfg.run.max_steps
            if not complete or (reached and state.epoch < cfg.run.epochs):  # run.max_steps: mid-epoch or at its end
                return True
            patience = cfg.run.early_stop
            if patience and state.epochs_without_improvement >= patience and state.epoch < cfg.run.epochs:
                self.early_stopped = True
                self.ctx.log(f"early stop: validation top-1 has not improved for {plural(patience, 'epoch')} (best "
                             f"{state.best_val_top1:.4f}, kept in best.pt)")
                return False
        return False

    def validation_due(self, complete: bool) -> bool:
        """Whether this epoch's end validates: every run.val_every epochs, the last epoch, and a stop mid-epoch."""
        cfg, state = self.ctx.cfg, self.state
        number = state.epoch + 1
        last = number >= cfg.run.epochs or (cfg.run.max_steps is not None and state.global_step >= cfg.run.max_steps)
        return not complete or last or number % (cfg.run.val_every or 1) == 0

    def end_epoch(self, position: int, complete: bool) -> bool:
        """Validate, log the epoch's row, apply the plateau rule, save last.pt (and best.pt when it improved).
        An epoch that is not due for validation (run.val_every) logs its training figures only: its checkpoint
        waits for the next validation, as a budget's plan counts no cost for it (a resume repeats the epochs since,
        drawing exactly what they drew). True when it validated."""
        ctx, cfg, state = self.ctx, self.ctx.cfg, self.state
        eval_start = time.perf_counter()
        class_names = self.data.class_names
        if not self.validation_due(complete):
            train = reduce_totals(state.totals, ctx.device)
            ctx.log(f"epoch {state.epoch + 1}, loss {train['loss']:.4f}, train acc {train['acc']:.3f}, time "
                    f"{train['seconds']:.1f} sec (validated every {plural(cfg.run.val_every, 'epoch')} and after "
                    "the last: run.val_every)")
            state.advance((state.epoch + 1, 0))
            self.seconds += train["seconds"]
            return False
        val, ema_val = self.validate()
        train = reduce_totals(state.totals, ctx.device)
        row = epoch_row(state.epoch, state.optimizer.param_groups[0]["lr"], train, val,
                        train["seconds"] + (time.perf_counter() - eval_start))
        if ema_val is not None:
            row["ema_val_top1"] = ema_val.top1
        self.rows.append(row)
        self.seconds += row["seconds"]
        ctx.log(d2l_line(row))
        ctx.log(f"data wait, epoch {state.epoch + 1}: waited {row['data_wait_s']:.2f} s for batches, "
                f"{100 * row['data_wait_share']:.1f}% of {train['seconds']:.1f} s of training "
                f"({self.data.train_source.describe()})", console=False)
        best_is_ema = ema_val is not None and ema_val.top1 > val.top1
        top1 = ema_val.top1 if best_is_ema else val.top1
        improved = top1 > state.best_val_top1
        state.best_val_top1 = max(state.best_val_top1, top1)
        if complete:
            state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        if self.tensorboard is not None:
            self.tensorboard.epoch(row, state.global_step, self.raw_model.conv1.weight, val.confusion, class_names)
        if complete and state.schedule.end_epoch(top1):  # the plateau rule judges whole epochs only
            ctx.log(f"validation top-1 stopped improving: lr divided by {1 / cfg.optim.gamma:g} "
                    f"({state.schedule.drops} of at most {cfg.optim.max_drops})")
        # A complete epoch moves to the next one; a stop mid-epoch stays at the step reached, for a resume.
        state.advance((state.epoch + 1, 0) if complete else (state.epoch, position))
        self.save("saving the epoch's checkpoints and metrics", best=improved, metrics=True,
                  best_is_ema=best_is_ema)
        return True

    def validate(self) -> tuple[Any, Any]:
        """The weights' validation, and the moving average's (None without --ema-decay), with the run's TTA.
        The bare model, not the DDP wrapper: ranks hold different numbers of val batches, and DDP's forward would
        broadcast BatchNorm buffers (a collective) on each call. best.pt never comes from a NaN evaluation."""
        ctx, cfg = self.ctx, self.ctx.cfg
        models = [self.raw_model] + ([self.state.ema.module] if self.state.ema is not None else [])
        results = []
        for model in models:
            results.append(evaluate(model, self.data.val_batches, self.data.class_names, ctx.device,
                                    amp_dtype=ctx.amp_dtype, channels_last=cfg.run.channels_last, tta=cfg.data.tta))
            check_validation(results[-1], self.state.epoch, self.kept())
        return results[0], (results[1] if len(results) > 1 else None)


def epoch_row(epoch: int, lr: float, train: dict[str, float], val: Any, seconds: float) -> dict[str, Any]:
    """One line of metrics.csv (runfolder.METRIC_COLUMNS)."""
    return {
        "epoch": epoch + 1, "lr": lr,
        "train_loss": train["loss"], "train_acc": train["acc"],
        "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5,
        "seconds": seconds, "images_per_s": train["count"] / max(train["seconds"], 1e-9),
        "data_wait_s": train["data_wait"], "data_wait_share": train["data_wait"] / max(train["seconds"], 1e-9),
    }

