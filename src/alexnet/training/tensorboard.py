"""`--tensorboard`: the run as TensorBoard shows it, in `<run>/tensorboard` (`tensorboard --logdir runs/`).

Per read step the training loss and learning rate; per epoch every metrics.csv column, conv1's filters (the paper's
Figure 3) and the validation confusion matrix as images; at the end the hyperparameters with the best top-1. Rank 0
only. TensorBoard is an optional extra, imported when the flag is given; a resumed run drops the events past the
step it resumes from (purge_step), so curves never double back.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import ConfigError
from alexnet.inspect.plots import filter_grid, plot_confusion


class TensorBoardLog:
    def __init__(self, folder: Path, resume_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard extra: pip install 'alexnet[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=resume_step or None)

    def step(self, global_step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss_step", loss, global_step)
        self.writer.add_scalar("train/lr", lr, global_step)

    def epoch(self, row: dict[str, Any], global_step: int, conv1_weight: Any, confusion: np.ndarray,
              class_names: list[str]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, row["epoch"])
        grid = filter_grid(conv1_weight.detach().float().cpu().numpy()).astype(np.float32)  # (H, W, 3|1) in [0, 1]
        self.writer.add_image("conv1_filters", grid, row["epoch"], dataformats="HWC")
        with tempfile.TemporaryDirectory() as tmp:  # matplotlib draws into a file; TensorBoard takes its pixels
            png = plot_confusion(confusion, class_names, Path(tmp) / "confusion.png",
                                 title=f"validation, epoch {row['epoch']}")
            matrix_image = _decode_png(png.read_bytes())
        self.writer.add_image("confusion_matrix", matrix_image, row["epoch"], dataformats="HWC")
        self.writer.flush()

    def finish(self, hparams: dict[str, Any], best_val_top1: float) -> None:
        plain = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        self.writer.add_hparams(plain, {"hparam/best_val_top1": best_val_top1}, run_name=".")
        self.writer.close()


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def hyperparameters(cfg: Any) -> dict[str, Any]:
    """The config's fields as flat `section.field` names, for TensorBoard's HPARAMS tab."""
    out = {}
    for section, fields in cfg.to_dict().items():
        if isinstance(fields, dict):
            out.update({f"{section}.{k}": v for k, v in fields.items() if v is not None})
    return out
