"""A run's numbers, recomputed from its own metrics.csv (plus its class count and parameters, read once from its
last.pt and kept in DIR/info/NAME.json), so that a reader can check every number of a report. DEFINITIONS says
how each is made; every report quotes it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from alexnet.ablate.studies import THRESHOLD_ERROR
from alexnet.errors import AlexNetError
from alexnet.files import atomic_write_text
from alexnet.inspect.filter_structure import measure_filters
from alexnet.models import config_from_dict, count_parameters
from alexnet.store.checkpoint import load_checkpoint

CONVERGED_POINTS = 1.0
STUCK_POINTS = 2.0
THRESHOLD_STEP = 0.05  # a threshold the threshold arm cannot reach at 25% is rounded up to this grid
MAX_METRIC_ROWS = 100_000
INFO_KEYS = {"classes", "params", "filter_structure"}  # what DIR/info/NAME.json keeps of a run's last.pt

DEFINITIONS = (
    "val top-1, val top-5, train accuracy: the last epoch's row of metrics.csv, in % (top-5 is left out with 5 "
    "classes or fewer, where it is 100% by definition). Gap: train accuracy - val top-1 of the last epoch, in points; "
    "the train accuracy is the running accuracy of that epoch's training batches, augmentation and dropout on, as "
    "the trainer logs it. Epochs to the threshold: the training error (1 - train accuracy) per epoch, or at every "
    "point of the run's train_curve.csv where it has one (--curve-points), chance (1 - 1/C) at epoch 0, linearly "
    "interpolated to its first crossing of the threshold; a run that never reaches it "
    "counts at its last epoch, marked >= (a bound). Epochs to converge: the first epoch whose val top-1 is within "
    f"{CONVERGED_POINTS:g} point of the run's best. Stuck: the last epoch's training accuracy within {STUCK_POINTS:g} "
    "points of chance (100/C %). Parameters: the model's, from its last.pt; training images/s: the mean of "
    "metrics.csv's images_per_s over the epochs after the first. Structured conv1 filters: the share of the last.pt's "
    "conv1 filters whose spectral energy sits in few frequencies, above 99% of random filters "
    "(alexnet.inspect.filter_structure; about 1% for random weights)."
)


class MetricsError(AlexNetError):
    """A metrics.csv that cannot be read: the message names the file and the line."""


def read_rows(path: Path) -> list[dict[str, float]]:
    """metrics.csv -> one dict per epoch, floats (epoch an int); a damaged file is a MetricsError naming it."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = []
            for number, row in enumerate(csv.DictReader(f), start=2):
                if number > MAX_METRIC_ROWS:
                    raise MetricsError(f"{path}: more than {MAX_METRIC_ROWS:,} rows; not a run's metrics.csv")
                try:
                    parsed = {k: float(v) for k, v in row.items() if k is not None and v not in ("", None)}
                    epoch = parsed["epoch"]
                    if not epoch.is_integer() or not all(math.isfinite(v) for v in parsed.values()):
                        raise ValueError("a value is not a finite number")
                except (ValueError, TypeError, KeyError, AttributeError) as e:
                    raise MetricsError(f"{path}: line {number} is damaged ({type(e).__name__}: {e})") from None
                parsed["epoch"] = int(epoch)
                rows.append(parsed)
    except FileNotFoundError:
        raise MetricsError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MetricsError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not rows:
        raise MetricsError(f"{path}: no epochs")
    if [r["epoch"] for r in rows] != list(range(1, len(rows) + 1)):
        raise MetricsError(f"{path}: epochs are not 1, 2, 3, ... in order")
    for need in ("val_top1",):
        if any(need not in r for r in rows):
            raise MetricsError(f"{path}: a row lacks {need}")
    return rows


