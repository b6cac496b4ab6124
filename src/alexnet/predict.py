"""Prediction: image files, folders or globs -> top-k labels with probabilities, using the checkpoint's preprocessing.

Each file is decoded by the data layer's robust loader and transformed exactly as validation images were during
training (preset, input size, mean/std and channel count all come from the checkpoint). A file that cannot be read
gets an error entry and does not stop the others.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alexnet.errors import AlexNetError
from alexnet.inference import InferenceOptions, Predictor

BATCH = 32  # images per forward pass


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (label, probability), best first
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": [{"label": label, "prob": prob} for label, prob in self.top]}


def expand_inputs(items: Sequence[str]) -> list[tuple[str, str | None]]:
    """FILE, DIR (all images below it, hidden entries skipped) or GLOB -> [(path, error or None)], in order."""
    from alexnet.data.images import IMAGE_EXTENSIONS

    out: list[tuple[str, str | None]] = []
    for item in items:
        if os.path.isdir(item):
            found = []
            for folder, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [os.path.join(folder, f) for f in files
                          if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)]
            out += [(p, None) for p in sorted(found)] or [(item, "folder holds no image files")]
        elif os.path.exists(item):
            out.append((item, None))
        elif glob.has_magic(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            out += [(p, None) for p in matches] or [(item, "pattern matches no files")]
        else:
            out.append((item, "no such file"))
    return out


def predict_files(ckpt: dict[str, Any], items: Sequence[str], *, top_k: int = 5,
                  device: torch.device | str = "cpu", inference: InferenceOptions | None = None) -> list[Prediction]:
    """Top-k predictions for every file named by `items` (files, folders, globs)."""
    from alexnet.checkpoint import model_from_checkpoint
    from alexnet.data import build_transform, load_image

    device = torch.device(device)
    from alexnet.onnxrt import calibration_batches

    predictor = Predictor(model_from_checkpoint(ckpt, device), device, inference,
                          calibration=lambda: calibration_batches(ckpt))
    class_names = list(ckpt["class_names"])
    in_channels = int(ckpt["in_channels"])
    transform = build_transform(ckpt["preset"], int(ckpt["image_size"]), False, ckpt["mean"], ckpt["std"], in_channels)
    k = max(1, min(top_k, len(class_names)))
    results = [Prediction(file=path, error=error) for path, error in expand_inputs(items)]
    pending = [r for r in results if r.error is None]
    for start in range(0, len(pending), BATCH):
        chunk, tensors = [], []
        for r in pending[start : start + BATCH]:
            try:
                tensors.append(transform(load_image(r.file, in_channels)))  # (C, S, S)
                chunk.append(r)
            except AlexNetError as e:
                r.error = str(e)
            except OSError as e:
                r.error = f"{r.file}: cannot read ({e.strerror or e})"
        if not chunk:
            continue
        probs = predictor(torch.stack(tensors)).softmax(dim=1)  # (B, num_classes)
        values, indices = probs.topk(k, dim=1)
        for r, vs, ix in zip(chunk, values.tolist(), indices.tolist(), strict=True):
            r.top = [(class_names[i], float(v)) for v, i in zip(vs, ix, strict=True)]
    return results


def format_table(results: Iterable[Prediction]) -> str:
    lines = []
    for r in results:
        if r.error is not None:
            reason = r.error.removeprefix(f"{r.file}: ")  # the loader's messages start with the file name already
            lines.append(f"{r.file}: ERROR {reason}")
        else:
            lines.append(f"{r.file}: " + "  ".join(f"{label} {prob:.3f}" for label, prob in r.top))
    return "\n".join(lines)


def format_json(results: Iterable[Prediction]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2)


def format_csv(results: Sequence[Prediction]) -> str:
    """One row per file: file, label1, prob1, ..., labelK, probK, error."""
    k = max((len(r.top) for r in results), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", *[c for i in range(1, k + 1) for c in (f"label{i}", f"prob{i}")], "error"])
    for r in results:
        cells = [c for label, prob in r.top for c in (label, f"{prob:.6f}")]
        writer.writerow([r.file, *cells, *[""] * (2 * k - len(cells)), r.error or ""])
    return buffer.getvalue()


