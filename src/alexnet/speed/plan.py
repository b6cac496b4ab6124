"""Sizing a run from one measured training step, so that `alexnet bench` ends in minutes on any CPU seen here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from alexnet.models import AlexNet
from alexnet.speed.config import BenchConfig
from alexnet.speed.steps import PLAIN, time_train_steps

# One `alexnet bench` with the defaults must end within about BUDGET_S on the slowest CPU seen here (AVX2 only,
# 2 cores: a 227 px training step of alexnet-bn at batch 64 takes several seconds there). The bench times one
# training step first and sizes the rest from it: timed steps per pass and photos in the end-to-end epoch.
BUDGET_S = 480.0
PASS_S = 3.0  # a timed pass of training steps lasts at least this long where the step allows (fewer, noisier)
MAX_STEPS = 5
MAX_PHOTOS = 192
DECODE_S = 0.01  # seconds to decode and resize one 500x375 JPEG with PIL (benchmarks/README.md, data paths)
E2E_SHARE = 0.3  # of the budget, for the end-to-end section (plain and ours, each cfg.repeats epochs)


@dataclass(frozen=True)
class WorkPlan:
    step_s: float  # one plain training step of the main model, measured
    steps: int  # timed steps per pass
    photos: int  # JPEG files in the end-to-end epoch
    bf16: bool  # the bf16 mode is timed (not where the precision probe says it crawls)
    note: str  # what was planned and why, for the log


def plan_work(cfg: BenchConfig, step_s: float, bf16: bool) -> WorkPlan:
    """Steps per pass and photos from one measured step; what the user gave explicitly is kept as given."""
    steps = cfg.steps or max(1, min(MAX_STEPS, round(PASS_S / max(step_s, 1e-6))))
    per_photo = cfg.repeats * (2 * step_s / cfg.batch_size + DECODE_S)  # plain and ours, repeats epochs each
    fits = int(E2E_SHARE * BUDGET_S / per_photo)
    photos = cfg.photos or max(min(cfg.batch_size, MAX_PHOTOS), min(MAX_PHOTOS, fits))
    note = (f"one training step takes {step_s:.2f} s here: {steps} timed step(s) per pass, {cfg.repeats} passes, "
            f"{photos} photos in the end-to-end epoch" + ("" if bf16 else "; bf16 is not timed (see above)"))
    return WorkPlan(step_s=step_s, steps=steps, photos=photos, bf16=bf16, note=note)


def measure_step_seconds(model: AlexNet, cfg: BenchConfig) -> float:
    """One plain training step after a warm-up step: the unit every later section is sized in."""
    rate = time_train_steps(model, PLAIN, BenchConfig(**{**asdict(cfg), "repeats": 1}), steps=1)
    return cfg.batch_size / rate


# --- the whole run ----------------------------------------------------------------------------------------------
