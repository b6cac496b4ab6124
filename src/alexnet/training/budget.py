"""`--time-budget DURATION`: a run planned to end at a wall-clock budget (issue 14; "Budgeted Training", Li et al.
2020: a schedule that decays to its end exactly when the budget does beats one cut short).

Before the first step, a copy of the model times PROBE_STEPS steps through the trainer's own epoch function on the
run's own batches, and a validation batch's forward pass. The plan is then arithmetic: what is left of the budget
(it counts from the start of `fit`, data preparation included; `alexnet train` starts it at the process's launch,
so the imports count too), less the validation passes (after each epoch, or every few epochs when that would take
more than VAL_SHARE of the budget), divided by the measured step, is the number of steps.
The run's `max_steps`, `epochs` and a cosine schedule over exactly those steps are written into its config, so
that the plan is recorded, a resume follows the same schedule (it never plans again), and `FitResult` can say how
the budget was spent.

A laptop is shared: the steps may run slower than the probe measured (another program, thermal limits). While the
run trains, `BudgetKeeper` measures the steps actually taken; when the planned steps no longer fit in what is left
of the budget it plans again, fewer steps, and moves the cosine's end to the new last step; when they would leave
much of it unused (a probe slowed by another program) it plans more. The cosine goes on from the point it had
reached to its new end (`LRSchedule.respan`): the learning rate never jumps. A cadence the plan chose (not the
user's --val-every) is chosen again for the new plan's epochs. The new plan goes into the run's config and last.pt,
so a resume follows it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet.config import TrainConfig, parse_duration, resolve_config
from alexnet.errors import ConfigError, plural
from alexnet.runtime import distributed
from alexnet.runtime.amp import autocast
from alexnet.store.checkpoint import save_checkpoint
from alexnet.store.runfolder import RunPaths, draw_plots
from alexnet.training.adapt import apply_to_run, eval_passes
from alexnet.training.epoch import EpochHooks, EpochSettings, EpochTotals, StepStats, WeightUpdate, train_one_epoch
from alexnet.training.optim import LRSchedule, build_optimizer

PROBE_STEPS = 3  # timed steps after one warm-up step
REPLAN_SLACK = 1.1  # plan more steps when those left would take 10% less than what is left of the budget
EVAL_FRACTION = 1 / 3  # a validation image costs about a third of a training image (forward only)
SAFETY = 0.97  # plan to end a little before the budget: step times drift on a shared machine
VAL_SHARE = 0.05  # validation may take this share of a budget; more, and the run validates every few epochs
BUDGET_RECIPE = "fast"  # the recipe a refused budget suggests (configs/fast.yaml: chosen for time to a good model)


def launch_clock() -> float:
    """time.perf_counter()'s reading at this process's launch, so that a budget counts the interpreter's start-up and
    the imports as a user's stopwatch does (Linux: the start time the kernel records; elsewhere: now)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # the name may hold spaces
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter()
    return time.perf_counter() - min(max(age, 0.0), 3600.0)  # a clock that disagrees must not eat a whole budget


@dataclass
class BudgetPlan:
    budget_s: float
    before_s: float  # spent before planning: start-up, data preparation, the probe
    step_s: float  # one training step, measured
    eval_s: float  # one epoch's end: a validation pass (estimated) and the saves and plots (measured)
    steps: int  # planned optimizer steps
    epochs: int  # epochs they span (the last one may be partial)
    val_every: int = 1  # validation every this many epochs, and after the last
    save_s: float = 0.0  # the part of eval_s that does not scale with the step: checkpoints, metrics, plots
    cadence_chosen: bool = False  # val_every is the plan's (VAL_SHARE), not the user's: a new plan may change it

    def eval_s_at(self, step_s: float) -> float:
        """eval_s for a step measured since: the validation's passes scale with it, the saves do not. (The probe's
        first steps are the slowest of a run: at 80 s on CIFAR-10 it measured 0.27 s a step, the run 0.18.)"""
        return self.save_s + (self.eval_s - self.save_s) * step_s / self.step_s

    def describe(self) -> str:
        every = ("validated after each" if self.val_every == 1 else
                 f"validated every {self.val_every} and after the last, for validation to take at most "
                 f"{VAL_SHARE:.0%} of the budget")
        return (f"time budget {self.budget_s:.0f} s: {self.before_s:.1f} s spent before training (data, probe), "
                f"{self.step_s:.3f} s per step measured, {self.eval_s:.2f} s per validation (with its checkpoints "
                f"and plots): {plural(self.steps, 'step')} over {plural(self.epochs, 'epoch')}, {every}, cosine "
                "schedule to their end")


