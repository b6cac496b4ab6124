"""The jobs of a study that do not train AlexNet: hand-crafted baselines (the features study) and the 10-crop
evaluation of a finished run (the tencrop study). Each writes a one-row metrics.csv in the run folders' format
(runfolder.METRIC_COLUMNS), so the report reads every arm the same way.

Baselines (the second note: "learned features can beat hand-crafted ones"), on the run's own train/val split, each
image centre-cropped to the run's input size as the trainer's validation sees it:
- pixels: the image resized to 24x24, standardised, multinomial logistic regression (scikit-learn);
- hog: histograms of oriented gradients of the grey image (scikit-image: 9 orientations, 8x8-pixel cells, 2x2-cell
  blocks), standardised, the same logistic regression.
benchmarks/linear_baseline.py measures the raw-pixel model with Adam over epochs; here it is the closed-form-ish
lbfgs fit, which needs no learning rate and gives the same number for every seed.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from alexnet.config import ModelSpec
from alexnet.data import build_datasets
from alexnet.data.augment import BatchAugment
from alexnet.data.cache import cache_split
from alexnet.errors import AlexNetError
from alexnet.evaluate import EvalOptions, evaluate_checkpoint
from alexnet.files import atomic_write_text
from alexnet.models import model_config
from alexnet.store.runfolder import write_metrics

PIXELS_SIZE = 24  # side the raw-pixel baseline sees: 24 x 24 x 3 = 1,728 inputs
HOG_ORIENTATIONS = 9
HOG_CELL = 8  # pixels per cell side
HOG_BLOCK = 2  # cells per block side
LOGREG_MAX_ITER = 1000
LOGREG_C = 0.1  # inverse L2 strength: 10x scikit-learn's default (HOG on 4,000 photos: 98% train, 63% val at 1.0)
BATCH = 256


def _bundle(cfg: dict[str, Any]):
    spec = ModelSpec(**cfg["model"])
    base = model_config(spec.name, **spec.architecture())
    d = cfg["data"]
    size = d.get("image_size") or base.image_size
    bundle = build_datasets(source=d.get("source"), image_size=size, in_channels=base.in_channels,
                            preset=d.get("preset"), val_split=d.get("val_split", 0.2), seed=d.get("split_seed", 0),
                            strict=d.get("strict", False), download=d.get("download", False), root=d.get("root"),
                            layout=d.get("layout", "auto"))
    return bundle, size


def _features(kind: str, images, size: int, bundle) -> Any:
    """uint8 (N, C, R, R) -> (N, D) float64 features, a batch at a time (the whole split as float would not fit at
    227 px)."""
    import numpy as np
    import torch.nn.functional as F

    view = BatchAugment(bundle.preset, size, bundle.mean, bundle.std, train=False, in_channels=images.shape[1])
    out = []
    for i in range(0, len(images), BATCH):
        x = view(images[i : i + BATCH])  # (B, C, S, S), normalised as the trainer's validation
        if kind == "pixels":
            small = F.interpolate(x, size=(PIXELS_SIZE, PIXELS_SIZE), mode="bilinear", antialias=True,
                                  align_corners=False)
            out.append(small.flatten(1).numpy().astype(np.float64))
        else:
            from skimage.feature import hog

            grey = x.mean(dim=1).numpy()  # (B, S, S)
            out.append(np.stack([hog(g, orientations=HOG_ORIENTATIONS, pixels_per_cell=(HOG_CELL, HOG_CELL),
                                     cells_per_block=(HOG_BLOCK, HOG_BLOCK), feature_vector=True) for g in grey]))
        del x
    if not out:
        return np.zeros((0, 1))
    return np.concatenate(out)


def _topk(probs, labels, k: int) -> float:
    import numpy as np

    top = np.argsort(-probs, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def run_baseline(kind: str, cfg: dict[str, Any], folder: Path) -> dict[str, float]:
    """Fit the `kind` baseline on cfg's training split, score its validation split; write folder/metrics.csv."""
    if kind not in ("pixels", "hog"):
        raise AlexNetError(f"unknown baseline {kind!r} (pixels, hog)")
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    bundle, size = _bundle(cfg)
    train, val = cache_split(bundle, "train"), cache_split(bundle, "val")
    if len(train) == 0 or len(val) == 0:
        raise AlexNetError(f"{bundle.source}: the {kind} baseline needs training and validation images")
    xt, xv = _features(kind, train.images, size, bundle), _features(kind, val.images, size, bundle)
    yt, yv = train.labels.numpy(), val.labels.numpy()
    if len(np.unique(yt)) < 2:
        raise AlexNetError(f"{bundle.source}: the {kind} baseline needs at least 2 classes in the training split")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=LOGREG_MAX_ITER, C=LOGREG_C))
    with warnings.catch_warnings(record=True) as caught:  # lbfgs not converged: recorded, not printed
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(xt, yt)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # predict_proba's columns are the classes seen in training; place them at their label index
    probs = np.zeros((len(yv), len(bundle.class_names)))
    probs[:, model.classes_] = model.predict_proba(xv)
    k = min(5, len(bundle.class_names))
    row = {"epoch": 1, "train_acc": float((model.predict(xt) == yt).mean()), "val_top1": _topk(probs, yv, 1),
           "val_top5": _topk(probs, yv, k), "seconds": time.perf_counter() - started}
    folder.mkdir(parents=True, exist_ok=True)
    write_metrics(folder / "metrics.csv", [row])
    atomic_write_text(folder / "baseline.json", json.dumps({
        "kind": kind, "features": int(xt.shape[1]), "train_images": len(yt), "val_images": len(yv),
        "classes": list(bundle.class_names), "image_size": size, "source": bundle.source,
        "pixels_size": PIXELS_SIZE, "hog": {"orientations": HOG_ORIENTATIONS, "cell": HOG_CELL, "block": HOG_BLOCK},
        "logistic_regression": {"max_iter": LOGREG_MAX_ITER, "C": LOGREG_C, "converged": converged},
    }, indent=1) + "\n")
    return row


def ten_crop_eval(run: Path, folder: Path) -> dict[str, float]:
    """The run's last.pt (the weights of its metrics.csv's last row) on its validation split with 10 crops."""
    import torch

    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = evaluate_checkpoint(run / "checkpoints" / "last.pt", options=EvalOptions(ten_crop=True),
                                 output_dir=folder, device=device).result
    row = {"epoch": 1, "val_loss": result.loss, "val_top1": result.top1, "val_top5": result.top5,
           "seconds": time.perf_counter() - started}
    write_metrics(folder / "metrics.csv", [row])
    return row
