"""A recipe computed from the data and the budget (`run.adapt`, set by `--recipe fast`; issue 23).

What pays on a short run hurts on a long one and the other way round ("Budgeted Training", Li et al. 2020; airbench;
fastai): augmentation slows the first epochs down and only pays once each image has been seen many times, and so
does averaging the weights. The run therefore decides its regularisation from the passes each image will get (the
epochs: planned from a measured step under --time-budget, else run.epochs), by the rules in `REGULARISATION`, each
chosen by measurement on real photos (benchmarks/recipe_levers.py; the table is in benchmarks/README.md).

Only the fields listed in `run.adapt` are chosen here; resolve_config takes out of that list every field the user
set (in a --config YAML or a flag; --augment or --no-augment counts as setting data.crop_scale), so what a person
asks for always wins. The choices, and why, are one block of
the log, and go into the run's config (config.yaml and the checkpoints), so a resume and a reader see the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from alexnet.config.values import adapt_fields
from alexnet.training.ema import WeightAverage


@dataclass(frozen=True)
class Regularisation:
    """The settings of one band of epochs (passes over the training set)."""

    min_epochs: float  # the band starts here
    crop_scale: float  # random-resized crops down to this area fraction, and flips (0: none)
    label_smoothing: float
    ema: bool  # average the weights (decay from the run's length: `ema_decay`)
    tta: str  # validation's views: none | flip


# From the fewest passes to the most; the last band whose min_epochs the run reaches applies. Measured on
# dogs-vs-cats-4k, 3 seeds, at 6 and 40 epochs (benchmarks/README.md, "Accuracy per CPU-minute"): flip TTA won at
# both; crops lost 6 points at 6 epochs and won 2-4 at 40 (the band's edge between them, 12, was not measured); the
# moving average never scored above the weights under the cosine schedule (it is not chosen; --ema-decay keeps it);
# label smoothing lost at 40.
REGULARISATION = (
    Regularisation(0, crop_scale=0.0, label_smoothing=0.0, ema=False, tta="flip"),
    Regularisation(12, crop_scale=0.35, label_smoothing=0.0, ema=False, tta="flip"),
)

REGULARISATION_FIELDS = ("data.crop_scale", "optim.label_smoothing", "optim.ema_decay", "data.tta")  # (rungs: the rest)
EMA_HORIZON = 0.1  # the average spans about this fraction of the run's steps (decay = 1 - 1 / (fraction x steps))
EMA_DECAY_RANGE = (0.9, 0.9999)


def ema_decay(steps: int) -> float:
    """A decay whose average spans about EMA_HORIZON of the run's `steps` (its half-life ~0.07 of them)."""
    lo, hi = EMA_DECAY_RANGE
    return min(hi, max(lo, 1.0 - 1.0 / max(EMA_HORIZON * steps, 1.0)))


def regularisation_for(epochs: float) -> Regularisation:
    return [r for r in REGULARISATION if epochs >= r.min_epochs][-1]


def adapt(cfg: Any, epochs: float, steps: int) -> tuple[Any, str | None]:
    """`cfg` with its `run.adapt` fields chosen for `epochs` passes and `steps` optimizer steps, and the log's block
    (None when the recipe leaves nothing to the run)."""
    names = [n for n in adapt_fields(cfg.run.adapt) if n in REGULARISATION_FIELDS
             and not (n == "data.crop_scale" and cfg.data.loader != "cache")]  # crops: the cache loader's
    if not names:
        return cfg, None
    band = regularisation_for(epochs)
    chosen = {"data.crop_scale": band.crop_scale, "optim.label_smoothing": band.label_smoothing,
              "optim.ema_decay": round(ema_decay(steps), 6) if band.ema else 0.0, "data.tta": band.tta}
    sections = {"data": {}, "optim": {}}
    for name in names:
        section, field = name.split(".")
        sections[section][field] = chosen[name]
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **sections["data"]),
                              optim=dataclasses.replace(cfg.optim, **sections["optim"]))
    shown = ", ".join(f"{name.split('.')[1]} {chosen[name]:g}" if isinstance(chosen[name], float)
                      else f"{name.split('.')[1]} {chosen[name]}" for name in names)
    why = f"{epochs:.0f} passes over each image: the band from {band.min_epochs:g} passes"
    return cfg, f"recipe chosen for this run: {shown} ({why}; rules: alexnet.training.adapt)"


def apply_to_run(ctx: Any, source: Any, state: Any | None, raw_model: Any, epochs: float, steps: int) -> Any:
    """Choose the run's `run.adapt` fields for its length, log the choice, and put it into effect where the run
    was built before it (the training batches' crops, the moving average); returns the context with the new config.
    A new run only: a resume follows the choice its checkpoint records."""
    cfg, line = adapt(ctx.cfg, epochs, steps)
    if line is None:
        return ctx
    ctx.log(line)
    augment = getattr(source, "augment", None)  # the cache loader's BatchAugment
    if augment is not None:
        augment.crop_scale = cfg.data.crop_scale
        source.fit_images_to_input()  # no crops: a training cache kept larger is squashed once, not every batch
    if state is not None:  # else built after this, from the config (TrainState.ema)
        state.ema = WeightAverage(raw_model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
    return dataclasses.replace(ctx, cfg=cfg)


def eval_passes(cfg: Any) -> int:
    """Forward passes per validation image at an epoch's end: 2 views with flip TTA, twice with a moving average."""
    return (2 if cfg.data.tta == "flip" else 1) * (2 if cfg.optim.ema_decay else 1)
