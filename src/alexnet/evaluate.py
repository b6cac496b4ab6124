"""Metrics: loss, top-1/top-5, the confusion matrix with per-class precision and recall, and the paper's 10-crop.

`evaluate()` takes a model and an iterable of (images, labels) batches and knows nothing about where they come
from; the validation pass of `fit()` and `alexnet eval` both use it. Counts are accumulated as tensors on the
device and summed over torchrun ranks once, at the end.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alexnet.config import TTA_MODES
from alexnet.data import build_datasets, build_from_description
from alexnet.data.augment import BatchAugment
from alexnet.data.batches import EvalBatches
from alexnet.data.cache import cache_split
from alexnet.data.transforms import ten_crop_size
from alexnet.errors import ConfigError, DataError, plural
from alexnet.files import atomic_write, atomic_write_text
from alexnet.inspect.plots import plot_confusion
from alexnet.runtime.amp import autocast
from alexnet.runtime.distributed import all_reduce_sum
from alexnet.runtime.inference import InferenceOptions, prepare_model
from alexnet.runtime.onnxrt import calibration_batches
from alexnet.store.checkpoint import load_checkpoint


@dataclass
class EvalResult:
    """Counts from one pass over a split; every rate is derived from them."""

    loss_sum: float  # summed (not averaged) cross-entropy over the images
    correct: int  # top-1 hits
    correct5: int  # top-5 hits (top-C when there are fewer than 5 classes)
    total: int
    confusion: np.ndarray  # (C, C) int64: rows are true classes, columns predicted
    class_names: list[str] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return self.loss_sum / self.total if self.total else math.nan

    @property
    def top1(self) -> float:
        return self.correct / self.total if self.total else math.nan

    @property
    def top5(self) -> float:
        return self.correct5 / self.total if self.total else math.nan

    @property
    def top5_applies(self) -> bool:
        """Top-5 says something only with more than 5 classes: with 5 or fewer every image is in its top 5, and
        1.0 would read as a result (ablate's report says n/a for the same reason)."""
        return len(self.confusion) > 5

    def per_class(self) -> list[dict[str, Any]]:
        """Precision (of the predictions of this class, how many were right) and recall (of the images of this
        class, how many were found); None where the denominator is zero."""
        out = []
        predicted = self.confusion.sum(axis=0)
        actual = self.confusion.sum(axis=1)
        for i, name in enumerate(self.class_names):
            hits = int(self.confusion[i, i])
            out.append(
                {
                    "class": name,
                    "precision": hits / int(predicted[i]) if predicted[i] else None,
                    "recall": hits / int(actual[i]) if actual[i] else None,
                    "support": int(actual[i]),
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "top1": self.top1,
            "top5": self.top5 if self.top5_applies else None,  # null: 5 classes or fewer (see top5_applies)
            "loss": self.loss,
            "correct": self.correct,
            "total": self.total,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
            "class_names": list(self.class_names),
        }

    def accuracy_line(self) -> str:
        """The first note's TestNet.py line, verbatim format: `Accuracy: 1234/1500 (82%)`."""
        return f"Accuracy: {self.correct}/{self.total} ({100.0 * self.correct / max(self.total, 1):.0f}%)"

    def _top5_text(self) -> str:
        return f"{self.top5:.4f}" if self.top5_applies else f"n/a ({plural(len(self.confusion), 'class', 'classes')})"

    def report(self) -> str:
        lines = [
            self.accuracy_line(),
            f"top-1 {self.top1:.4f}  top-5 {self._top5_text()}  loss {self.loss:.4f}  ({plural(self.total, 'image')})",
            "",
            f"{'class':<24} {'precision':>9} {'recall':>9} {'support':>8}",
        ]
        for row in self.per_class():
            p = "-" if row["precision"] is None else f"{row['precision']:.3f}"
            r = "-" if row["recall"] is None else f"{row['recall']:.3f}"
            lines.append(f"{row['class'][:24]:<24} {p:>9} {r:>9} {row['support']:>8}")
        return "\n".join(lines)


class MetricTotals:
    """Running sums on the device (no host sync per batch), reduced over ranks by `result()`."""

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(4, dtype=self.dtype, device=device)  # loss_sum, correct, correct5, count
        self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: torch.Tensor | None = None) -> None:
        logits = logits.float()
        if loss_sum is None:
            loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        k = min(5, self.num_classes)
        topk = logits.topk(k, dim=1).indices  # (B, k)
        hit = topk == labels[:, None]
        self.sums += torch.stack(
            [loss_sum.detach(), hit[:, 0].sum(), hit.any(dim=1).sum(), torch.tensor(labels.numel(), device=labels.device)]
        ).to(self.dtype)
        self.confusion += torch.bincount(labels * self.num_classes + topk[:, 0], minlength=self.num_classes**2)

    def result(self, class_names: Sequence[str], reduce: bool = True) -> EvalResult:
        sums, confusion = self.sums.clone(), self.confusion.clone()
        if reduce:
            all_reduce_sum(sums)
            all_reduce_sum(confusion)
        loss_sum, correct, correct5, total = sums.tolist()
        return EvalResult(
            loss_sum=loss_sum,
            correct=int(correct),
            correct5=int(correct5),
            total=int(total),
            confusion=confusion.cpu().numpy().reshape(self.num_classes, self.num_classes),
            class_names=list(class_names),
        )


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    class_names: Sequence[str],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    reduce: bool = True,
    tta: str = "none",
) -> EvalResult:
    """One pass in eval mode. Batches of shape (B, V, C, S, S) hold V views of each image (the paper's 10 crops,
    `alexnet.data.augment.ten_crop`): the softmax of the views is averaged (the paper, section 4.1). With
    tta="flip", each (B, C, S, S) batch becomes 2 views, the image and its horizontal mirror (`flip_views`)."""
    check_tta(tta)
    was_training = model.training
    model.eval()
    totals = MetricTotals(len(class_names), device)
    precision = autocast(device.type, amp_dtype)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, labels in batches:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if tta == "flip":
            if images.dim() != 4:
                raise ConfigError("tta flip takes single images (B, C, S, S), not views already: not with 10-crop")
            images = flip_views(images)  # (B, 2, C, S, S)
        if images.dim() == 4:
            with precision:
                logits = model(images.contiguous(memory_format=memory_format)).float()  # (B, num_classes)
            totals.update(logits, labels)
        else:
            b, v = images.shape[:2]
            with precision:
                logits = model(images.flatten(0, 1).contiguous(memory_format=memory_format)).float()  # (B*V, C)
            log_probs = logits.softmax(dim=1).view(b, v, -1).mean(dim=1).clamp_min(1e-12).log()  # (B, num_classes)
            totals.update(log_probs, labels, F.nll_loss(log_probs, labels, reduction="sum"))
    model.train(was_training)
    return totals.result(class_names, reduce=reduce)


