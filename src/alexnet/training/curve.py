"""The training curve at a finer grain than an epoch: `train_curve.csv` (`run.curve_points` points per epoch).

The paper's Figure 1 plots the training error rate against epochs, fractions of an epoch included; metrics.csv has
one row per epoch. With `--curve-points N`, each N-th of an epoch's steps becomes one row: the optimizer step it
ends at, the epochs done (step / steps per epoch), and the mean loss and error rate of the training batches in that
stretch (augmentation and dropout on, as the trainer sees them). The file is rewritten whole, atomically, at each
epoch's end; a resumed run keeps the rows up to its checkpoint's step and goes on from there.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet.files import atomic_write_text

if TYPE_CHECKING:
    from alexnet.training.epoch import StepStats  # torch: the report reads curves without it

log = logging.getLogger("alexnet.train")

CURVE_FILE = "train_curve.csv"
COLUMNS = ("step", "epoch", "train_loss", "train_error")
MAX_ROWS = 1_000_000


class TrainingCurve:
    """Sums the training batches' loss and errors over stretches of `steps_per_epoch / points` steps."""

    def __init__(self, path: Path, points: int, steps_per_epoch: int, resumed_step: int = 0) -> None:
        self.path, self.steps_per_epoch = path, steps_per_epoch
        self.stretch = max(1, round(steps_per_epoch / points))
        self.rows = read_curve(path, up_to_step=resumed_step) if resumed_step else []
        self.loss_sum, self.wrong, self.count = 0.0, 0, 0

    def add(self, global_step: int, read: StepStats) -> None:
        """One step's figures (`global_step`: the number of steps done, this one included)."""
        self.loss_sum += read.loss * read.count
        self.wrong += read.count - read.correct
        self.count += read.count
        if global_step % self.stretch == 0 and self.count:
            self.rows.append({"step": global_step, "epoch": round(global_step / self.steps_per_epoch, 4),
                              "train_loss": round(self.loss_sum / self.count, 6),
                              "train_error": round(self.wrong / self.count, 6)})
            self.loss_sum, self.wrong, self.count = 0.0, 0, 0

    def save(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, out.getvalue())


def read_curve(path: Path, up_to_step: int | None = None) -> list[dict[str, float]]:
    """The rows of a train_curve.csv (those up to `up_to_step` when given). A damaged or missing file gives no
    rows, with a logged reason: the curve is a record, never a reason to stop a run or a report."""
    rows: list[dict[str, float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for number, row in enumerate(csv.DictReader(f), start=2):
                if number > MAX_ROWS:
                    raise ValueError(f"more than {MAX_ROWS:,} rows")
                parsed = {k: float(row[k]) for k in COLUMNS}
                if not all(math.isfinite(v) for v in parsed.values()) or not 0 <= parsed["train_error"] <= 1:
                    raise ValueError(f"line {number} holds a value out of range")
                if rows and parsed["step"] <= rows[-1]["step"]:
                    raise ValueError(f"line {number}: steps do not increase")
                if up_to_step is None or parsed["step"] <= up_to_step:
                    rows.append(parsed)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as e:
        log.warning("%s: not read (%s: %s); the training curve starts again", path, type(e).__name__, e)
        return []
    return rows
