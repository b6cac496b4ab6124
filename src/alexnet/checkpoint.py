"""Checkpoints and the run folder: atomic writes, safe reads, and refusals that name what does not match.

A checkpoint is a dict of tensors and plain Python types only, so it always loads with
`torch.load(weights_only=True)`: nothing in it can run code when it is read, and this module never falls back to
`weights_only=False`. It carries everything needed to rebuild the model without the command line
(`AlexNet(AlexNetConfig(**ckpt["model_args"]))`, nanoGPT style), to preprocess new images the way training did
(class names, mean/std, input size, preset), and to resume the run exactly (optimizer, schedule, scaler, epoch,
position in the epoch, RNG states).

Run folder layout (`RunPaths`):
    config.yaml  metrics.csv  log.txt  curves.png  filters.png  checkpoints/last.pt  checkpoints/best.pt
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet import files
from alexnet.errors import CheckpointError
from alexnet.files import atomic_write  # the writers of checkpoints and exports import it from here

FORMAT = "alexnet-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes each of its files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def filters(self) -> Path:
        return self.root / "filters.png"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"


def find_checkpoint(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint file, or a run folder (or its checkpoints/ folder) -> the file to read.

    `prefer` is "best" for eval/predict (the weights that scored best on validation) and "last" for resume.
    """
    path = Path(path)
    if path.is_dir():
        other = "last" if prefer == "best" else "best"
        for folder in (path / "checkpoints", path):
            for name in (prefer, other):
                candidate = folder / f"{name}.pt"
                if candidate.is_file():
                    return candidate
        raise CheckpointError(f"{path}: no checkpoints/{prefer}.pt or checkpoints/{other}.pt in this folder")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    return path


def run_dir_of(checkpoint_path: Path) -> Path:
    """The run folder a checkpoint belongs to (its checkpoints/ folder's parent), else the file's folder."""
    parent = checkpoint_path.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save through `atomic_write`: a reader or a crash never sees half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Checkpoint temporaries left by a process killed mid-write (SIGKILL cannot be caught)."""
    files.remove_stale_temporaries(folder, name="*.pt")


def load_checkpoint(path: str | Path, prefer: str = "best", check_finite: bool = True) -> dict[str, Any]:
    """Read an alexnet checkpoint with weights_only=True, or raise CheckpointError naming the file and the cause."""
    path = find_checkpoint(path, prefer)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch reports both "a class it will not construct" and "bytes that are not a pickle" this way.
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"{path}: holds Python objects other than tensors and plain types; refusing to unpickle it "
                "(that could run arbitrary code). alexnet checkpoints never need it"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({_first_line(e)})") from None
    except Exception as e:  # torch raises RuntimeError, EOFError, IndexError, BadZipFile... for damaged files
        raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({_first_line(e)})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise CheckpointError(
                f"{path}: a bare state_dict, not an alexnet checkpoint (it records no model, classes or "
                "preprocessing); train with `alexnet train` to get one"
            )
        raise CheckpointError(f"{path}: not an alexnet checkpoint (no '{FORMAT}' marker)")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer alexnet (format {obj['format_version']} > {FORMAT_VERSION}); upgrade alexnet"
        )
    missing = [k for k in ("model", "model_name", "model_args", "class_names", "image_size") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks field {missing[0]!r}")
    if check_finite:
        for name, tensor in obj["model"].items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{path}: weight {name!r} holds NaN or Inf values")
    obj["path"] = str(path)
    return obj


def check_matches(ckpt: dict[str, Any], expected: dict[str, Any], action: str) -> None:
    """Refuse, naming the first differing field, when a checkpoint does not fit what it is used with.

    `expected` maps checkpoint fields (class_names, model_name, image_size, in_channels, model_args...) to the
    values of the run or data at hand.
    """
    for key, want in expected.items():
        have = ckpt.get(key)
        if key == "model_args" and isinstance(have, dict) and isinstance(want, dict):
            for arg in sorted(set(have) | set(want)):
                if have.get(arg) != want.get(arg):
                    raise CheckpointError(
                        f"cannot {action}: model_args.{arg} differs: checkpoint {ckpt.get('path', '')} has "
                        f"{have.get(arg)!r}, this run has {want.get(arg)!r}"
                    )
            continue
        if have != want:
            raise CheckpointError(
                f"cannot {action}: {key} differs: checkpoint {ckpt.get('path', '')} has {_short(have)}, "
                f"this run has {_short(want)}"
            )


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as tensors and plain types (numpy's key array becomes a tensor)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def versions() -> dict[str, str]:
    import torchvision

    from alexnet import __version__

    # str(): torch.__version__ is a TorchVersion object, which a weights_only load refuses.
    return {"alexnet": str(__version__), "torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}


def _to_tuple(x: Any) -> Any:
    # random.setstate wants tuples all the way down; a round trip through some serialisers yields lists.
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu"):
    """Rebuild the model without the command line (`AlexNet(AlexNetConfig(**model_args))`), weights loaded, eval mode."""
    from alexnet.models import AlexNet, AlexNetConfig

    model = AlexNet(AlexNetConfig.from_dict(dict(ckpt["model_args"])))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')}: weights do not fit model_args ({_first_line(e)})") from None
    return model.to(device).eval()
