"""The answers of the five views, as plain dicts: what the routes in api.py return as JSON. Each function runs in a
worker thread with one model replica of its own (LoadedRun.model), so it may take its time without blocking the
event loop, and never sees another request's hooks."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import ConfigError
from alexnet.inspect import pictures
from alexnet.inspect.activations import forward, grid_png, label
from alexnet.inspect.gradcam import cam_on, class_index, default_layer
from alexnet.inspect.loaded import parse_id
from alexnet.inspect.plots import filter_grid
from alexnet.inspect.units import region
from alexnet.neighbours import nearest
from alexnet.serve.state import ServedRun

NEIGHBOURS = 8  # k of the paper's Figure 4 row
CELL_IMAGES = 60  # images listed per confusion cell at most
STUDY_BYTES = 200_000  # a study report larger than this is cut when shown


def image_png(sr: ServedRun, image_id: str) -> bytes:
    return pictures.png_bytes(sr.run.view(sr.input_of(image_id)))


def predict(sr: ServedRun, image_id: str, wait: float, k: int = 5) -> dict[str, Any]:
    """Top-k, Grad-CAM of the top class, every spatial layer's channel grid, and the nearest training images."""
    run = sr.run
    x = sr.input_of(image_id)
    layers = run.spatial_layers()
    with run.model(wait) as model:
        out = forward(model, x, layers)
        probs = out.logits.softmax(dim=1)[0]
        values, indices = probs.topk(min(k, len(probs)))
        top1 = int(indices[0])
        heat = cam_on(model, x, [top1], default_layer(run))[0]
    view = run.view(x)
    answer: dict[str, Any] = {
        "image": image_id,
        "top": [{"index": int(i), "label": run.class_names[int(i)], "prob": float(v)}
                for v, i in zip(values.tolist(), indices.tolist(), strict=True)],
        "gradcam": {"class": top1, "label": run.class_names[top1], "layer": default_layer(run),
                    "png": pictures.data_uri(pictures.png_bytes(pictures.overlay(view, heat)))},
        "activations": [],
        "neighbours": [],
        "true_label": None,
    }
    for name in layers:
        png, layout = grid_png(out.maps[name][0].numpy())
        answer["activations"].append({**label(run, name), "png": pictures.data_uri(png), "grid": layout})
    if not image_id.startswith("upload:"):
        label_index = run.label_of(image_id)
        answer["true_label"] = None if label_index is None else run.class_names[label_index]
    if sr.index is not None and len(sr.index["train_fc7"]):
        rows = sr.index["train_rows"]
        exclude = []
        if image_id.startswith("train:"):
            exclude = [(rows == parse_id(image_id)[1]).nonzero().flatten().tolist()]
        d, ix = nearest(out.fc7, sr.index["train_fc7"], NEIGHBOURS, exclude)
        labels = sr.index["train_labels"]
        answer["neighbours"] = [{"image": f"train:{int(rows[i])}", "label": run.class_names[int(labels[i])],
                                 "distance": float(dist)} for dist, i in zip(d[0].tolist(), ix[0].tolist(), strict=True)]
    return answer


def gradcam_png(sr: ServedRun, image_id: str, target: str, layer: str | None, wait: float) -> bytes:
    run = sr.run
    layer = layer or default_layer(run)
    if layer not in run.spatial_layers():
        raise ConfigError(f"Grad-CAM needs a spatial layer; {layer!r} is not one of {', '.join(run.spatial_layers())}")
    x = sr.input_of(image_id)
    index = class_index(run, target)
    with run.model(wait) as model:
        heat = cam_on(model, x, [index], layer)[0]
    return pictures.png_bytes(pictures.overlay(run.view(x), heat))


def filters_png(sr: ServedRun) -> tuple[bytes, dict[str, Any]]:
    """conv1's filters (the paper's Figure 3), each scaled on its own; the layout lets the page map a click."""
    with sr.run.model(timeout=10.0) as model:
        weight = model.conv1.weight.detach().float().numpy()
    grid = (filter_grid(weight) * 255).round().astype(np.uint8)
    grid = grid[..., 0] if grid.shape[2] == 1 else grid
    scale = pictures.scale_for(*grid.shape[:2], 480)
    o, _, kh, kw = weight.shape
    cols = (grid.shape[1] - 1) // (kw + 1)
    return pictures.png_bytes(grid, scale), {"channels": o, "cols": cols, "cell_h": kh, "cell_w": kw, "pad": 1,
                                             "scale": scale}


