"""A study's learning rate per arm, chosen by a short sweep before its runs (`Study.lr_sweep`).

Section 3.1, Figure 1: "The learning rates for each network were chosen independently to make training as fast as
possible." So each train arm first trains for `sweep_epochs` at every rate of `lr_sweep` (seed 0, as a study of
its own, STUDY-sweep: its runs and report sit beside the study's, and a finished sweep is read, not trained again),
and then trains all its seeds at the rate whose training error was lowest at the sweep's end: the fastest fall.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from alexnet.ablate.plan import Settings, make_plan, write_plan
from alexnet.ablate.report import write_report
from alexnet.ablate.runner import run_plan
from alexnet.ablate.studies import Arm, Study
from alexnet.errors import plural


def sweep_arm_name(arm: str, lr: float) -> str:
    return f"{arm}-lr{lr:g}"


def sweep_study(study: Study) -> Study:
    """STUDY-sweep: every train arm at every rate of `study.lr_sweep`, for `study.sweep_epochs`."""
    arms = tuple(Arm(sweep_arm_name(a.name, lr), {**a.overrides, "optim.lr": lr, "run.epochs": study.sweep_epochs},
                     "train", f"{a.describe()}, lr {lr:g}")
                 for a in study.arms if a.kind == "train" for lr in study.lr_sweep)
    return Study(f"{study.name}-sweep", f"{study.title}: the learning-rate sweep", arms, ("train_acc",),
                 base=study.base, notes=f"{plural(study.sweep_epochs, 'epoch')} at each rate, seed 0; each arm of "
                 f"{study.name} then trains at the rate with the lowest training error here.")


def choose_rates(study: Study, root: Path, settings: Settings, say=print) -> tuple[Study, list[tuple[str, str]]]:
    """The study with each train arm's `optim.lr` set by its sweep (run here unless finished), and the sweep's
    failures. An arm whose sweep runs all failed keeps the study's rate, and the notes say so."""
    if not study.lr_sweep:
        return study, []
    plan = make_plan(sweep_study(study), root, settings, seeds=1)
    write_plan(plan)
    failures = run_plan(plan, say=say)
    result = write_report(plan)
    arms, lines = [], []
    for arm in study.arms:
        errors = {lr: 100 - acc for lr in study.lr_sweep
                  if (acc := result.values[sweep_arm_name(arm.name, lr)]["train_acc"].get(0)) is not None}
        if arm.kind != "train" or not errors:
            arms.append(arm)
            continue
        best = min(errors, key=lambda lr: (errors[lr], lr))
        arms.append(dataclasses.replace(arm, overrides={**arm.overrides, "optim.lr": best}))
        tried = ", ".join(f"{lr:g}: {errors[lr]:.1f}%" for lr in sorted(errors))
        lines.append(f"{arm.name} at lr {best:g} (training error after {plural(study.sweep_epochs, 'epoch')} at each rate: "
                     f"{tried})")
    notes = (study.notes + " " if study.notes else "") + "Learning rates chosen by the sweep (report: " \
        f"{study.name}-sweep/report.md): " + "; ".join(lines) + "."
    return dataclasses.replace(study, arms=tuple(arms), notes=notes), failures
