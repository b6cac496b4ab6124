"""Reproducibility: every random draw of a run is seeded by its position alone, and the generators' states travel
in checkpoints.

Nothing random depends on history: the epoch's order is a permutation drawn from a generator seeded by
(seed, epoch); the augmentation and the dropout masks of a step come from generators seeded by
(seed, epoch, step, rank). A resumed run therefore draws exactly what the uninterrupted run drew, and on CPU with
`--deterministic` it ends with bitwise-equal weights. (RNG states are saved and restored too, for anything else that
draws from the global generators.)
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alexnet.errors import ConfigError
from alexnet.runtime.amp import autocast

PURPOSE_ORDER, PURPOSE_AUGMENT, PURPOSE_DROPOUT = 1, 2, 3  # independent streams of one (seed, epoch, step, rank)
CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS's requirement for deterministic results


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, step, rank, purpose): independent streams, no shared state."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training set in `epoch`: the same on every rank and in every resumed process."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, PURPOSE_ORDER))
    return torch.randperm(n, generator=g)


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
    random.setstate(as_tuple(state["python"]))
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


def as_tuple(x: Any) -> Any:
    # random.setstate wants tuples all the way down; a round trip through some serialisers yields lists.
    return tuple(as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def set_determinism(on: bool, device: torch.device) -> None:
    """--deterministic: deterministic kernels only (an error names any op that has none), no cuDNN autotuning.

    fit() sets CUBLAS_WORKSPACE_CONFIG before CUDA is first used; this repeats it for other callers."""
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    if on or torch.are_deterministic_algorithms_enabled():  # the call costs ~1 s (an import) even when it changes nothing
        torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on


def check_deterministic_backward(model: torch.nn.Module, device: torch.device, image_size: int, in_channels: int,
                                 amp_dtype: torch.dtype | None = None,
                                 memory_format: torch.memory_format = torch.contiguous_format,
                                 name: str = "this model") -> None:
    """--deterministic: one forward and backward of a copy of the model on a blank batch, so that a layer with no
    deterministic kernel on this device is refused up front, by name, instead of as a traceback at the first step
    (on CUDA, e.g. AdaptiveAvgPool2d's backward). Global RNG states are left as they were."""
    import copy

    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        probe = copy.deepcopy(model).train()
        x = torch.zeros(2, in_channels, image_size, image_size, device=device).contiguous(memory_format=memory_format)
        try:
            with autocast(device.type, amp_dtype):
                logits = probe(x)
            F.cross_entropy(logits.float(), torch.zeros(2, dtype=torch.long, device=device)).backward()
        except RuntimeError as e:
            text = str(e)
            marker = " does not have a deterministic implementation"
            if marker not in text:
                raise
            op = text.split(marker)[0].split()[-1] if text.split(marker)[0].split() else "an operation"
            raise ConfigError(
                f"field 'run.deterministic' (--deterministic): {name} uses {op}, which has no deterministic kernel "
                f"on {device.type}; train it without --deterministic, or choose a variant without that layer") from None

