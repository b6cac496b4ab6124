"""What the server holds per run: the opened run, its index, and the uploads it was sent (in memory only)."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from alexnet.inspect.activations import label
from alexnet.inspect.loaded import UPLOAD_PATTERN, LoadedRun, UnknownImage

MAX_UPLOADS = 64  # per run; the oldest is forgotten first (each is kept as the model's input only)


@dataclass
class ServedRun:
    id: str
    run: LoadedRun
    index: Any | None  # alexnet.inspect.index.InspectIndex
    index_problem: str | None
    uploads: OrderedDict[str, tuple[torch.Tensor, str]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_upload(self, x: torch.Tensor, name: str) -> str:
        image_id = f"upload:{secrets.token_hex(16)}"
        with self._lock:
            self.uploads[image_id] = (x, name)
            while len(self.uploads) > MAX_UPLOADS:
                self.uploads.popitem(last=False)
        return image_id

    def input_of(self, image_id: str) -> torch.Tensor:
        """(1, C, S, S) for any id this run knows; UnknownImage otherwise."""
        if isinstance(image_id, str) and UPLOAD_PATTERN.match(image_id):
            with self._lock:
                if image_id not in self.uploads:
                    raise UnknownImage(f"{image_id}: no such upload (uploads are kept in memory, {MAX_UPLOADS} at most)")
                self.uploads.move_to_end(image_id)
                return self.uploads[image_id][0]
        return self.run.to_input(self.run.dataset_image(image_id))

    def need_index(self):
        if self.index is None:
            raise UnknownImage(f"this view needs the run's data and index: {self.index_problem}")
        return self.index

    def describe(self) -> dict[str, Any]:
        run = self.run
        return {
            "id": self.id, "name": run.name, "checkpoint": str(run.checkpoint_path), "model": run.ckpt.model_name,
            "classes": run.class_names, "image_size": run.image_size,
            "layers": [label(run, name) for name in run.spatial_layers()], "conv_layers": run.conv_layers(),
            "has_data": run.bundle is not None, "data_problem": run.data_problem,
            "num_val": len(run.bundle.val) if run.bundle is not None else 0,
            "num_train": len(run.bundle.train) if run.bundle is not None else 0,
            "has_index": self.index is not None, "index_problem": self.index_problem,
        }