def validations(epochs: int, val_every: int, done: int = 0) -> int:
    """Epoch ends that validate among the `epochs` after the first `done`: every `val_every`-th of the run, and the
    last."""
    if epochs <= 0:
        return 0
    end = done + epochs
    return end // val_every - done // val_every + (1 if end % val_every else 0)


def probe_step_seconds(model: torch.nn.Module, optim_spec: Any, source: Any, settings: EpochSettings,
                       train_mode: Any = torch.nn.Module.train) -> float:
    """Median-free and cheap: the mean of PROBE_STEPS steps after a warm-up, on a copy (the run is untouched).
    `settings`: the run's device and precision, the loss read at every step (RunContext.probe_settings)."""
    device = settings.device
    net = copy.deepcopy(model)
    optimizer = build_optimizer(optim_spec, net)
    schedule = LRSchedule(dataclasses.replace(optim_spec, lr_schedule="none", warmup_epochs=0.0), 1, len(source))
    times: list[float] = []
    last = [0.0]

    def after_step(step: int, images: int, reads: list[StepStats] | None) -> bool:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        return len(times) >= PROBE_STEPS + 1

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        epoch = 0
        while len(times) < PROBE_STEPS + 1:
            last[0] = time.perf_counter()
            train_one_epoch(net, WeightUpdate(optimizer, schedule), source, epoch, 0, EpochTotals(), settings,
                            EpochHooks(must_sync=lambda s: True, after_step=after_step, train_mode=train_mode))
            epoch += 1
    steady = times[1:]  # the first includes the warm-up (kernel selection, allocator growth)
    return sum(steady) / len(steady)


def probe_forward_seconds(model: torch.nn.Module, batch_size: int, settings: EpochSettings) -> float:
    """One validation batch's forward pass, timed: the median of 3 after a warm-up, in eval mode and inference mode
    (nothing in the model changes: no copy needed), on a batch of the model's input shape. (A third of a training
    step, the rule of thumb validation_seconds uses, was 0.3 to 0.43 of cc-80sec's on a 2-core CPU: at 80 s the
    runs' only validation ended them up to 3 s late.)"""
    size, channels = model.config.image_size, model.config.in_channels
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    images = torch.randn(batch_size, channels, size, size, device=settings.device).contiguous(
        memory_format=memory_format)
    was_training, times = model.training, []
    model.eval()
    try:
        with torch.inference_mode(), autocast(settings.device.type, settings.amp_dtype):
            for _ in range(4):
                start = time.perf_counter()
                model(images).float().sum().item()  # .item(): wait for the device
                times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return sorted(times[1:])[1]


def validation_seconds(val_images: int, batch_size: int, step_s: float) -> float:
    """One validation pass, from a measured training step: its batches, each EVAL_FRACTION of a step."""
    return math.ceil(val_images / batch_size) * step_s * EVAL_FRACTION


def epoch_end_estimate(val_images: int, batch_size: int, forward_s: float, eval_passes: int = 1,
                       save_s: float = 0.0) -> float:
    """A validated epoch end's seconds: the validation's batches, each `eval_passes` forward passes of `forward_s`
    (flip TTA, a moving average: adapt), and `save_s`, the checkpoints, metrics and plots (measured)."""
    return math.ceil(val_images / batch_size) * forward_s * eval_passes + save_s