def flip_views(images: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S) -> (B, 2, C, S, S): each image, then its mirror image (left and right swapped)."""
    return torch.stack([images, images.flip(-1)], dim=1)


def check_tta(tta: str | None, ten_crop: bool = False) -> None:
    """None: the checkpoint's own (`recorded_tta`)."""
    if tta is None:
        return
    if tta not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    if tta != "none" and ten_crop:
        raise ConfigError(f"--tta {tta} and --ten-crop cannot be combined: choose one (10-crop already averages "
                          "mirrored crops)")


def write_confusion_csv(result: EvalResult, path: str | Path) -> Path:
    """Header row `true\\predicted,<class>...`, then one row per true class; written whole or not at all."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["true\\predicted", *result.class_names])
    for name, row in zip(result.class_names, result.confusion.tolist(), strict=True):
        writer.writerow([name, *row])
    atomic_write_text(path, text.getvalue())
    return Path(path)


@dataclass
class EvalRun:
    result: EvalResult
    description: str  # which images were evaluated, for the report's first line
    confusion_csv: Path
    confusion_png: Path


@dataclass(frozen=True)
class EvalOptions:
    """How `evaluate_checkpoint` reads its images: which split, seen how (10 crops, or flip TTA), in what batches."""

    split: str = "val"  # train | val (a source evaluated whole ignores it)
    ten_crop: bool = False  # the paper's 10 crops, softmax averaged (section 4.1)
    tta: str | None = None  # config.TTA_MODES; not with ten_crop; None: the run's own (Checkpoint.recorded_tta)
    batch_size: int = 64
    workers: int | None = None  # decoding threads of the cache build, clamped to the machine (data.limits)


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    data: str | None = None,
    options: EvalOptions | None = None,
    output_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    inference: InferenceOptions | None = None,
) -> EvalRun:
    """`alexnet eval`: a checkpoint on its own validation data (or on `data`), with its recorded preprocessing.

    A source without a train/val split of its own (one folder of class folders, like the note's TEST_PATH) is
    evaluated whole. Class names must match the checkpoint's, else the refusal names the field. `options` picks the
    split and the views: `tta="flip"` averages each image's probabilities with its mirror's (`evaluate`); not with
    `ten_crop`.
    """
    options = options or EvalOptions()
    check_tta(options.tta, options.ten_crop)
    ckpt = load_checkpoint(checkpoint, prefer="best")
    tta = options.tta if options.tta is not None else "none" if options.ten_crop else ckpt.recorded_tta()
    path, class_names = Path(ckpt.path), list(ckpt.class_names)
    inference = inference or InferenceOptions()
    device = torch.device(device) if inference.uses_torch else torch.device("cpu")  # ONNX Runtime: CPU provider
    bundle, whole = _eval_bundle(ckpt, data)
    ckpt.check_matches({"class_names": list(bundle.class_names)}, "evaluate")
    part = "train" if whole or options.split == "train" else "val"
    # 10-crop cuts its crops from a larger square than S for every preset (data.transforms.ten_crop_size): the images
    # are decoded at that size (its own cache; for `paper` the one training used), not enlarged from the S x S ones.
    side = ten_crop_size(ckpt.preprocessing.image_size) if options.ten_crop else None
    cached = cache_split(bundle, part, size=side, workers=options.workers)
    if len(cached) == 0:
        raise DataError(f"{bundle.source}: the {part} split holds no images")
    augment = BatchAugment.for_checkpoint(ckpt, ten_crop=options.ten_crop)
    model = prepare_model(ckpt.build_model(device), inference,
                          calibration=lambda: calibration_batches(ckpt, workers=options.workers))
    batches = EvalBatches(cached.images, cached.labels, augment, options.batch_size)
    result = evaluate(model, batches, class_names, device, reduce=False,
                      amp_dtype=inference.amp_dtype, channels_last=inference.channels_last and inference.uses_torch,
                      tta=tta)
    folder = Path(output_dir) if output_dir is not None else ckpt.run_dir
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = write_confusion_csv(result, folder / "confusion.csv")
    png_path = folder / "confusion.png"
    views = f", 10-crop from {side} px" if options.ten_crop else ", flip TTA" if tta == "flip" else ""
    title = f"{path.name} on {part}{f' ({views[2:]})' if views else ''}"
    atomic_write(png_path, lambda tmp: plot_confusion(result.confusion, result.class_names, tmp, title=title),
                 suffix=".png")
    shown = f"the whole of {bundle.source}" if whole else f"the {part} split of {bundle.source}"
    description = f"{path} on {shown} ({plural(len(cached), 'image')}{views})"
    return EvalRun(result, description, csv_path, png_path)


def _eval_bundle(ckpt: Any, data: str | None) -> tuple[Any, bool]:
    """(the data bundle to evaluate on, whether it is evaluated whole): the checkpoint's own data split the same
    way, or `data` read with the checkpoint's preprocessing and split (whole when it has no split of its own)."""
    if data is None:  # the data the checkpoint was trained and validated on, split the same way
        return build_from_description(ckpt.data_description(), statistics=False), False
    data_cfg = (ckpt.config or {}).get("data", {})
    p = ckpt.preprocessing
    common = {"image_size": p.image_size, "in_channels": p.in_channels, "preset": p.preset, "statistics": False}
    common["layout"] = data_cfg.get("layout", "auto")  # class folders read as in training (--layout)
    bundle = build_datasets(source=data, val_split=data_cfg.get("val_split", 0.2),
                            seed=data_cfg.get("split_seed", 0), **common)
    if bundle.layout.startswith("train/val") or "train/test" in bundle.layout:
        return bundle, False
    return build_datasets(source=data, val_split=0.0, seed=0, **common), True  # no split of its own: all test images
