"""How long a first run will take, said before it starts (issue 23). `alexnet train --data PHOTOS` with no recipe
trains the full-width model at full size for 10 epochs: on a laptop CPU most of an hour, which a new user learns
only from the progress bar. So on such a run (no recipe, no time budget, a new run, on the CPU, one process) a
copy of the model times a few steps first (the time budget's probe), the log says what the plan will take, and a
plan longer than LONG_FIRST_RUN_S names the recipe made for a short run instead.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

import torch

from alexnet.config import TrainConfig
from alexnet.errors import plural
from alexnet.runtime.distributed import DistInfo
from alexnet.training.budget import BUDGET_RECIPE, probe_step_seconds, validation_seconds
from alexnet.training.epoch import TrainingError

# Past this, the estimate suggests the fast recipe: a first model worth looking at should come within a coffee break,
# and the fast recipe reaches one in a few minutes on a CPU (README, Speed).
LONG_FIRST_RUN_S = 15 * 60
SUGGESTED_BUDGET = "5m"  # the budget the suggestion gives the fast recipe


@dataclass(frozen=True)
class RunEstimate:
    step_s: float  # one training step, measured
    steps_per_epoch: int
    epochs: int  # epochs the steps cross (the last one may be partial under run.max_steps)
    steps: int  # optimizer steps planned
    val_s: float  # one validation pass, estimated as the time budget plans it (budget.validation_seconds)

    @property
    def seconds(self) -> float:
        return self.steps * self.step_s + self.epochs * self.val_s


def estimate_run(step_s: float, steps_per_epoch: int, epochs: int, val_images: int, batch_size: int,
                 max_steps: int | None = None) -> RunEstimate:
    """The plan's steps (run.max_steps may end it early) and validation passes, at `step_s` a step."""
    steps = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, max_steps)
    crossed = math.ceil(steps / steps_per_epoch)
    return RunEstimate(step_s, steps_per_epoch, crossed, steps, validation_seconds(val_images, batch_size, step_s))


def about(seconds: float) -> str:
    """A duration as a person says it: 'under 1 s', 'about 31 s', 'about 47 min', 'about 2 h 10 min'."""
    if seconds < 0.5:
        return "under 1 s"
    if seconds < 90:
        return f"about {seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


def describe_estimate(estimate: RunEstimate, data: str | None) -> list[str]:
    """The estimate's line for the log, and when the run is longer than LONG_FIRST_RUN_S, what to run instead
    (`data`: the run's --data as the user gave it)."""
    e = estimate
    plan = f"{plural(e.epochs, 'epoch')} x {plural(e.steps_per_epoch, 'step')}"
    if e.steps < e.epochs * e.steps_per_epoch:
        plan = f"{plural(e.steps, 'step')} over {plural(e.epochs, 'epoch')} (run.max_steps)"
    lines = [f"estimated time: {plan} at {e.step_s:.3f} s per step measured, plus validation: {about(e.seconds)} on "
             "this machine"]
    if e.seconds > LONG_FIRST_RUN_S:
        command = f"alexnet train --recipe {BUDGET_RECIPE}"
        if data is not None:
            command += f" --data {shlex.quote(str(data))}"
        lines.append(f"that is over {LONG_FIRST_RUN_S // 60} minutes; for a first model in minutes, run instead: "
                     f"{command} --time-budget {SUGGESTED_BUDGET} (a smaller model at a smaller input size, made for a "
                     "time budget)")
    return lines


def estimate_due(cfg: TrainConfig, device: torch.device, info: DistInfo, resumed: bool) -> bool:
    """A new user's first run: no recipe, no time budget (which plans its own length), a new run, on the CPU, one
    process, training (not --lr-find)."""
    return (cfg.recipe is None and not cfg.run.time_budget and not resumed and device.type == "cpu"
            and not cfg.run.lr_find and info.world_size == 1)


def log_first_run_estimate(ctx: Any, raw_model: torch.nn.Module, state: Any, source: Any, val_images: int,
                           resumed: bool) -> None:
    """When `estimate_due`: time a step on a copy of the model (the run is untouched: the copy trains, the random
    state is restored) and log the estimate, and the suggestion when the run is long. fit() calls it where it plans
    a time budget, before the signal handlers: Ctrl-C during the probe stops at once, with nothing to save yet."""
    cfg = ctx.cfg
    if not estimate_due(cfg, ctx.device, ctx.info, resumed):
        return
    try:
        step_s = probe_step_seconds(raw_model, cfg.optim, source, ctx.probe_settings(), train_mode=state.train_mode)
    except TrainingError:  # the copy's loss went non-finite: the run itself says so, at its own step and with advice
        return
    estimate = estimate_run(step_s, len(source), cfg.run.epochs, val_images, cfg.run.batch_size, cfg.run.max_steps)
    for line in describe_estimate(estimate, cfg.data.source):
        ctx.log(line)
