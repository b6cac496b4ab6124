"""The paper's Figure 1 drawn from a study's runs (`Study.figure == "figure1"`): training error against epochs, from
each run's train_curve.csv (--curve-points), the first arm solid and the second dashed as the paper draws ReLU and
tanh."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet.ablate.runner import run_dir
from alexnet.errors import AlexNetError
from alexnet.files import atomic_write
from alexnet.inspect.plots import _figure
from alexnet.training.curve import CURVE_FILE, read_curve

if TYPE_CHECKING:
    from alexnet.ablate.report import StudyResult  # the report calls this module: no import back at run time

STYLES = {0: "-", 1: "--"}  # the paper's Figure 1: the first arm (ReLU) solid, the second (tanh) dashed


def plot_figure1(result: StudyResult, path: Path) -> Path | None:
    """Training error against epochs, each arm's mean over its seeds (thin lines: each seed), the first arm solid
    and the second dashed, the 25% line dotted: the paper's Figure 1, from the runs' train_curve.csv."""
    plan, series = result.plan, []
    for i, arm in enumerate(a for a in plan.study.arms if a.kind == "train"):
        curves = [c for run in plan.runs_of(arm.name)
                  if run.name in result.rows and (c := read_curve(run_dir(plan.root, run.name) / CURVE_FILE))]
        if curves:
            series.append((arm, STYLES.get(i, ":"), curves))
    if not series:
        return None
    fig = _figure(6, 4.5)
    ax = fig.subplots()
    for arm, style, curves in series:
        length = min(len(c) for c in curves)
        x = [c["epoch"] for c in curves[0][:length]]
        mean = [sum(c[j]["train_error"] for c in curves) / len(curves) for j in range(length)]
        line = ax.plot(x, mean, style, color="black", lw=1.8, label=f"{arm.describe()} (mean of {len(curves)})")[0]
        for c in curves:
            ax.plot([r["epoch"] for r in c], [r["train_error"] for r in c], style, color=line.get_color(), lw=0.5,
                    alpha=0.4)
    if result.threshold is not None and math.isfinite(result.threshold):
        ax.axhline(result.threshold, color="grey", ls=":", lw=1)
    ax.set(xlabel="Epochs", ylabel="Training error rate", ylim=(0, 0.8),
           title="Figure 1, measured: training error on CIFAR-10" if result.classes == 10 else "Figure 1, measured")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=".png")
    except (OSError, AlexNetError):
        return None
    return path
