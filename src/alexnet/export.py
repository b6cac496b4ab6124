"""Export a trained checkpoint: a Hub-style folder (safetensors + config.json), ONNX checked against ONNX Runtime,
an int8 ONNX checked for top-1 agreement on the validation split, and a torch.export program.

Every format takes what the model takes: a float batch (B, C, S, S) already normalised with the mean and std that
config.json records (the preprocessing is data, not part of the graph, as in torchvision and timm).

An export is a set: `export_checkpoint` writes every file into a private temporary folder beside the target,
verifies each one there (the Hub folder reloads to identical logits, ONNX Runtime within onnxrt.ONNX_TOLERANCE,
the torch.export program within PROGRAM_TOLERANCE), and only then puts the folder in place with one rename (an atomic
exchange with the old folder under --force, where the OS has one). --force replaces only the files of the formats
asked: every other entry of the old folder (the other formats, a user's own notes) is hard-linked into the
temporary folder before the exchange, so it comes through byte-identical, and the folder still changes in one
step. A failed check or a crash leaves the old export exactly as it was, every file of it: never a
model.safetensors of one checkpoint beside the config.json of another, never a format lost.

The ONNX pieces (export with its ONNX Runtime check, int8 quantization and its parity check) live in alexnet.runtime.onnxrt,
which imports nothing from here; this module adds the Hub folder, the torch.export program and the set's writing.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import torch

from alexnet.errors import AlexNetError, CheckpointError
from alexnet.files import FileWriteError, atomic_write, current_umask, describe_os_error, fsync_dir
from alexnet.models import AlexNet, build_from_config
from alexnet.runtime.onnxrt import INT8_FILE, MAX_BATCH, ONNX_FILE, ExportError, example_input, export_int8, export_onnx
from alexnet.store.checkpoint import Checkpoint, load_checkpoint

HUB_WEIGHTS, HUB_CONFIG = "model.safetensors", "config.json"
PROGRAM_FILE = "model.pt2"
# torch.export runs the same kernels as eager PyTorch; only fusions may reorder float sums (max |logit difference|).
PROGRAM_TOLERANCE = 1e-4


def preprocessing(ckpt: Checkpoint) -> dict[str, Any]:
    """What a user must do to an image before the exported model sees it."""
    p = ckpt.preprocessing
    return {"image_size": p.image_size, "in_channels": p.in_channels, "preset": p.preset, "mean": list(p.mean),
            "std": list(p.std)}


def export_hub(model: AlexNet, ckpt: Checkpoint, folder: Path) -> list[Path]:
    """model.safetensors (the state_dict, no pickle) + config.json (model_args, class names, preprocessing)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / HUB_WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    config = {
        "architecture": "AlexNet",
        "model_name": ckpt.model_name,
        "model_args": dict(ckpt.model_args),
        "class_names": list(ckpt.class_names),
        "preprocessing": preprocessing(ckpt),
        "paper": "Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural Networks. 2012",
    }
    atomic_write(folder / HUB_CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return [folder / HUB_WEIGHTS, folder / HUB_CONFIG]


def load_hub(folder: str | Path) -> tuple[AlexNet, dict[str, Any]]:
    """The model and config.json of a folder written by `export_hub`, in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        config = json.loads((folder / HUB_CONFIG).read_text())
        state = load_file(folder / HUB_WEIGHTS)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: not an exported alexnet folder ({e})") from None
    model = build_from_config(config["model_args"])
    model.load_state_dict(state)
    return model.eval(), config


def export_program(model: AlexNet, path: Path) -> dict[str, Any]:
    """A torch.export ExportedProgram (load with torch.export.load(path).module())."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.export.export(model, (example_input(model),), dynamic_shapes=({0: batch},))
    atomic_write(path, lambda tmp: torch.export.save(program, tmp), suffix=path.suffix)
    check = example_input(model, batch=3, seed=1)
    with torch.inference_mode():
        diff = float((torch.export.load(str(path)).module()(check) - model(check)).abs().max())
    if not diff <= PROGRAM_TOLERANCE:
        raise ExportError(f"{path}: the torch.export program's logits differ from PyTorch's by {diff:.3g} "
                          f"(> {PROGRAM_TOLERANCE})")
    return {"path": str(path), "max_abs_diff": diff}


def export_checkpoint(checkpoint: str | Path, output_dir: str | Path | None, formats: list[str],
                      force: bool = False) -> dict[str, Any]:
    """Write the chosen formats of a checkpoint (a .pt file or a run folder) into output_dir (default: the run's
    `export/` folder) as one verified set; returns what was written and how closely each reproduces the model.

    A folder that already holds files is refused unless `force`, which replaces the files of `formats` and keeps
    every other file as it was (listed under "kept")."""
    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model()
    folder = Path(output_dir) if output_dir else ckpt.run_dir / "export"
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder}: exists and is not a folder; choose another --output-dir")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ExportError(f"{folder}: already holds files (an earlier export?); pass --force to replace the files "
                          "of the formats asked (the others are kept), or choose another --output-dir")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    except OSError as e:
        raise FileWriteError(describe_os_error(e, folder.parent)) from None
    try:
        report = _export_into(staging, model, ckpt, formats)
        kept = _keep_the_others(folder, staging)
        # mkdtemp made it private: the export is an ordinary folder, or keeps the mode the old one had
        os.chmod(staging, stat.S_IMODE(folder.stat().st_mode) if kept is not None else 0o777 & ~current_umask())
        _put_in_place(staging, folder)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, folder)) from None
    except AlexNetError as e:  # a failed check: name the final path, and say that nothing changed
        message = str(e).replace(str(staging), str(folder))
        raise type(e)(f"{message}; nothing was exported ({folder} is as it was)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the failed set, or the old folder after an exchange
    report = _relocate(report, str(staging), str(folder))
    report["checkpoint"], report["output_dir"], report["kept"] = ckpt.path, str(folder), kept or []
    return report


def _keep_the_others(folder: Path, staging: Path) -> list[str] | None:
    """Every entry of the old `folder` that the new set does not replace, hard-linked (copied where links fail) into
    `staging`: the exchange then carries it over unchanged. Returns their names, or None when there is no old folder.

    Done after the new files are verified and before anything is renamed, so a failure here still changes nothing."""
    if not folder.is_dir():
        return None
    kept = []
    for entry in sorted(folder.iterdir()):
        target = staging / entry.name
        if os.path.lexists(target):  # written by this export: the new file replaces the old one
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)
        kept.append(entry.name)
    return kept


