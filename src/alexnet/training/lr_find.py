"""`--lr-find`: the LR range test (Smith 2017; fastai's `lr_find`, Lightning's `Tuner.lr_find`).

A copy of the model trains for up to STEPS steps with the learning rate rising exponentially from START_LR to
END_LR, through the trainer's own epoch function and batches, and stops early once the loss diverges. The loss,
exponentially smoothed (bias-corrected, as fastai's), is plotted against the rate in `lr_find.png`, and a rate is
suggested from it (`suggest`: the minimum of the smoothed loss / 10) - or, when the curve is flat (the loss never
fell by a meaningful fraction below where it started), none: a pick from a flat curve is noise. The run's own
weights, optimizer and RNG are untouched: nothing is saved but the plot.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import plural
from alexnet.files import atomic_write
from alexnet.inspect.plots import _figure
from alexnet.runtime import distributed
from alexnet.training.epoch import (
    EpochHooks,
    EpochSettings,
    EpochTotals,
    StepStats,
    TrainingError,
    WeightUpdate,
    train_one_epoch,
)
from alexnet.training.optim import build_optimizer

START_LR, END_LR = 1e-7, 10.0  # fastai's span: from rates that do nothing to rates that diverge for any network
STEPS = 100
SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected (fastai's and Lightning's beta)
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its best (fastai's stop_div)
START_STEPS = 10  # the loss "at the start": the mean of the first steps' losses, at rates that change nothing
MEANINGFUL_FALL = 0.1  # the smoothed loss must fall this fraction below the start for the curve to say anything
# What to try when the curve says nothing: the range test's 100 steps are too few for a network from scratch to leave
# chance on most data (measured: the default shapes run and the fast recipe on dogs-vs-cats both stay at ln(C) until
# the rate diverges), while a network that already learns (fine-tuning) shows its whole curve in them.
FLAT_ADVICE = ("keep the recipe's --lr (Adam 1e-3, SGD 0.01), or run --lr-find on a network that already learns "
               "(--init-from a run or torchvision), where the loss falls within the test's steps")


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    raw: list[float]  # each step's loss, as measured
    suggestion: float | None  # None: the curve does not tell (`note` says why)
    note: str  # how the suggestion was read off the curve, or why there is none and what to try

    def describe(self) -> str:
        span = (f"lr range test over {plural(len(self.lrs), 'step')} ({self.lrs[0]:.1e} .. {self.lrs[-1]:.1e})" if self.lrs
                else "lr range test: no steps")
        if self.suggestion is None:
            return f"{span}: no rate suggested: {self.note}"
        return f"{span}: suggested --lr {self.suggestion:.2e} ({self.note})"


class ExponentialRamp:
    """The range test's schedule: step k of `steps` at START_LR * (END_LR / START_LR) ** (k / (steps - 1))."""

    def __init__(self, steps: int, steps_per_epoch: int):
        self.steps, self.steps_per_epoch = max(steps, 2), steps_per_epoch

    def lr_at(self, epoch: int, step: int) -> float:
        k = epoch * self.steps_per_epoch + step
        return START_LR * (END_LR / START_LR) ** (min(k, self.steps - 1) / (self.steps - 1))


def smooth(raw: list[float]) -> list[float]:
    """The exponential moving average of `raw` with weight SMOOTHING, bias-corrected (Adam's correction): without it
    the average starts at 0 and the early points read as a steep fall that is not there."""
    average, out = 0.0, []
    for k, loss in enumerate(raw, start=1):
        average = SMOOTHING * average + (1 - SMOOTHING) * loss
        out.append(average / (1 - SMOOTHING ** k))
    return out


