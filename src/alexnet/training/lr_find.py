"""`--lr-find`: the LR range test (Smith 2017; fastai's `lr_find`, Lightning's `Tuner.lr_find`).

A copy of the model trains for up to STEPS steps with the learning rate rising exponentially from START_LR to
END_LR, through the trainer's own epoch function and batches; the loss, smoothed, is plotted against the rate in
`lr_find.png`. The suggestion is the rate where the smoothed loss falls fastest (the steepest descent), the point
fastai calls "steep". The run's own weights, optimizer and RNG are untouched: nothing is saved but the plot.
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
from alexnet.training.epoch import EpochHooks, EpochSettings, EpochTotals, TrainingError, WeightUpdate, train_one_epoch
from alexnet.training.optim import build_optimizer

START_LR, END_LR = 1e-7, 10.0
STEPS = 100
SMOOTHING = 0.98  # exponential moving average of the loss, bias-corrected
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its best


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # smoothed
    suggestion: float | None  # None: too few points to tell

    def describe(self) -> str:
        if self.suggestion is None:
            return f"lr range test: {plural(len(self.lrs), 'step')}, too few to suggest a rate"
        return (f"lr range test over {len(self.lrs)} steps ({self.lrs[0]:.1e} .. {self.lrs[-1]:.1e}): suggested "
                f"--lr {self.suggestion:.2e} (steepest fall of the loss)")


class ExponentialRamp:
    """The range test's schedule: step k of `steps` at START_LR * (END_LR / START_LR) ** (k / (steps - 1))."""

    def __init__(self, steps: int, steps_per_epoch: int):
        self.steps, self.steps_per_epoch = max(steps, 2), steps_per_epoch

    def lr_at(self, epoch: int, step: int) -> float:
        k = epoch * self.steps_per_epoch + step
        return START_LR * (END_LR / START_LR) ** (min(k, self.steps - 1) / (self.steps - 1))


def lr_range_test(model: torch.nn.Module, optim_spec: Any, source: Any, settings: EpochSettings,
                  train_mode: Any = torch.nn.Module.train, steps: int = STEPS) -> RangeTest:
    """The range test on a copy of `model` (`settings`: the run's device and precision, the loss read at every
    step: RunContext.probe_settings)."""
    device = settings.device
    net = copy.deepcopy(model)
    optimizer = build_optimizer(optim_spec, net)
    ramp = ExponentialRamp(steps, len(source))
    lrs: list[float] = []
    raw: list[float] = []
    best, average = math.inf, 0.0

    def after_step(step: int, images: int, losses: list[float] | None) -> bool:
        nonlocal best, average
        lrs.append(optimizer.param_groups[0]["lr"])
        average = SMOOTHING * average + (1 - SMOOTHING) * (losses[-1] if losses else math.nan)
        smoothed = average / (1 - SMOOTHING ** len(lrs))
        raw.append(smoothed)
        best = min(best, smoothed)
        return len(lrs) >= ramp.steps or not math.isfinite(smoothed) or smoothed > DIVERGED * best

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        epoch = 0
        while len(lrs) < ramp.steps and (not raw or (math.isfinite(raw[-1]) and raw[-1] <= DIVERGED * best)):
            try:
                train_one_epoch(net, WeightUpdate(optimizer, ramp), source, epoch, 0, EpochTotals(), settings,
                                EpochHooks(must_sync=lambda s: True, after_step=after_step, train_mode=train_mode))
            except TrainingError:  # the loss went non-finite: the rate is past any useful one
                break
            epoch += 1
    return RangeTest(lrs, raw, suggest(lrs, raw))


def suggest(lrs: list[float], losses: list[float]) -> float | None:
    """The rate of the steepest descent of the smoothed loss against log(lr), before it diverged."""
    points = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]
    if len(points) < 5:
        return None
    best = min(range(len(points)), key=lambda i: points[i][1])
    points = points[: best + 1]  # only the falling part counts
    if len(points) < 3:
        return None
    slopes = [(points[i + 1][1] - points[i - 1][1]) / (math.log(points[i + 1][0]) - math.log(points[i - 1][0]))
              for i in range(1, len(points) - 1)]
    return points[1 + min(range(len(slopes)), key=slopes.__getitem__)][0]


def plot_range_test(test: RangeTest, path: Path) -> None:
    def draw(tmp: str) -> None:
        fig = _figure(6, 4)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(test.lrs, test.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        if test.suggestion is not None:
            ax.axvline(test.suggestion, color="tab:red", linestyle="--", label=f"suggested {test.suggestion:.1e}")
            ax.legend()
        ax.set_title("LR range test")
        fig.tight_layout()
        fig.savefig(tmp)

    atomic_write(path, draw, suffix=".png")


def find_lr(ctx: Any, raw_model: torch.nn.Module, state: Any, source: Any) -> RangeTest:
    """--lr-find: the LR range test on a copy of the model, lr_find.png, and the suggested rate."""
    test = lr_range_test(raw_model, ctx.cfg.optim, source, ctx.probe_settings(),
                         train_mode=state.train_mode)
    with distributed.fail_together("writing lr_find.png"):
        if ctx.info.is_main:
            plot_range_test(test, ctx.paths.lr_find)
    ctx.log(f"{test.describe()}; plot in {ctx.paths.lr_find}")
    return test
