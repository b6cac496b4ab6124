"""The input size and width a time budget buys (`run.adapt` with data.image_size and model.width_mult; issue 23).

A larger input and a wider network learn more from each pass but make fewer passes in the same time; which wins
depends on how many passes the budget buys on this machine. So, before the data is decoded, the run times a few
training steps of each rung of `RUNGS` (from the cheapest up) on random images of the rung's size, and takes the
largest rung that still gives every training image at least `MIN_PASSES` passes within the budget. The ladder and
the threshold were chosen by measurement on real photos (benchmarks/README.md, "Accuracy per CPU-minute").
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from alexnet.config import parse_duration
from alexnet.config.values import adapt_fields
from alexnet.models import CudaConvnetConfig, build_from_config, model_config
from alexnet.runtime.amp import autocast
from alexnet.training.optim import build_optimizer

RUNGS = ((96, 0.25), (128, 0.25), (128, 0.5), (160, 0.5), (192, 0.75), (224, 1.0))  # (input side, width), cheapest first
# A net built for one input size (the cuda-convnet family: fc and locally-connected layers fix it) climbs in width
# only, at its own size.
WIDTH_RUNGS = (1.0, 1.5, 2.0, 3.0)
MIN_PASSES = 40  # a rung is taken when the budget buys each training image at least this many passes
TRAIN_SHARE = 0.8  # of the budget left, what goes to training steps (the rest: validation, decoding, saving)
TIMED_STEPS = 2  # after one warm-up step


def step_seconds(cfg: Any, size: int, width: float, num_classes: int, device: torch.device,
                 amp_dtype: torch.dtype | None = None) -> float:
    """One training step of the rung on random images: its model, the run's optimizer, batch and precision
    (`amp_dtype`: the run's autocast dtype, None for fp32)."""
    config = model_config(cfg.model.name, **{**cfg.model.architecture(), "width_mult": width},
                          image_size=size, num_classes=num_classes)
    memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = build_from_config(config).to(device=device, memory_format=memory_format).train()
        optimizer = build_optimizer(cfg.optim, model)
        images = torch.randn(cfg.run.batch_size, config.in_channels, size, size, device=device)
        images = images.contiguous(memory_format=memory_format)
        labels = torch.randint(0, num_classes, (cfg.run.batch_size,), device=device)
        times = []
        for _ in range(TIMED_STEPS + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device.type, amp_dtype):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            float(loss.detach())  # waits for the device
            times.append(time.perf_counter() - start)
    return min(times[1:])


def ladder(model_name: str) -> tuple[tuple[int, float], ...]:
    """The rungs a model climbs: RUNGS, or WIDTH_RUNGS at the input size of a net built for one size."""
    base = model_config(model_name)
    if isinstance(base, CudaConvnetConfig):
        return tuple((base.image_size, width) for width in WIDTH_RUNGS)
    return RUNGS


def pick_rung(step_s: Callable[[int, float], float], left_s: float, batch_size: int, train_images: int,
              rungs: tuple[tuple[int, float], ...] = RUNGS) -> tuple[tuple[int, float], list[str]]:
    """The largest rung whose step time (`step_s(size, width)`, asked from the cheapest rung up, and no further than
    the first that falls short) gives each image MIN_PASSES passes in `left_s`; the cheapest when none does. Also
    returns what each rung asked would have given, for the log."""
    chosen, seen = rungs[0], []
    for size, width in rungs:
        passes = left_s * TRAIN_SHARE / step_s(size, width) * batch_size / max(train_images, 1)
        seen.append(f"{size} px x{width:g}: {passes:.0f}")
        if passes < MIN_PASSES:
            break
        chosen = (size, width)
    return chosen, seen


def choose_rung(ctx: Any, train_images: int, num_classes: int, started: float | None) -> Any:
    """The context with data.image_size and model.width_mult chosen for the budget (when the recipe leaves both to
    the run and it has a time budget), the choice and its reason logged; else `ctx` as it is. `started`: when the
    run's clock started; None on a resume, which keeps what its checkpoint records. Under torchrun the ranks would
    time different steps and could disagree: there the recipe's own size and width stay."""
    cfg = ctx.cfg
    names = adapt_fields(cfg.run.adapt)
    if (started is None or ctx.info.world_size > 1 or not cfg.run.time_budget or "data.image_size" not in names
            or "model.width_mult" not in names):
        return ctx
    left = parse_duration(cfg.run.time_budget) - (time.perf_counter() - started)
    def step_s(size: int, width: float) -> float:
        return step_seconds(cfg, size, width, num_classes, ctx.device, ctx.amp_dtype)

    (size, width), seen = pick_rung(step_s, left, cfg.run.batch_size, train_images, ladder(cfg.model.name))
    ctx.log(f"input size and width chosen for the budget: {size} px, width x{width:g} (passes over the "
            f"{train_images} training images each rung would give: {', '.join(seen)}; the largest with at least "
            f"{MIN_PASSES} is taken; rules: alexnet.training.rungs)")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size),
                              model=dataclasses.replace(cfg.model, width_mult=width))
    return dataclasses.replace(ctx, cfg=cfg)
