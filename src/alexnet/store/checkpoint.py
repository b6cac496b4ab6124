"""The checkpoint record: one typed object, one writer and one reader; no other module reads checkpoint keys.

A checkpoint holds tensors and plain Python types only, so it always loads with `torch.load(weights_only=True)`:
nothing in it can run code when it is read, and this module never falls back to `weights_only=False`. It carries
everything needed to rebuild the model without the command line (`Checkpoint.build_model()`, nanoGPT's
`AlexNet(AlexNetConfig(**model_args))`), to preprocess new images the way training did (`Checkpoint.preprocessing`),
to rebuild its data (`Checkpoint.data_description()`), and to resume the run exactly (`Checkpoint.train_state`,
alexnet.training.state's). The file layout, its versions and the validation of every field are
alexnet.store.schema's; the safe unpickling is alexnet.store.safeload's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet import __version__, files
from alexnet.checks import Fields
from alexnet.errors import CheckpointError, short
from alexnet.files import atomic_write  # the writers of checkpoints and exports import it from here
from alexnet.models import build_from_config
from alexnet.store import schema
from alexnet.store.safeload import first_line, read_torch_file
from alexnet.store.schema import FORMAT, FORMAT_VERSION

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "Preprocessing", "atomic_save", "atomic_write",
           "find_checkpoint", "checkpoint_if_any", "load_checkpoint", "plain", "run_dir_of", "save_checkpoint"]


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: what eval, predict and export apply to new images."""

    image_size: int  # side of the square input
    in_channels: int  # 1 (grayscale) or 3 (RGB)
    preset: str  # the transform preset (config.PRESETS)
    mean: tuple[float, ...]  # per channel, after scaling to [0, 1]
    std: tuple[float, ...]


