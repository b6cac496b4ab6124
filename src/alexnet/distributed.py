"""torchrun / DDP helpers: who am I, which device, and the few collectives the trainer needs.

`torchrun --standalone --nproc-per-node N -m alexnet train ...` sets RANK, WORLD_SIZE and LOCAL_RANK in each
worker's environment; without them the run is a plain single process and every helper here is a no-op. The
backend follows the device: nccl for CUDA, gloo for CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from alexnet.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # global rank: 0 .. world_size - 1
    world_size: int = 1
    local_rank: int = 0  # rank on this machine: picks the GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, writes logs, plots and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_info() -> DistInfo:
    """Read torchrun's environment variables (absent: one process)."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )
    except ValueError as e:
        raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from None


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """The user's --device, made concrete. `auto` = CUDA if present, then MPS, then CPU; under torchrun a bare
    `cuda` means this worker's own GPU (LOCAL_RANK)."""
    info = info or env_info()
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"field 'run.device' is {name!r} but no CUDA device is available (use --device cpu)")
        index = int(name.split(":")[1]) if ":" in name else info.local_rank
        if index >= torch.cuda.device_count():
            raise ConfigError(f"field 'run.device' is {name!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise ConfigError("field 'run.device' is 'mps' but MPS is not available (use --device cpu)")
        if info.enabled:
            raise ConfigError("torchrun with --device mps is not supported (no collective backend for MPS)")
    return torch.device(name)


def setup(info: DistInfo, device: torch.device) -> None:
    """Join the process group (once) when launched by torchrun."""
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            dist.init_process_group(backend=backend, device_id=device)
        else:
            dist.init_process_group(backend=backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place; a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard(batch_indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous part of a global batch (sizes differ by at most one when it does not divide).

    The loss on each part is scaled by (part size / global batch) x world size, so that DDP's gradient mean
    equals the gradient of the global batch's mean loss: 1 process and N processes take the same step.
    """
    if not info.enabled:
        return batch_indices
    return torch.tensor_split(batch_indices, info.world_size)[info.rank]
