"""What the user reads while a run trains: lines printed above the progress bar and kept in log.txt, the progress bar
(images/s and ETA), the run's one-line description and the d2l note's per-epoch line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from alexnet.config import TrainConfig
from alexnet.errors import plural
from alexnet.runtime.distributed import DistInfo


class RunLog:
    """Lines for the user: printed (above the progress bar) and appended to log.txt, on rank 0 only."""

    def __init__(self, path: Path | None, enabled: bool):
        self.path, self.enabled = path, enabled

    def __call__(self, message: str, console: bool = True) -> None:
        if not self.enabled:
            return
        if console:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(message + "\n")


def make_bar(progress: bool | None, info: DistInfo, total: int):
    """tqdm over images (so its rate is images/s), on stderr, only on rank 0 and only when stderr is a terminal."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, unit="img", unit_scale=True, dynamic_ncols=True, leave=False,
                disable=not (show and info.is_main), file=sys.stderr)


def d2l_line(row: dict[str, Any]) -> str:
    """The d2l note's per-epoch line, same format: `epoch 3, loss 0.2952, train acc 0.891, test acc 0.894, time 68.6 sec`."""
    ema = f" (moving average {row['ema_val_top1']:.3f})" if row.get("ema_val_top1") is not None else ""
    return (f"epoch {row['epoch']}, loss {row['train_loss']:.4f}, train acc {row['train_acc']:.3f}, "
            f"test acc {row['val_top1']:.3f}{ema}, time {row['seconds']:.1f} sec")


def describe_run(cfg: TrainConfig, model: torch.nn.Module, bundle: Any, image_size: int, device: torch.device,
                 info: DistInfo, steps: int) -> str:
    params = sum(p.numel() for p in model.parameters())
    return (
        f"training {cfg.model.name} (width x{cfg.model.width_mult:g}, {params:,} parameters) on "
        f"{len(bundle.train)} train / {len(bundle.val)} val images, {len(bundle.class_names)} classes, "
        f"{image_size}x{image_size} px, preset {bundle.preset}" + ("" if cfg.data.preset else " (the data's own)")
        + f", loader {cfg.data.loader}; {cfg.optim.opt} lr "
        f"{cfg.optim.lr:g} ({cfg.optim.lr_schedule}), batch {cfg.run.batch_size} x {steps} steps/epoch, "
        f"{plural(cfg.run.epochs, 'epoch')}, device {device}, amp {cfg.run.amp}"
        + (f", {info.world_size} ranks" if info.enabled else "")
    )


GAP_WARNING = 0.10  # a train-validation gap larger than this at the run's end is explained in the log (issue 23)


def gap_line(row: dict[str, Any], augmented: bool) -> str | None:
    """What the last epoch's train-validation gap means, when it is over GAP_WARNING; else None. The training
    accuracy is measured on the training batches as they were drawn (augmented, dropout on), the validation's on
    the weights best.pt would keep (the moving average's when it scored higher)."""
    val = max(row["val_top1"], row.get("ema_val_top1") or 0.0)
    gap = row["train_acc"] - val
    if gap <= GAP_WARNING:
        return None
    cure = ("a longer budget or more photos" if augmented
            else "augmentation (--recipe fast chooses it once the budget buys enough passes; or --crop-scale 0.35)")
    return (f"the last epoch's training accuracy ({row['train_acc']:.3f}) is {100 * gap:.0f} points above validation "
            f"({val:.3f}): the network fits its training photos better than new ones (it learned some of them by "
            f"heart); what narrows it: {cure}")