def units(sr: ServedRun, layer: str, channel: int) -> dict[str, Any]:
    index = sr.need_index()
    if layer not in index.conv_layers:
        raise ConfigError(f"no conv layer {layer!r}; conv layers: {', '.join(index.conv_layers)}")
    values, rows, yx = index.units(layer)
    if not 0 <= channel < values.shape[0]:
        raise ConfigError(f"{layer} has channels 0..{values.shape[0] - 1}, not {channel}")
    g = sr.run.geometry[layer]
    size = sr.run.image_size
    labels = sr.run.bundle.val.targets
    images = []
    for v, r, (y, x) in zip(values[channel].tolist(), rows[channel].tolist(), yx[channel].tolist(), strict=True):
        images.append({"image": f"val:{r}", "value": v, "label": sr.run.class_names[labels[r]],
                       "box": region(g, y, x, size)})
    return {"layer": layer, "channel": channel, "receptive_field": g.rf, "images": images}


def confusion(sr: ServedRun) -> dict[str, Any]:
    index = sr.need_index()
    matrix = index.confusion()
    total = int(matrix.sum())
    return {"classes": sr.run.class_names, "matrix": matrix.tolist(), "total": total,
            "accuracy": float(np.trace(matrix) / total) if total else 0.0}


def cell(sr: ServedRun, true: int, pred: int) -> dict[str, Any]:
    index = sr.need_index()
    k = len(sr.run.class_names)
    if not (0 <= true < k and 0 <= pred < k):
        raise ConfigError(f"classes are 0..{k - 1}; got true {true}, predicted {pred}")
    probs, labels, rows = index["val_probs"], index["val_labels"], index["val_rows"]
    hit = ((labels == true) & (probs.argmax(dim=1) == pred)).nonzero().flatten()
    images = []
    for i in hit[:CELL_IMAGES].tolist():
        values, top = probs[i].topk(min(3, k))
        images.append({"image": f"val:{int(rows[i])}", "top": [
            {"index": int(c), "label": sr.run.class_names[int(c)], "prob": float(p)}
            for p, c in zip(values.tolist(), top.tolist(), strict=True)]})
    return {"true": sr.run.class_names[true], "predicted": sr.run.class_names[pred], "count": len(hit),
            "images": images}


def embedding_map(sr: ServedRun, method: str) -> dict[str, Any]:
    index = sr.need_index()
    if method not in ("pca", "tsne"):
        raise ConfigError(f"method must be pca or tsne, got {method!r}")
    m = index["map_rows"]
    points = index[f"map_{method}"]
    labels = index["val_labels"][m]
    predicted = index["val_probs"][m].argmax(dim=1)
    return {"method": method, "classes": sr.run.class_names, "points": points.tolist(),
            "images": [f"val:{int(r)}" for r in index["val_rows"][m].tolist()],
            "labels": labels.tolist(), "predicted": predicted.tolist()}


def training(sr: ServedRun) -> dict[str, Any]:
    """metrics.csv, the resolved config (config.yaml), and the reports of any studies found in the run folder."""
    root = sr.run.ckpt.run_dir
    rows: list[dict[str, Any]] = []
    problem = None
    try:
        with open(root / "metrics.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append({k: _number(v) for k, v in row.items() if k})
    except FileNotFoundError:
        problem = "no metrics.csv in the run folder"
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problem = f"metrics.csv unreadable ({e})"
    config_text = _read_text(root / "config.yaml")
    if config_text is None:
        import yaml

        config_text = yaml.safe_dump(sr.run.ckpt.config, sort_keys=False)  # the checkpoint's copy
    return {"metrics": rows, "metrics_problem": problem, "config": config_text, "studies": studies(root)}


def studies(root: Path) -> list[dict[str, str]]:
    """The report.md of every study of this run, at most 20: in folders below the run, and, for a run that an
    `alexnet ablate` folder holds (ABLATE/runs/NAME), the reports of that folder's studies (ABLATE/STUDY/report.md)
    that name the run."""
    found: list[tuple[Path, str]] = []

    def add(path: Path, must_name: str | None = None) -> None:
        if path.is_file() and not path.is_symlink() and path not in [p for p, _ in found]:
            text = _read_text(path, STUDY_BYTES)
            if text is not None and (must_name is None or must_name in text):
                found.append((path, text))

    for pattern in ("studies/*/report.md", "*/report.md"):
        for path in sorted(root.glob(pattern)):
            add(path)
    if root.parent.name == "runs":
        for path in sorted(root.parent.parent.glob("*/report.md")):
            add(path, must_name=root.name)
    return [{"name": _shown_path(p, root), "text": t} for p, t in found[:20]]


def _shown_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path.relative_to(root.parent.parent))


def _read_text(path: Path, limit: int = 1_000_000) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    text = data[:limit].decode("utf-8", errors="replace")
    return text + ("\n... (cut)" if len(data) > limit else "")


def _number(v: Any) -> Any:
    try:
        return float(v) if v not in ("", None) else None
    except ValueError:
        return v


def upload(sr: ServedRun, data: bytes, name: str) -> dict[str, Any]:
    image = sr.run.decode_upload(data, name)
    x = sr.run.to_input(image)
    return {"image": sr.add_upload(x, name), "name": name, "size": [image.width, image.height]}
