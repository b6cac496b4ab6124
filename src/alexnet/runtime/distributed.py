"""torchrun / DDP helpers: who am I, which device, and the few collectives the trainer needs.

`torchrun --standalone --nproc-per-node N -m alexnet train ...` sets RANK, WORLD_SIZE and LOCAL_RANK in each
worker's environment; without them the run is a plain single process and every helper here is a no-op. The
backend follows the device: nccl for CUDA, gloo for CPU.

Failing together. A rank that raises while the others wait in a collective would leave them there until the
process-group timeout. Every place where some ranks work while others wait (local rank 0 preparing the data, rank 0
writing the run folder) is wrapped in `fail_together`: each rank reports its outcome in one all-gather, and a
failure anywhere stops every rank at once, the others with a message naming the rank that failed and why.

The process-group timeout (how long a collective may wait) is ALEXNET_PG_TIMEOUT_S seconds, default
DEFAULT_PG_TIMEOUT_S: long enough for local rank 0 to decode a large dataset into the uint8 cache while the other
ranks wait for it, which only happens on a machine's first run.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from alexnet.errors import AlexNetError, ConfigError, short

PG_TIMEOUT_ENV = "ALEXNET_PG_TIMEOUT_S"
DEFAULT_PG_TIMEOUT_S = 3600  # the first decode of an ImageNet-size cache on one machine; PyTorch's own is 600
# Under torchrun a signal reaches one rank (or all, at different steps); ranks agree to stop at read steps, and at
# least every STOP_AGREE_EVERY steps whatever --sync-every says, so SIGTERM is honoured within that many steps.
STOP_AGREE_EVERY = 50
# Fault injection for tests only: "RANK=PATH" makes that rank read PATH as its data source, as a node with another
# copy of the data would (tests/test_distributed.py). Never set in real runs.
TEST_RANK_SOURCE_ENV = "ALEXNET_TEST_RANK_SOURCE"


class RankFailed(AlexNetError):
    """Another rank failed; this one stops with it (the message names the rank and its error)."""


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


def pg_timeout() -> datetime.timedelta:
    """ALEXNET_PG_TIMEOUT_S (seconds, > 0), else DEFAULT_PG_TIMEOUT_S."""
    text = os.environ.get(PG_TIMEOUT_ENV, "").strip()
    if not text:
        return datetime.timedelta(seconds=DEFAULT_PG_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ConfigError(f"environment variable {PG_TIMEOUT_ENV} is {text!r}: expected a number of seconds above 0")
    return datetime.timedelta(seconds=seconds)


def setup(info: DistInfo, device: torch.device) -> None:
    """Join the process group (once) when launched by torchrun."""
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = pg_timeout()
        if device.type == "cuda":
            dist.init_process_group(backend=backend, device_id=device, timeout=timeout)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order; [value] in a single process."""
    if not _active():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


@contextlib.contextmanager
def fail_together(what: str):
    """Run the block on every rank, then stop every rank if it failed on any.

    Every rank must enter it (it ends with one all-gather). The rank that failed re-raises its own error; the
    others raise RankFailed naming it, e.g. "rank 0 failed while preparing the data: DataError: ..."."""
    error: BaseException | None = None
    try:
        yield
    except Exception as e:  # KeyboardInterrupt and SystemExit go straight through: the process is leaving anyway
        error = e
    if not _active():
        if error is not None:
            raise error
        return
    outcomes = all_gather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(rank, message) for rank, message in enumerate(outcomes) if message is not None]
    if failed:
        rank, message = failed[0]
        if message.startswith(f"{RankFailed.__name__}: "):  # already a relay of another rank's failure
            message = message[len(RankFailed.__name__) + 2:]
            raise RankFailed(message)
        raise RankFailed(f"rank {rank} failed while {what}: {message}")


def check_same(what: str, value: dict[str, Any]) -> None:
    """Refuse, on every rank at once, when some rank's `value` differs from rank 0's; names the rank and field."""
    values = all_gather(value)
    for rank, other in enumerate(values[1:], start=1):
        for key in value:
            if other.get(key) != values[0].get(key):
                raise RankFailed(f"rank {rank} sees different {what} than rank 0: {key} is {short(other.get(key), 120)} "
                                 f"on rank {rank} but {short(values[0].get(key), 120)} on rank 0; every rank must "
                                 "read the same files (same paths, same contents)")


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



@contextlib.contextmanager
def rank0_first(info: DistInfo, what: str = "preparing the data"):
    """Each machine's local rank 0 runs the block first (it may write the dataset and caches under
    $ALEXNET_CACHE), then that machine's other ranks run it and find the files done.

    The others wait in `fail_together`, not a bare barrier: when a first rank fails, they hear it at once and stop
    with its message. An error in the others' own run of the block is for the caller's `fail_together`."""
    if info.local_rank == 0:
        with fail_together(what):
            yield
    else:
        with fail_together(what):
            pass  # the first ranks' outcome: raises RankFailed if one failed
        yield


def stop_agreement_due(number: int, info: DistInfo, signalled: bool) -> bool:
    """Whether global step `number` must be a read step so that a signal is acted on. A single process reads at
    the next step after its own signal; under torchrun every rank must stop at the same step, so they agree at
    read steps, and this makes one at least every STOP_AGREE_EVERY steps (the same on every rank) on any device."""
    if not info.enabled:
        return signalled
    return number % STOP_AGREE_EVERY == 0


def data_source_for_rank(source: str | None, info: DistInfo) -> str | None:
    """`source`, unless the test-only ALEXNET_TEST_RANK_SOURCE="RANK=PATH" gives this rank another one."""
    spec = os.environ.get(TEST_RANK_SOURCE_ENV, "")
    rank, sep, path = spec.partition("=")
    if sep and rank.strip() == str(info.rank):
        return path
    return source


def data_identity(bundle: Any) -> dict[str, Any]:
    """What every rank must agree on: class names, split sizes, and a hash of each split's file list and labels.

    The hash covers `class-folder/file-name` and label, in order (the indices every rank draws from), not the full
    path or modification time: machines may mount identical copies at different places."""
    import hashlib
    from pathlib import Path

    def listing(dataset: Any) -> str:
        h = hashlib.sha256()
        samples = getattr(dataset, "samples", None)
        if samples is not None:
            for path, label in samples:
                p = Path(path)
                h.update(f"{p.parent.name}/{p.name}|{label}\n".encode())
        else:  # arrays in memory: their own content fingerprint
            h.update(dataset.fingerprint().encode())
        return h.hexdigest()[:16]

    return {"class names": list(bundle.class_names), "training images": len(bundle.train),
            "validation images": len(bundle.val), "training files and labels (hash)": listing(bundle.train),
            "validation files and labels (hash)": listing(bundle.val)}
