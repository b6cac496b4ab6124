"""Prediction: image files, folders or globs -> top-k labels with probabilities, using the checkpoint's preprocessing.

Each file is decoded by the data layer's robust loader and transformed exactly as validation images were during
training (preset, input size, mean/std and channel count all come from the checkpoint). A file that cannot be read
gets an error entry and does not stop the others.
"""

from __future__ import annotations

import csv
import errno
import fnmatch
import functools
import glob
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from alexnet.data import build_transform, load_image
from alexnet.data.images import IMAGE_EXTENSIONS
from alexnet.errors import AlexNetError
from alexnet.runtime.inference import InferenceOptions, Predictor
from alexnet.runtime.onnxrt import calibration_batches

if TYPE_CHECKING:  # the record is only annotated here: this module reads no checkpoint file itself
    from alexnet.store.checkpoint import Checkpoint

BATCH = 32  # images per forward pass
MAX_DEPTH = 64  # folders below an input searched at most this deep (a runaway tree, or a path near PATH_MAX)


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
    """FILE, DIR (all images below it, hidden entries skipped) or GLOB -> [(path, error or None)], in order.

    Bounded whatever the tree holds: each real file appears once (by device and inode, so a file reached through
    two links or named twice is predicted once), a folder is entered once (a symlink loop is not followed around),
    and folders more than MAX_DEPTH levels below the input are not searched, said in an error entry. Entries that
    vanish or cannot be listed while the tree is walked get an error entry instead of stopping the command.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[tuple[int, int]] = set()

    def add(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as e:
            out.append((path, _os_reason(e)))
            return
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            out.append((path, None))

    for item in items:
        if os.path.isdir(item):
            files, problems = _walk(item, lambda rel: _is_image_name(rel[-1]) and not any(p.startswith(".") for p in rel))
            for path in sorted(files):
                add(path)
            out += problems
            if not files and not problems:
                out.append((item, "folder holds no image files"))
        elif os.path.exists(item):
            add(item)
        elif glob.has_magic(item):
            matches, problems = _glob(item)
            for path in matches:
                add(path)
            out += problems
            if not matches and not problems:
                out.append((item, "pattern matches no files"))
        else:
            out.append((item, "no such file"))
    return out


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _os_reason(e: OSError) -> str:
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return "vanished while the inputs were listed"
    return f"cannot read ({e.strerror or e})"


def _walk(root: str, want: Callable[[tuple[str, ...]], bool],
          enter: Callable[[tuple[str, ...]], bool] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Files below `root` whose path parts relative to it satisfy `want`: (paths, [(path, problem)]).

    Iterative (no recursion limit), following symlinked folders but entering each real folder once, at most
    MAX_DEPTH levels deep. `enter(rel)` may prune folders (default: hidden folders are not entered)."""
    enter = enter or (lambda rel: not rel[-1].startswith("."))
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    visited: set[tuple[int, int]] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, rel = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in visited:
                continue  # a symlink loop, or a second link to a folder already searched
            visited.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)  # popped in name order
        except OSError as e:
            problems.append((folder, _os_reason(e) if e.errno in (errno.ENOENT, errno.ENOTDIR)
                             else f"cannot list the folder ({e.strerror or e})"))
            continue
        for entry in entries:
            sub = (*rel, entry.name)
            try:
                is_dir = entry.is_dir()  # follows symlinks
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue  # vanished between listing and looking: nothing to predict
            if is_dir and enter(sub):
                if len(sub) > MAX_DEPTH:
                    problems.append((entry.path, f"folder more than {MAX_DEPTH} levels below {root}, not searched"))
                else:
                    stack.append((entry.path, sub))
            elif is_file and want(sub):
                files.append(entry.path)
    return files, problems


def _glob(pattern: str) -> tuple[list[str], list[tuple[str, str]]]:
    """glob.glob(pattern, recursive=True), but a `**` walks the bounded `_walk` instead of following loops forever."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        # Every component matches one level: finite whatever the links; glob's own rules (hidden files) apply.
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p)), []
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    base_parts, rest = parts[:first], tuple(parts[first:])
    base = os.sep.join(base_parts) or ("." if not pattern.startswith(os.sep) else os.sep)
    if base_parts == [""]:
        base = os.sep  # an absolute pattern whose first component is already a wildcard
    if not os.path.isdir(base):
        return [], []
    files, problems = _walk(base, lambda rel: _glob_match(rest, rel), enter=lambda rel: True)
    if not base_parts:  # a relative pattern such as **/*.jpg: paths as glob gives them, without "./"
        files = [os.path.relpath(p, ".") for p in files]
    return sorted(files), problems


def _glob_match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """glob's component rules: `**` is any number of folders (not hidden ones), `*` never matches a leading dot."""
    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(parts)
        if pattern[i] == "**":
            if match(i + 1, j):
                return True
            return j < len(parts) and not parts[j].startswith(".") and match(i, j + 1)
        if j == len(parts):
            return False
        name, pat = parts[j], pattern[i]
        if name.startswith(".") and not pat.startswith("."):
            return False
        return fnmatch.fnmatchcase(name, pat) and match(i + 1, j + 1)

    return match(0, 0)


def predict_files(ckpt: Checkpoint, items: Sequence[str], *, top_k: int = 5,
                  device: torch.device | str = "cpu", inference: InferenceOptions | None = None,
                  tta: str | None = None) -> list[Prediction]:
    """Top-k predictions for every file named by `items` (files, folders, globs). `tta`: none, or flip (each image's
    probabilities averaged with its mirror's); None: what the checkpoint's run validated with (`Checkpoint.recorded_tta`)."""
    tta = ckpt.recorded_tta() if tta is None else tta
    device = torch.device(device)
    predictor = Predictor(ckpt.build_model(device), device, inference,
                          calibration=lambda: calibration_batches(ckpt))
    class_names, p = list(ckpt.class_names), ckpt.preprocessing
    in_channels = p.in_channels
    transform = build_transform(p.preset, p.image_size, False, p.mean, p.std, in_channels)
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
        batch = torch.stack(tensors)
        probs = predictor(batch).softmax(dim=1)  # (B, num_classes)
        if tta == "flip":
            probs = (probs + predictor(batch.flip(-1)).softmax(dim=1)) / 2
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