def lr_range_test(model: torch.nn.Module, optim_spec: Any, source: Any, settings: EpochSettings,
                  train_mode: Any = torch.nn.Module.train, steps: int = STEPS) -> RangeTest:
    """The range test on a copy of `model` (`settings`: the run's device and precision, the loss read at every
    step: RunContext.probe_settings). At most `steps` steps, fewer when the smoothed loss diverges."""
    device = settings.device
    net = copy.deepcopy(model)
    optimizer = build_optimizer(optim_spec, net)
    ramp = ExponentialRamp(steps, len(source))
    lrs: list[float] = []
    raw: list[float] = []

    def after_step(step: int, images: int, reads: list[StepStats] | None) -> bool:
        lrs.append(optimizer.param_groups[0]["lr"])
        raw.append(reads[-1].loss if reads else math.nan)
        return len(lrs) >= ramp.steps or diverged(smooth(raw))

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        epoch = 0
        while len(lrs) < ramp.steps and not (raw and diverged(smooth(raw))):
            try:
                train_one_epoch(net, WeightUpdate(optimizer, ramp), source, epoch, 0, EpochTotals(), settings,
                                EpochHooks(must_sync=lambda s: True, after_step=after_step, train_mode=train_mode))
            except TrainingError:  # the loss went non-finite: the rate is past any useful one
                break
            epoch += 1
    losses = smooth(raw)
    suggestion, note = suggest(lrs, losses, raw)
    return RangeTest(lrs, losses, raw, suggestion, note)


def diverged(losses: list[float]) -> bool:
    """fastai's stop: the smoothed loss is no longer finite, or past DIVERGED times its best so far."""
    return not math.isfinite(losses[-1]) or losses[-1] > DIVERGED * min(losses)


def suggest(lrs: list[float], losses: list[float], raw: list[float]) -> tuple[float | None, str]:
    """The suggested rate from the smoothed `losses` (and the `raw` ones), with how it was read, or None and why.

    The rule is fastai's "minimum": the rate of the smoothed loss's minimum, divided by 10. Past the minimum the loss
    climbs towards divergence, so a decade below it is the largest rate still well inside the falling part. Not the
    steepest fall (the rule this used to follow): the slope of an exponential average is (1 - SMOOTHING) x (this
    step's loss - the average), so where it is steepest is set by one batch's noise, and on a flat curve it picked
    1.2e-7 (issue 26); the minimum is an average over ~50 batches, and moves little from run to run.
    The first START_STEPS points are skipped (fastai skips a tenth): there the average holds only a few batches.
    """
    finite = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]
    start = [loss for loss in raw[:START_STEPS] if math.isfinite(loss)]
    if len(finite) < START_STEPS + 5 or not start:
        return None, (f"the loss diverged within {len(finite)} steps, too few to read a curve from; "
                      f"{FLAT_ADVICE}")
    begin = sum(start) / len(start)
    best_lr, best = min(finite[START_STEPS:], key=lambda point: point[1])
    if best > (1 - MEANINGFUL_FALL) * begin:
        return None, (f"the curve is flat: the smoothed loss never fell {MEANINGFUL_FALL:.0%} below its start "
                      f"({begin:.3g}, at best {best:.3g} at lr {best_lr:.1e}), so any pick from it would be noise; "
                      f"{FLAT_ADVICE}")
    return best_lr / 10, (f"a tenth of {best_lr:.1e}, where the smoothed loss reached its minimum, {best:.3g} "
                          f"from {begin:.3g} at the start")


def plot_range_test(test: RangeTest, path: Path) -> None:
    def draw(tmp: str) -> None:
        fig = _figure(6, 4)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(test.lrs, test.raw, color="tab:blue", alpha=0.25, label="each step")
        ax.plot(test.lrs, test.losses, color="tab:blue", label="smoothed")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        start = [loss for loss in test.losses[:START_STEPS] if math.isfinite(loss)]
        if start:  # the diverging steps' losses run to hundreds: show the part that can be read, up to twice the start
            ax.set_ylim(0, 2 * max(start))
        if test.suggestion is not None:
            ax.axvline(test.suggestion, color="tab:red", linestyle="--", label=f"suggested {test.suggestion:.1e}")
            ax.set_title("LR range test")
        else:
            ax.set_title("LR range test: no rate suggested (see the log)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(tmp)

    atomic_write(path, draw, suffix=".png")


def find_lr(ctx: Any, raw_model: torch.nn.Module, state: Any, source: Any) -> RangeTest:
    """--lr-find: the LR range test on a copy of the model, lr_find.png, and the suggested rate (or why none)."""
    test = lr_range_test(raw_model, ctx.cfg.optim, source, ctx.probe_settings(),
                         train_mode=state.train_mode)
    with distributed.fail_together("writing lr_find.png"):
        if ctx.info.is_main:
            plot_range_test(test, ctx.paths.lr_find)
    ctx.log(f"{test.describe()}; plot in {ctx.paths.lr_find}")
    return test
