"""Feature vectors: one per image, from any named layer of a trained checkpoint (`alexnet features`).

The paper's section 6.1 reads the last hidden layer (fc7, 4096 numbers) as an image descriptor: images whose
vectors are close are close to the network (`alexnet.neighbours`, the paper's Figure 4). Any layer of
`AlexNet.named_layers()` can be read; a spatial map (conv, pool, ...) is averaged over its positions, one value per
channel. Images are preprocessed with the checkpoint's own eval transform, decoded by the data layer's one decoder;
an unreadable image is skipped and listed with the reason, never a traceback.

    from alexnet.features import extract
    vectors, files = extract("runs/cats", ["photos/"], "fc7")  # (N, 4096) float32, the N files kept, in order

The layer's output is caught by a forward hook that stops the pass right there: nothing after the layer runs (so a
later in-place ReLU cannot change it, and conv1 features cost one convolution).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alexnet.config import FEATURE_FORMATS
from alexnet.data import build_transform, load_image
from alexnet.data.folders import scan_folder
from alexnet.errors import AlexNetError, ConfigError, DataError
from alexnet.files import atomic_write, atomic_write_text
from alexnet.predict import expand_inputs
from alexnet.store.checkpoint import Checkpoint, load_checkpoint

DEFAULT_LAYER = None  # the model's `feature_name`: the last hidden layer (fc7, 4096 numbers, in the paper's AlexNet)
TENSOR_NAME = "features"  # the one tensor of a features .safetensors file


@dataclass
class FeatureSet:
    """Vectors of the images that could be read, in input order, and what was left out."""

    vectors: torch.Tensor  # (N, D) float32 on the CPU
    files: list[str]  # the N files, row i is files[i]
    labels: list[str | None]  # class name of each file when the data has classes, else None
    layer: str
    checkpoint: str  # the checkpoint file the model came from
    class_names: list[str] | None = None  # the data's classes (None: files, globs or a flat folder)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): not read, not in `vectors`

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "layer": self.layer,
            "shape": list(self.vectors.shape),
            "files": list(self.files),
            "labels": list(self.labels),
            "class_names": self.class_names,
            "skipped": [{"file": f, "error": e} for f, e in self.skipped],
        }


def layer_names(model: torch.nn.Module) -> list[str]:
    return [name for name, _ in model.named_layers()]


class _Stop(Exception):
    """Raised by the hook once the layer's output is caught: the rest of the forward pass is not needed."""


@torch.inference_mode()
def layer_output(model: torch.nn.Module, layer: str, images: torch.Tensor) -> torch.Tensor:
    """images (B, C, S, S), normalised -> (B, D) float32: the layer's output, a spatial map averaged to (B, channels).

    `model` must be in eval mode (dropout off, BatchNorm on its running statistics)."""
    modules = dict(model.named_layers())
    if layer not in modules:
        raise ConfigError(f"no layer {layer!r} in {model.config.name}; layers: {', '.join(modules)}")
    caught: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        caught.append(output)
        raise _Stop

    handle = modules[layer].register_forward_hook(hook)
    try:
        model(images)
    except _Stop:
        pass
    finally:
        handle.remove()
    out = caught[0].float()
    if out.dim() == 4:
        out = out.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C): global average pooling
    return out.flatten(1).clone()  # (B, D); a copy, since a later in-place op would otherwise share it


def resolve_images(items: Sequence[str]) -> tuple[list[tuple[str, str | None]], list[str] | None, list[tuple[str, str]]]:
    """DATA -> ([(file, class name or None)], class names or None, [(input, problem)]).

    One folder with class folders (ImageFolder's layout, or train/ + val/ with class folders inside): every image
    of every split, labelled with its class. Anything else (image files, globs, a flat folder, several inputs):
    the images they name, as `alexnet predict` expands them, without labels."""
    if len(items) == 1 and os.path.isdir(items[0]) and _has_subfolders(items[0]):
        scan = scan_folder(items[0], val_split=0.0, verify=False)  # contents are checked when each file is decoded
        if "classes" in scan.layout:
            samples = sorted(scan.train + scan.val)
            return ([(path, scan.class_names[label]) for path, label in samples], list(scan.class_names),
                    list(scan.skipped))
    entries, problems = [], []
    for path, error in expand_inputs(items):
        if error is None:
            entries.append((path, None))
        else:
            problems.append((path, error))
    return entries, None, problems


def _has_subfolders(folder: str) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(not e.name.startswith(".") and e.is_dir() for e in it)
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror or e})") from None


def as_checkpoint(checkpoint: Checkpoint | str | os.PathLike) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, prefer="best")