def run_info(root: Path, name: str) -> dict[str, Any]:
    """{"classes": C, "params": P} of a trained run, from its last.pt once, then from DIR/info/NAME.json."""
    last = root / "runs" / name / "checkpoints" / "last.pt"
    cache = root / "info" / f"{name}.json"
    try:
        if cache.is_file() and last.is_file() and cache.stat().st_mtime_ns >= last.stat().st_mtime_ns:
            info = json.loads(cache.read_text(encoding="utf-8"))
            if isinstance(info, dict) and set(info) >= INFO_KEYS:
                return info
    except (OSError, ValueError):
        pass

    ckpt = load_checkpoint(last, check_finite=False)
    model = ckpt.build_model()
    structure = measure_filters(model.conv1.weight, model.towers)
    info = {"classes": len(ckpt.class_names), "params": count_parameters(config_from_dict(dict(ckpt.model_args))),
            "filter_structure": None if structure is None else 100 * structure.structured}
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache, json.dumps(info) + "\n")
    return info


def epochs_to(rows: list[dict[str, float]], threshold: float, classes: int,
              curve: list[dict[str, float]] | None = None) -> float | None:
    """Epochs until the training error first reaches `threshold` (interpolated; chance at epoch 0), from the run's
    train_curve.csv rows when it has them (several points per epoch), else from metrics.csv's epochs."""
    points = [(0.0, 1.0 - 1.0 / classes)] + ([(r["epoch"], r["train_error"]) for r in curve] if curve else
                                             [(float(r["epoch"]), 1.0 - r["train_acc"]) for r in rows
                                              if "train_acc" in r])
    if points[0][1] <= threshold:
        return 0.0
    for (e0, err0), (e1, err1) in zip(points, points[1:], strict=False):
        if err1 <= threshold:  # err0 > threshold >= err1
            return e0 + (err0 - threshold) / (err0 - err1) * (e1 - e0)
    return None


def choose_threshold(runs: list[list[dict[str, float]]], classes: int) -> tuple[float | None, str]:
    """The paper's 25% training error when every run of the threshold arm reaches it; else the lowest error on a
    5% grid that they all reach; None when some run never gets below chance. Returns (threshold, why)."""
    lowest = [min(1.0 - r["train_acc"] for r in rows if "train_acc" in r) for rows in runs if rows]
    if not lowest:
        return None, "no finished run of the threshold arm"
    worst = max(lowest)
    if worst <= THRESHOLD_ERROR:
        return THRESHOLD_ERROR, "the paper's 25% training error (every run of the threshold arm reaches it)"
    threshold = math.ceil(round(worst / THRESHOLD_STEP, 6)) * THRESHOLD_STEP
    if threshold >= 1.0 - 1.0 / classes:
        return None, f"a run of the threshold arm never got below chance ({100 * worst:.1f}% training error)"
    return threshold, (f"{100 * threshold:.0f}% training error: 25% is not reached by every run of the threshold arm "
                       f"(the worst gets down to {100 * worst:.1f}%)")


def run_values(rows: list[dict[str, float]], info: dict[str, Any], threshold: float | None) -> dict[str, float | None]:
    """Every metric of studies.METRICS for one run (None where it does not apply)."""
    last = rows[-1]
    classes = int(info.get("classes") or 0)
    val1 = 100 * last["val_top1"]
    train = 100 * last["train_acc"] if "train_acc" in last else None
    best = max(100 * r["val_top1"] for r in rows)
    speeds = [r["images_per_s"] for r in rows[1:] if "images_per_s" in r] or [
        r["images_per_s"] for r in rows if "images_per_s" in r]
    return {
        "val_top1": val1,
        "val_top5": 100 * last["val_top5"] if "val_top5" in last and classes > 5 else None,
        "train_acc": train,
        "gap": None if train is None else train - val1,
        "epochs_to_threshold": None if threshold is None or not classes else epochs_to(rows, threshold, classes,
                                                                                       info.get("curve")),
        "epochs_to_converge": float(next(r["epoch"] for r in rows if 100 * r["val_top1"] >= best - CONVERGED_POINTS)),
        "stuck": None if train is None or not classes else float(train <= 100 / classes + STUCK_POINTS),
        "params": float(info["params"]) if info.get("params") else None,
        "images_per_s": sum(speeds) / len(speeds) if speeds else None,
        "filter_structure": info.get("filter_structure"),
    }
