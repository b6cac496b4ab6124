"""The epochs of a run: steps (alexnet.training.epoch), and around them what a run does between steps and epochs:
read-back points, periodic checkpoints, signals, validation, metrics.csv, last.pt / best.pt and the plots.

`EpochLoop` holds the objects the run was built from and the one mutable `TrainState`; its methods are the hooks
`train_one_epoch` calls (`must_sync`, `after_step`) and the epoch's end (`end_epoch`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from alexnet.config import TrainConfig
from alexnet.evaluate import evaluate
from alexnet.runtime import distributed
from alexnet.runtime.distributed import DistInfo
from alexnet.store.checkpoint import Checkpoint, save_checkpoint
from alexnet.store.runfolder import RunPaths, draw_plots, write_config, write_metrics
from alexnet.training.batches import BatchSource
from alexnet.training.epoch import TrainingError, check_validation, first_non_finite, reduce_totals, train_one_epoch
from alexnet.training.report import RunLog, d2l_line
from alexnet.training.signals import RunInterrupted, StopFlag
from alexnet.training.state import TrainState


@dataclass
class RunContext:
    """Where and how the run executes: fixed for its whole length."""

    cfg: TrainConfig
    info: DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    paths: RunPaths
    log: RunLog
    stop: StopFlag


class EpochLoop:
    def __init__(self, ctx: RunContext, model: torch.nn.Module, raw_model: torch.nn.Module, state: TrainState,
                 train_source: BatchSource, val_batches: Any, record: Callable[[dict[str, Any]], Checkpoint],
                 rows: list[dict[str, Any]], class_names: list[str], saved_step: int | None, bar: Any,
                 sync_every: int, wrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m,
                 class_weights: torch.Tensor | None = None):
        self.ctx, self.model, self.raw_model, self.state = ctx, model, raw_model, state
        self.class_weights = class_weights  # the loss's weight per class (training.balance), or None
        self.train_source, self.val_batches = train_source, val_batches
        self.record = record  # train_state -> the checkpoint record to save
        self.rows, self.class_names = rows, class_names
        self.saved_step = saved_step  # the global step last.pt holds (None: none written yet)
        self.bar, self.sync_every = bar, sync_every
        self.wrap = wrap  # raw model -> the module the steps run (DDP, compile), made again when layers unfreeze
        self.tensorboard = None  # a TensorBoardLog on rank 0 with --tensorboard (set by fit)
        self.budget = None  # a training.budget.BudgetKeeper for a --time-budget run (set by fit)
        self.early_stopped = False

    # --- between steps -------------------------------------------------------------------------------------------

    def checkpoint_due(self, step: int, number: int) -> bool:
        """The `--save-every-steps` checkpoint after global step `number` (epoch ends save anyway)."""
        every = self.ctx.cfg.run.save_every_steps
        return bool(every) and number % every == 0 and step + 1 < len(self.train_source)

    def must_sync(self, step: int) -> bool:
        """Steps after which after_step may checkpoint or stop: their losses must be read first. The same on
        every rank; a signal counts on a single process only (under torchrun ranks agree at read steps)."""
        number = self.state.global_step + 1
        max_steps = self.ctx.cfg.run.max_steps
        return (self.checkpoint_due(step, number) or (max_steps is not None and number >= max_steps)
                or distributed.stop_agreement_due(number, self.ctx.info, bool(self.ctx.stop.signum)))

    def after_step(self, step: int, images: int, losses: list[float] | None) -> bool:
        """Progress, the chance warning, periodic checkpoints and signals; True when the run must stop now."""
        ctx, state = self.ctx, self.state
        state.global_step += 1
        state.step_in_epoch = step + 1
        self.bar.update(images)
        if losses is None:  # the loss stays on the device this step: nothing to show, save or agree on
            return False
        for i, loss in enumerate(losses):
            warning = state.chance.check(state.global_step - len(losses) + 1 + i, loss)
            if warning:
                ctx.log(warning)
        lr = state.optimizer.param_groups[0]["lr"]
        self.bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}", refresh=False)
        if self.tensorboard is not None:
            self.tensorboard.step(state.global_step, losses[-1], lr)
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
        state, steps = self.state, len(self.train_source)
        state.schedule.respan(cfg.run.max_steps / steps, state.epoch + state.step_in_epoch / steps)
        self.ctx.log(message)
        if self.ctx.info.is_main:
            write_config(cfg, self.ctx.paths.config)  # the people's copy; the checkpoints record it too
        return True

    def budget_epoch_end(self, eval_s: float) -> None:
        """After an epoch's end: plan again from the figures of the slowest rank and the least time left."""
        budget, state = self.budget, self.state
        budget.epoch_end(eval_s)
        ranks = distributed.all_gather((budget.step_s, budget.eval_s, budget.deadline - time.perf_counter()))
        step_s, eval_s, left_s = (max(r[0] for r in ranks), max(r[1] for r in ranks), min(r[2] for r in ranks))
        if self.follow(budget.replan(self.ctx.cfg, state.global_step, state.step_in_epoch, step_s=step_s,
                                     eval_s=eval_s, now=budget.deadline - left_s)):
            self.save("recording the shorter plan", best=False)  # last.pt, which a resume follows, has it too

    # --- checkpoints ---------------------------------------------------------------------------------------------

    def kept(self) -> str:
        """What a refusal to save leaves behind, for its message."""
        if self.saved_step is None:
            return "no checkpoint had been written yet, and none was"
        both = self.ctx.paths.best.exists()
        return (f"{self.ctx.paths.last}{' and best.pt are' if both else ' is'} left as "
                f"{'they were' if both else 'it was'} (last.pt from global step {self.saved_step})")

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
        return self.record(state.state_dict(self.ctx.info))

    def save(self, what: str, best: bool, metrics: bool = False) -> None:
        record = self.checkpoint()
        ctx = self.ctx
        with distributed.fail_together(what):
            if ctx.info.is_main:
                if metrics:
                    write_metrics(ctx.paths.metrics, self.rows)
                save_checkpoint(record, ctx.paths.last)
                if best:
                    save_checkpoint(record, ctx.paths.best)
                if metrics:
                    draw_plots(ctx.paths, self.rows, self.raw_model, ctx.cfg)
        self.saved_step = self.state.global_step

    # --- epochs --------------------------------------------------------------------------------------------------

    def run(self) -> bool:
        """Train until the last epoch ends (False) or run.max_steps stops it mid-epoch (True)."""
        state = self.state
        steps = len(self.train_source)
        while state.epoch < self.ctx.cfg.run.epochs:
            cfg = self.ctx.cfg  # a time budget's keeper may shorten the plan
            if self.budget is not None:
                self.budget.start_epoch(state.global_step)
            if state.freezer is not None and state.freezer.due(state.epoch):
                count = sum(p.numel() for p in state.release())
                self.model = self.wrap(self.raw_model)
                self.ctx.log(f"epoch {state.epoch + 1}: unfrozen, {count:,} more parameters train from now on")
            self.bar.reset(total=steps * cfg.run.batch_size)
            self.bar.update(state.step_in_epoch * cfg.run.batch_size)
            self.bar.set_description(f"epoch {state.epoch + 1}/{cfg.run.epochs}")
            position = train_one_epoch(
                self.model, state.optimizer, state.schedule, state.scaler, self.train_source, state.epoch,
                state.step_in_epoch, state.totals, seed=cfg.run.seed, info=self.ctx.info, device=self.ctx.device,
                amp_dtype=self.ctx.amp_dtype, channels_last=cfg.run.channels_last,
                label_smoothing=cfg.optim.label_smoothing, sync_every=self.sync_every, must_sync=self.must_sync,
                after_step=self.after_step, train_mode=state.freezer.train_mode if state.freezer else None,
                class_weights=self.class_weights,
            )
            complete = position >= steps
            if self.budget is not None:
                self.budget.observe(state.global_step)
            end_start = time.perf_counter()
            self.end_epoch(position, complete)
            if self.budget is not None:
                self.budget_epoch_end(time.perf_counter() - end_start)
            cfg = self.ctx.cfg
            reached = cfg.run.max_steps is not None and state.global_step >= cfg.run.max_steps
            if not complete or (reached and state.epoch < cfg.run.epochs):  # run.max_steps: mid-epoch or at its end
                return True
            patience = cfg.run.early_stop
            if patience and state.epochs_without_improvement >= patience and state.epoch < cfg.run.epochs:
                self.early_stopped = True
                self.ctx.log(f"early stop: validation top-1 has not improved for {patience} epochs (best "
                             f"{state.best_val_top1:.4f}, kept in best.pt)")
                return False
        return False

    def end_epoch(self, position: int, complete: bool) -> None:
        """Validate, log the epoch's row, apply the plateau rule, save last.pt (and best.pt when it improved)."""
        ctx, cfg, state = self.ctx, self.ctx.cfg, self.state
        eval_start = time.perf_counter()
        # The bare model, not the DDP wrapper: ranks hold different numbers of val batches, and DDP's forward would
        # broadcast BatchNorm buffers (a collective) on each call.
        val = evaluate(self.raw_model, self.val_batches, self.class_names, ctx.device,
                       amp_dtype=ctx.amp_dtype, channels_last=cfg.run.channels_last)
        check_validation(val, state.epoch, self.kept())  # best.pt never comes from a NaN evaluation
        train = reduce_totals(state.totals, ctx.device)
        row = epoch_row(state.epoch, state.optimizer.param_groups[0]["lr"], train, val,
                        train["seconds"] + (time.perf_counter() - eval_start))
        self.rows.append(row)
        ctx.log(d2l_line(row))
        ctx.log(f"data wait, epoch {state.epoch + 1}: waited {row['data_wait_s']:.2f} s for batches, "
                f"{100 * row['data_wait_share']:.1f}% of {train['seconds']:.1f} s of training "
                f"({self.train_source.describe()})", console=False)
        improved = val.top1 > state.best_val_top1
        state.best_val_top1 = max(state.best_val_top1, val.top1)
        if complete:
            state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        if self.tensorboard is not None:
            self.tensorboard.epoch(row, state.global_step, self.raw_model.conv1.weight, val.confusion,
                                   self.class_names)
        if complete and state.schedule.end_epoch(val.top1):  # the plateau rule judges whole epochs only
            ctx.log(f"validation top-1 stopped improving: lr divided by {1 / cfg.optim.gamma:g} "
                    f"({state.schedule.drops} of at most {cfg.optim.max_drops})")
        # A complete epoch moves to the next one; a stop mid-epoch stays at the step reached, for a resume.
        state.advance((state.epoch + 1, 0) if complete else (state.epoch, position))
        self.save("saving the epoch's checkpoints and metrics", best=improved, metrics=True)


def epoch_row(epoch: int, lr: float, train: dict[str, float], val: Any, seconds: float) -> dict[str, Any]:
    """One line of metrics.csv (runfolder.METRIC_COLUMNS)."""
    return {
        "epoch": epoch + 1, "lr": lr,
        "train_loss": train["loss"], "train_acc": train["acc"],
        "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5,
        "seconds": seconds, "images_per_s": train["count"] / max(train["seconds"], 1e-9),
        "data_wait_s": train["data_wait"], "data_wait_share": train["data_wait"] / max(train["seconds"], 1e-9),
    }