@dataclass
class Checkpoint:
    """What a training run saves (checkpoints/last.pt and best.pt) and every reader gets back, validated."""

    model_name: str  # the variant (models.list_models())
    model_args: dict[str, Any]  # every field of the model's config (AlexNetConfig or CudaConvnetConfig)
    weights: dict[str, torch.Tensor]  # the model's state_dict
    class_names: list[str]  # one per output, in output order
    preprocessing: Preprocessing
    data: dict[str, Any]  # how to rebuild the data (source, kind, split, seed, ...), less the fields above
    config: dict[str, Any]  # the run's TrainConfig.to_dict()
    train_state: dict[str, Any]  # alexnet.training.state.TrainState.state_dict(): what resume restores
    versions: dict[str, str] = field(default_factory=dict)  # alexnet, torch, torchvision that wrote it
    path: str = ""  # where it was read from ("" until saved or loaded)

    def to_dict(self) -> dict[str, Any]:
        """The file's layout (format 2, checkpoint_schema): the one writer."""
        p = self.preprocessing
        data = {k: v for k, v in self.data.items() if k not in schema.V1_DATA_COPIES}
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "model": self.weights, "model_name": self.model_name, "model_args": self.model_args,
            "class_names": list(self.class_names),
            "image_size": p.image_size, "in_channels": p.in_channels, "preset": p.preset,
            "mean": list(p.mean), "std": list(p.std),
            "data": data, "config": self.config, "train_state": self.train_state, "versions": self.versions,
        }

    @classmethod
    def from_dict(cls, obj: Any, where: str = "checkpoint", check_finite: bool = True) -> Checkpoint:
        """The one reader: any format this release knows, upgraded to the current one and validated field by field."""
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise CheckpointError(
                    f"{where}: a bare state_dict, not an alexnet checkpoint (it records no model, classes or "
                    "preprocessing); train with `alexnet train` to get one"
                )
            raise CheckpointError(f"{where}: not an alexnet checkpoint (no '{FORMAT}' marker)")
        version = Fields(CheckpointError, where).integer(obj.get("format_version", 0), "format_version", 0, 1 << 31)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: written by a newer alexnet (format {version} > {FORMAT_VERSION}); upgrade alexnet"
            )
        obj = schema.upgrade(obj, version, where)
        schema.validate(obj, where, check_finite=check_finite)
        return cls(
            model_name=obj["model_name"], model_args=dict(obj["model_args"]), weights=obj["model"],
            class_names=list(obj["class_names"]),
            preprocessing=Preprocessing(int(obj["image_size"]), int(obj["in_channels"]), obj["preset"],
                                        tuple(float(v) for v in obj["mean"]), tuple(float(v) for v in obj["std"])),
            data=dict(obj["data"]), config=obj["config"], train_state=obj["train_state"],
            versions=dict(obj.get("versions") or {}), path=where,
        )

    def recorded_tta(self) -> str:
        """The test-time augmentation the run validated with (its config's data.tta; none before it existed), which
        eval and predict take as their default. The config was checked on load: `get` only covers older runs."""
        return ((self.config or {}).get("data") or {}).get("tta", "none")

    def data_description(self) -> dict[str, Any]:
        """Everything `alexnet.data.build_from_description` needs to rebuild this checkpoint's data and split."""
        p = self.preprocessing
        return {**self.data, "image_size": p.image_size, "in_channels": p.in_channels, "preset": p.preset,
                "class_names": list(self.class_names), "mean": list(p.mean), "std": list(p.std)}

    @property
    def run_dir(self) -> Path:
        return run_dir_of(Path(self.path))

    def build_model(self, device: torch.device | str = "cpu"):
        """The model without the command line (`build_from_config(model_args)`), weights loaded, eval mode."""
        model = build_from_config(dict(self.model_args))
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as e:
            raise CheckpointError(f"{self.path or 'checkpoint'}: weights do not fit model_args ({first_line(e)})") from None
        return model.to(device).eval()

    def check_matches(self, expected: dict[str, Any], action: str) -> None:
        """Refuse, naming the first differing field, when the checkpoint does not fit what it is used with.

        `expected` maps fields (model_name, class_names, model_args, image_size, in_channels, preset) to the values
        of the run or data at hand."""
        for key, want in expected.items():
            have = getattr(self.preprocessing, key) if key in schema.PREPROCESSING_FIELDS else getattr(self, key)
            if key == "model_args" and isinstance(want, dict):
                for arg in sorted(set(have) | set(want)):
                    if have.get(arg) != want.get(arg):
                        raise CheckpointError(
                            f"cannot {action}: model_args.{arg} differs: checkpoint {self.path} has "
                            f"{short(have.get(arg))}, this run has {short(want.get(arg))}"
                        )
                continue
            if have != want:
                raise CheckpointError(
                    f"cannot {action}: {key} differs: checkpoint {self.path} has {short(have)}, this run has "
                    f"{short(want)}"
                )


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


def load_checkpoint(path: str | Path, prefer: str = "best", check_finite: bool = True) -> Checkpoint:
    """Read an alexnet checkpoint (a file or a run folder) with weights_only=True, validated, or raise
    CheckpointError naming the file and the cause: the file is untrusted input."""
    path = find_checkpoint(path, prefer)
    return Checkpoint.from_dict(read_torch_file(path), str(path), check_finite=check_finite)


def checkpoint_if_any(path: str | Path) -> Checkpoint | None:
    """The validated record when the file is an alexnet checkpoint (by its format marker), else None (a bare
    state_dict, say): one read either way."""
    obj = read_torch_file(Path(path))
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return Checkpoint.from_dict(obj, str(path))
    return None


def save_checkpoint(record: Checkpoint, path: str | Path) -> None:
    atomic_save(record.to_dict(), path)


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """torch.save through `atomic_write`: a reader or a crash never sees half a checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Checkpoint temporaries left by a process killed mid-write (SIGKILL cannot be caught)."""
    files.remove_stale_temporaries(folder, name="*.pt")


def versions() -> dict[str, str]:
    import torchvision

    # str(): torch.__version__ is a TorchVersion object, which a weights_only load refuses.
    return {"alexnet": str(__version__), "torch": str(torch.__version__), "torchvision": str(torchvision.__version__)}


def plain(value: Any) -> Any:
    """Nested dicts/lists of str, int, float, bool, None: what a weights_only checkpoint may hold."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)