def plan(budget_s: float, elapsed_s: float, step_s: float, steps_per_epoch: int, eval_s: float,
         val_every: int | None = None) -> BudgetPlan:
    """The steps that fit: (budget x SAFETY - elapsed) = steps x step + validations x `eval_s` (a validation pass
    and the epoch end's checkpoints, metrics and plots: epoch_end_estimate). `val_every` None: every epoch, unless
    that would take more than VAL_SHARE of the budget; then the fewest validations that keep to it (at 80 s on
    CIFAR-10 they were 14% of the budget)."""
    left = budget_s * SAFETY - elapsed_s
    if left <= step_s + eval_s:
        raise ConfigError(f"--time-budget {budget_s:.0f} s: {elapsed_s:.0f} s went on preparing the data and timing "
                          f"a step ({step_s:.2f} s); nothing is left to train: give a larger budget")
    if val_every is None:
        steps, every = fit_and_cadence(left, step_s, eval_s, steps_per_epoch, VAL_SHARE * budget_s)
    else:
        steps, every = steps_that_fit(left, step_s, eval_s, steps_per_epoch, 0, val_every), val_every
    steps = max(steps, 1)
    epochs = math.ceil(steps / steps_per_epoch)
    return BudgetPlan(budget_s, elapsed_s, step_s, eval_s, steps, epochs, min(every, epochs),
                      cadence_chosen=val_every is None)


def fit_and_cadence(left_s: float, step_s: float, eval_s: float, steps_per_epoch: int, share_s: float,
                    step_in_epoch: int = 0, done: int = 0, every: int = 1) -> tuple[int, int]:
    """(steps, val_every): the least val_every from `every` up whose validations take at most `share_s` seconds
    (the run's last epoch when even its one validation is over), and the steps that fit with it, from
    `step_in_epoch` steps into the epoch after the first `done`."""
    steps = steps_that_fit(left_s, step_s, eval_s, steps_per_epoch, step_in_epoch, every, done)
    while True:
        end = done + math.ceil((step_in_epoch + steps) / steps_per_epoch)
        if every >= end or validations(end - done, every, done) * eval_s <= share_s:
            return steps, every
        every += 1  # fewer validations buy steps, which may add an epoch: count again
        steps = steps_that_fit(left_s, step_s, eval_s, steps_per_epoch, step_in_epoch, every, done)


def planned_config(cfg: TrainConfig, budget: BudgetPlan) -> TrainConfig:
    """The run's config as the plan has it: max_steps, epochs and a cosine schedule that ends at the last step."""
    run = dataclasses.replace(cfg.run, epochs=budget.epochs, max_steps=budget.steps, val_every=budget.val_every)
    optim = dataclasses.replace(cfg.optim, lr_schedule="cosine")
    return dataclasses.replace(cfg, run=run, optim=optim)


def steps_that_fit(left_s: float, step_s: float, eval_s: float, steps_per_epoch: int, step_in_epoch: int,
                   val_every: int = 1, done: int = 0) -> int:
    """The most steps s such that s steps and the validations at the epoch ends they cross (each costing `eval_s`;
    every `val_every`-th epoch's of the run and the last one's) take at most `left_s`, starting `step_in_epoch`
    steps into the epoch after the first `done`."""
    def cost(s: int) -> float:
        return s * step_s + validations(math.ceil((step_in_epoch + s) / steps_per_epoch), val_every, done) * eval_s

    s = max(int(left_s / step_s), 0)
    while s > 0 and cost(s) > left_s:
        s -= 1
    return s


