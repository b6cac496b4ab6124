"""alexnet: train, evaluate, inspect, export and reproduce AlexNet (Krizhevsky, Sutskever and Hinton, 2012).

    from alexnet import build_model, fit, resolve_config, load_checkpoint
    model = build_model("alexnet-bn", num_classes=2)
    result = fit(resolve_config("demo", overrides={"run.epochs": 1}))
    ckpt = load_checkpoint(result.run_dir / "checkpoints" / "best.pt")

Importing the package is cheap on purpose: the names above are looked up on first use (PEP 562), and torch and
torchvision are imported by the modules that need them, so that `alexnet --help` answers at once.

The layout, from the core up (imports run one way, from the commands down):
- core: config (typed run settings, recipes), errors, files (atomic writes), checks (bounds of untrusted values);
- models/ (the AlexNet family, shapes, LRN), store/ (checkpoints, run folders), runtime/ (devices, precision,
  inference back-ends), data/ (sources, caches, transforms);
- training/ (the epoch loop and its parts) and the commands: train (`fit`), evaluate, predict, export, features,
  neighbours; then inspect/, serve/, ablate/, speed/ (`alexnet bench`) and cli/.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any

__version__ = "0.1.0"

# The names a user needs from Python, and the module each lives in.
_EXPORTS = {
    "AlexNet": "alexnet.models",
    "AlexNetConfig": "alexnet.models",
    "build_model": "alexnet.models",
    "list_models": "alexnet.models",
    "Checkpoint": "alexnet.store.checkpoint",
    "load_checkpoint": "alexnet.store.checkpoint",
    "TrainConfig": "alexnet.config",
    "resolve_config": "alexnet.config",
    "fit": "alexnet.train",
    "FitResult": "alexnet.train",
}

__all__ = sorted(_EXPORTS)


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Any, Any]:
    """`__getattr__` and `__dir__` for a package whose names (name -> module) are imported on first use (PEP 562),
    so that importing the package costs nothing until a name is used."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)  # looked up once
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


# Modules that moved in the layout of issue 22 (0.1.0 -> 0.2.0): the old import paths keep working for a release,
# with a DeprecationWarning that names the new one. Each old name is the same module object as the new one.
MOVED_MODULES = {
    "alexnet.amp": "alexnet.runtime.amp",
    "alexnet.precision": "alexnet.runtime.precision",
    "alexnet.inference": "alexnet.runtime.inference",
    "alexnet.onnxrt": "alexnet.runtime.onnxrt",
    "alexnet.runtime_auto": "alexnet.runtime.auto",
    "alexnet.distributed": "alexnet.runtime.distributed",
    "alexnet.checkpoint": "alexnet.store.checkpoint",
    "alexnet.checkpoint_schema": "alexnet.store.schema",
    "alexnet.safeload": "alexnet.store.safeload",
    "alexnet.runfolder": "alexnet.store.runfolder",
    "alexnet.lrn": "alexnet.models.lrn",
    "alexnet.native": "alexnet.models.native",
    "alexnet.summary": "alexnet.models.summary",
    "alexnet.pretrained": "alexnet.models.pretrained",
    "alexnet.plots": "alexnet.inspect.plots",
    "alexnet.report_html": "alexnet.inspect.report",
    "alexnet.validate": "alexnet.checks",
    "alexnet.bench": "alexnet.speed",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import alexnet.pretrained` gives alexnet.models.pretrained itself (not a copy), and warns once."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old name goes in a later release", DeprecationWarning,
                      stacklevel=2)
        module = importlib.import_module(new)
        spec.loader_state = module.__spec__  # the import system overwrites __spec__; exec_module puts it back
        return module

    def exec_module(self, module: Any) -> None:
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
