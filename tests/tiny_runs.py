"""The smallest real training runs the tests share: flags, config, the CLI in a subprocess, metrics without timings,
and a model with trained-like BatchNorm statistics. Test modules import these from here, never from each other."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from alexnet.config import resolve_config

# The smallest run that still exercises everything: 1/8-width alexnet-bn at its smallest input (67 px).
TINY = ["--width-mult", "0.125", "--image-size", "67", "--batch-size", "8", "--no-progress"]
TINY_OVERRIDES = {"model.width_mult": 0.125, "data.image_size": 67, "run.batch_size": 8, "run.device": "cpu"}
TIMINGS = ("seconds", "images_per_s", "data_wait_s", "data_wait_share")  # metrics.csv columns that measure time


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=timeout)


def tiny_config(data: Path, out: Path, **extra):
    return resolve_config(overrides={**TINY_OVERRIDES, "data.source": str(data), "run.output_dir": str(out), **extra})


def untimed_rows(run: Path) -> list[dict]:
    """metrics.csv without the columns that measure time (they differ between any two runs)."""
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(f)]


def trained_like(name: str):
    """A 1/4-width model for 7 classes at 67 px, in eval mode, with BatchNorm running statistics away from their
    identity initial values (so that a fast path that mishandles them shows)."""
    import torch

    from alexnet.models import build_model

    torch.manual_seed(0)
    model = build_model(name, num_classes=7, image_size=67, width_mult=0.25)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()