def extract_features(
    checkpoint: Checkpoint | str | os.PathLike,
    items: Sequence[str],
    layer: str | None = DEFAULT_LAYER,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> FeatureSet:
    """The `layer` vector (None: the model's last hidden layer) of every image named by `items` (see
    `resolve_images`), with the checkpoint's eval transform. Raises DataError when no image at all could be read."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    ckpt = as_checkpoint(checkpoint)
    device = torch.device(device)
    model = ckpt.build_model(device).eval()
    layer = layer or model.feature_name
    names = layer_names(model)
    if layer not in names:
        raise ConfigError(f"{ckpt.path}: no layer {layer!r} in {ckpt.model_name}; layers: {', '.join(names)}")
    entries, class_names, skipped = resolve_images(list(items))
    p = ckpt.preprocessing
    transform = build_transform(p.preset, p.image_size, False, p.mean, p.std, p.in_channels)
    rows: list[torch.Tensor] = []
    files: list[str] = []
    labels: list[str | None] = []
    bar = _progress(len(entries), progress)
    try:
        for start in range(0, len(entries), batch_size):
            tensors = []
            for path, label in entries[start : start + batch_size]:
                try:
                    tensors.append(transform(load_image(path, p.in_channels)))  # (C, S, S)
                except AlexNetError as e:
                    skipped.append((path, str(e).removeprefix(f"{path}: ")))
                    continue
                except OSError as e:
                    skipped.append((path, f"cannot read ({e.strerror or e})"))
                    continue
                files.append(path)
                labels.append(label)
            if tensors:
                rows.append(layer_output(model, layer, torch.stack(tensors).to(device)).cpu())
            bar.update(len(entries[start : start + batch_size]))
    finally:
        bar.close()
    if not rows:
        first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise DataError(f"{', '.join(map(str, items))}: no readable images{first}")
    return FeatureSet(torch.cat(rows), files, labels, layer, str(ckpt.path), class_names, skipped)


def extract(checkpoint: Checkpoint | str | os.PathLike, images: Sequence[str], layer: str | None = DEFAULT_LAYER,
            **kwargs: Any) -> tuple[torch.Tensor, list[str]]:
    """(vectors (N, D), the N files read): `extract_features` for callers that need only the two."""
    fs = extract_features(checkpoint, images, layer, **kwargs)
    return fs.vectors, fs.files


def _progress(total: int, wanted: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
                disable=not wanted)  # the command line asks for it only on a terminal, or when --progress says so


def output_paths(output: str | os.PathLike | None, fmt: str | None) -> tuple[Path, Path, str]:
    """(vectors file, JSON beside it, format) from --output and --format: the format follows the file's suffix
    when not given; default `features.safetensors` in the current folder."""
    if fmt is not None and fmt not in FEATURE_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FEATURE_FORMATS)}, got {fmt!r}")
    if output is None:
        fmt = fmt or "safetensors"
        path = Path(f"features.{fmt}")
    else:
        path = Path(output)
        by_suffix = path.suffix.lstrip(".").lower()
        if fmt is None:
            fmt = by_suffix if by_suffix in FEATURE_FORMATS else "safetensors"
        elif by_suffix in FEATURE_FORMATS and by_suffix != fmt:
            raise ConfigError(f"{path}: the name says {by_suffix} but --format is {fmt}")
    json_path = path.with_suffix(".json")
    if json_path == path:
        raise ConfigError(f"{path}: the features file cannot be the JSON file written beside it")
    return path, json_path, fmt


def save_features(fs: FeatureSet, output: str | os.PathLike | None = None, fmt: str | None = None) -> tuple[Path, Path]:
    """Writes the vectors (safetensors: one tensor named "features"; or .npy) and the JSON beside it."""
    import json

    import numpy as np

    path, json_path, fmt = output_paths(output, fmt)
    vectors = fs.vectors.contiguous()
    if fmt == "safetensors":
        from safetensors.torch import save_file

        metadata = {"layer": fs.layer, "checkpoint": fs.checkpoint}
        atomic_write(path, lambda tmp: save_file({TENSOR_NAME: vectors}, tmp, metadata=metadata))
    else:
        def write_npy(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a temporary's name
                np.save(f, vectors.numpy())

        atomic_write(path, write_npy)
    doc = {"features_file": path.name, "format": fmt, **fs.to_json()}
    atomic_write_text(json_path, json.dumps(doc, indent=2) + "\n")
    return path, json_path


def load_features(path: str | os.PathLike) -> torch.Tensor:
    """The (N, D) tensor of a file `save_features` wrote (either format)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        import numpy as np

        return torch.from_numpy(np.load(path, allow_pickle=False))
    from safetensors.torch import load_file

    return load_file(path)[TENSOR_NAME]