def _link_or_copy(source: str | Path, target: str | Path) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # a file system without hard links (or across devices): a copy, metadata included
        shutil.copy2(source, target, follow_symlinks=False)


def _export_into(folder: Path, model: AlexNet, ckpt: Checkpoint, formats: list[str]) -> dict[str, Any]:
    """Every chosen format written into `folder` and verified there; raises ExportError at the first mismatch."""
    report: dict[str, Any] = {}
    if "hub" in formats:
        report["hub"] = {"files": [str(p) for p in export_hub(model, ckpt, folder)]}
        reloaded, _ = load_hub(folder)
        x = example_input(model)
        with torch.inference_mode():
            diff = float((reloaded(x) - model(x)).abs().max())
        if diff != 0.0:  # the same weights and the same code: anything but identical logits is a broken file
            raise ExportError(f"{folder / HUB_WEIGHTS}: the reloaded Hub folder's logits differ by {diff:.3g}")
        report["hub"]["max_abs_diff"] = diff
    if "onnx" in formats or "onnx-int8" in formats:
        report["onnx"] = export_onnx(model, folder / ONNX_FILE)
    if "onnx-int8" in formats:
        report["onnx_int8"] = export_int8(model, ckpt, folder / ONNX_FILE, folder / INT8_FILE)
    if "torch-export" in formats:
        report["torch_export"] = export_program(model, folder / PROGRAM_FILE)
    return report


def _put_in_place(staging: Path, folder: Path) -> None:
    """`staging` becomes `folder`; an old `folder` ends up at `staging` (removed by the caller)."""
    if not folder.exists():
        os.replace(staging, folder)
    elif not _exchange(staging, folder):
        # No atomic exchange here: move the old folder aside first. A crash between the two renames leaves no
        # `folder` but both sets whole under hidden names, never a mixture.
        aside = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old.", suffix=".tmp"))
        os.replace(folder, aside)
        os.replace(staging, folder)
        shutil.rmtree(aside, ignore_errors=True)
    fsync_dir(folder.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the OS or file system has none."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _relocate(value: Any, old: str, new: str) -> Any:
    """The report's paths, from the temporary folder to the final one."""
    if isinstance(value, dict):
        return {k: _relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_relocate(v, old, new) for v in value]
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old):]
    return value