class BudgetKeeper:
    """Keeps a budgeted run to its budget on a machine slower than the probe measured (see the module docstring).

    `check` is called after steps on a single process, and `end_epoch` after each epoch's end on every rank (the
    figures it plans from are agreed across ranks there, so every rank shortens the run alike)."""

    def __init__(self, budget: BudgetPlan, started: float, steps_per_epoch: int):
        self.budget = budget
        self.deadline = started + budget.budget_s * SAFETY
        self.steps_per_epoch = steps_per_epoch
        self.every = max(steps_per_epoch // 4, 1)  # mid-epoch checks: four an epoch
        # The rate so far, over every step since the plan, not the last few: a pause of a few seconds is spread
        # over the run, while a machine that stays slower moves the mean further at every check.
        self.train_s, self.steps = 0.0, 0
        self.ends_s, self.ends = 0.0, 0
        self._mark: tuple[float, int] | None = None  # (time, global step) the next interval is measured from

    @property
    def step_s(self) -> float:
        return self.train_s / self.steps if self.steps else self.budget.step_s

    @property
    def eval_s(self) -> float:
        return self.ends_s / self.ends if self.ends else self.budget.eval_s_at(self.step_s)

    def start_epoch(self, global_step: int) -> None:
        self._mark = (time.perf_counter(), global_step)

    def observe(self, global_step: int) -> None:
        """Add the steps since the mark (the epoch's start or the last observation) and their time."""
        now = time.perf_counter()
        if self._mark is not None and global_step > self._mark[1]:
            self.train_s += now - self._mark[0]
            self.steps += global_step - self._mark[1]
        self._mark = (now, global_step)

    def epoch_end(self, seconds: float) -> None:
        self.ends_s += seconds
        self.ends += 1

    def replan(self, cfg: TrainConfig, global_step: int, step_in_epoch: int,
               step_s: float | None = None, eval_s: float | None = None,
               now: float | None = None) -> tuple[TrainConfig, str] | None:
        """A new plan when the steps left no longer fit in the time left, or fill far less of it: the new config
        and what to log; None when the plan still holds."""
        step_s = self.step_s if step_s is None else step_s
        eval_s = self.eval_s if eval_s is None else eval_s
        left_s = max(self.deadline - (time.perf_counter() if now is None else now), 0.0)
        every = cfg.run.val_every or 1
        done = (global_step - step_in_epoch) // self.steps_per_epoch  # epochs ended
        planned = max((cfg.run.max_steps or global_step) - global_step, 0)
        epochs_left = math.ceil((step_in_epoch + planned) / self.steps_per_epoch) if planned else 0
        needed = planned * step_s + validations(epochs_left, every, done) * eval_s
        # more steps only when they would leave much unused; fewer as soon as they would overrun (within 10% of
        # what was left, runs of 80 s ended up to 3 s late)
        if left_s / REPLAN_SLACK <= needed <= left_s or planned == 0:
            return None
        if self.budget.cadence_chosen:  # a plan of more epochs validates less often (at 80 s: not at epoch 2 of 3);
            # never more often: the share is the whole run's, less what its validations took so far
            share_s = VAL_SHARE * self.budget.budget_s - self.ends_s
            fit, new_every = fit_and_cadence(left_s, step_s, eval_s, self.steps_per_epoch, share_s, step_in_epoch,
                                             done, every)
        else:
            fit, new_every = steps_that_fit(left_s, step_s, eval_s, self.steps_per_epoch, step_in_epoch, every,
                                            done), every
        if fit == 0 and step_in_epoch == 0 and done % every:
            fit = 1  # the epoch that just ended did not validate: one more step ends the run in one that does
        if fit == planned and new_every == every:
            return None
        new_total = global_step + fit
        epochs = max(math.ceil(new_total / self.steps_per_epoch), 1)
        run = dataclasses.replace(cfg.run, max_steps=max(new_total, 1), epochs=epochs,
                                  val_every=min(new_every, epochs) if cfg.run.val_every else None)
        how = f"end {needed - left_s:.1f} s after" if needed > left_s else f"leave {left_s - needed:.1f} s of"
        cadence = f", validated every {plural(run.val_every, 'epoch')}" if run.val_every != cfg.run.val_every else ""
        message = (f"time budget: steps take {step_s:.3f} s now (the probe measured {self.budget.step_s:.3f} s), so "
                   f"the {planned} steps left would {how} the budget: {fit} steps left instead, the cosine schedule "
                   f"now ends at step {new_total}{cadence}")
        return dataclasses.replace(cfg, run=run), message


def schedule_epochs(cfg: TrainConfig, steps_per_epoch: int) -> float:
    """How many epochs the learning-rate schedule spans: the planned steps for a budgeted run (the cosine reaches
    its end at the budget, within an epoch), else the configured epochs."""
    if cfg.run.time_budget and cfg.run.max_steps:
        return cfg.run.max_steps / steps_per_epoch
    return cfg.run.epochs


def plan_budget(ctx: Any, raw_model: torch.nn.Module, state: Any, source: Any, val_images: int, started: float,
                record: Callable[[dict[str, Any]], Any]) -> tuple[Any, BudgetKeeper]:
    """--time-budget: time a step on a copy, plan the steps that fit, and write the plan into the run's config
    (max_steps, epochs, a cosine schedule to the last step). Returns the run's context with that config, and the
    keeper that holds the run to the budget while it trains."""
    cfg = ctx.cfg
    step_s = probe_step_seconds(raw_model, cfg.optim, source, ctx.probe_settings(),
                                train_mode=state.train_mode)
    save_s = max(distributed.all_gather(epoch_end_seconds(ctx, raw_model, state, record)))  # rank 0 saves
    forward_s = max(distributed.all_gather(probe_forward_seconds(raw_model, cfg.run.batch_size,
                                                                 ctx.probe_settings())))
    step_s = distributed.all_gather(step_s)  # every rank plans the same: the slowest rank's step
    budget_s = parse_duration(cfg.run.time_budget)
    try:
        budget = plan(budget_s, time.perf_counter() - started, max(step_s), len(source),
                      epoch_end_estimate(val_images, cfg.run.batch_size, forward_s, eval_passes(cfg), save_s),
                      val_every(cfg))
        if cfg.run.adapt:  # regularisation for the passes the budget buys; then the plan with its validation cost
            ctx = apply_to_run(ctx, source, state, raw_model, budget.steps / len(source), budget.steps)
            cfg = ctx.cfg
            budget = plan(budget_s, time.perf_counter() - started, max(step_s), len(source),
                          epoch_end_estimate(val_images, cfg.run.batch_size, forward_s, eval_passes(cfg), save_s),
                          val_every(cfg))
    except ConfigError as e:
        raise ConfigError(f"{e}{smaller_run_hint(cfg, raw_model.config.image_size)}") from None
    budget = dataclasses.replace(budget, save_s=save_s)
    cfg = planned_config(cfg, budget)
    steps = len(source)
    state.schedule = LRSchedule(cfg.optim, schedule_epochs(cfg, steps), steps)
    ctx.log(budget.describe())
    return dataclasses.replace(ctx, cfg=cfg), BudgetKeeper(budget, started, steps)


def val_every(cfg: TrainConfig) -> int | None:
    """The run's validation cadence for the plan: the user's, else None (the plan's choice); 1 where every epoch's
    validation is judged (early stop)."""
    return cfg.run.val_every or (1 if cfg.run.early_stop else None)


def smaller_run_hint(cfg: TrainConfig, image_size: int) -> str:
    """What a refused budget adds: the recipe made for a time budget, unless the run already is it. Without a
    recipe, `--data` trains the full-width model at its full input size, which a short budget never fits."""
    if cfg.recipe == BUDGET_RECIPE:
        return ""
    fast = resolve_config(recipe=BUDGET_RECIPE)
    return (f", or a smaller run: --recipe {BUDGET_RECIPE} ({fast.model.name} x{fast.model.width_mult:g} at "
            f"{fast.data.image_size} px, made for a time budget; this run is {cfg.model.name} "
            f"x{cfg.model.width_mult:g} at {image_size} px)")


def epoch_end_seconds(ctx: Any, raw_model: torch.nn.Module, state: Any, record: Callable[[dict[str, Any]], Any]) -> float:
    """What an epoch's end costs besides validation, measured once into a scratch folder: last.pt and best.pt, and
    the plots (on small data with many short epochs it is most of the time)."""
    train_state = state.state_dict(ctx.info)  # collective under torchrun: every rank takes part
    if not ctx.info.is_main:
        return 0.0
    row = {"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "train_acc": 0.5, "val_top1": 0.5, "val_top5": 1.0}
    with tempfile.TemporaryDirectory() as tmp:
        paths = RunPaths(Path(tmp))
        draw_plots(paths, [row], raw_model, ctx.cfg)  # once untimed: matplotlib's import is paid once per run
        start = time.perf_counter()
        checkpoint = record(train_state)
        for name in ("last.pt", "best.pt"):
            save_checkpoint(checkpoint, Path(tmp) / name)
        draw_plots(paths, [row], raw_model, ctx.cfg)
        return time.perf_counter() - start
