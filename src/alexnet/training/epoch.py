"""One epoch of optimisation (`train_one_epoch`) and what it adds up: the epoch's totals, the loss read back from the
device, and the checks that stop a run (a non-finite loss, weights or validation) or warn (a loss stuck at chance).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from alexnet.errors import AlexNetError, DataError
from alexnet.runtime import distributed
from alexnet.runtime.amp import autocast
from alexnet.runtime.distributed import DistInfo
from alexnet.training.batches import BatchSource
from alexnet.training.determinism import PURPOSE_DROPOUT, derive_seed
from alexnet.training.optim import set_lr

CHANCE_WINDOW = 20  # steps averaged when checking the loss against ln(C)
CHANCE_TOLERANCE = 0.1  # "near ln(C)": within 10 % of it


class TrainingError(AlexNetError):
    """The run cannot go on (non-finite loss, ...); the last good checkpoint is left as it was."""


@dataclass
class EpochTotals:
    """Sums over this rank's images of the epoch so far (saved in checkpoints, to resume mid-epoch)."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    seconds: float = 0.0  # training time of this epoch, across resumes
    data_wait: float = 0.0  # of which the loop waited for its next batch (absent in older checkpoints: 0)

    def to_dict(self) -> dict[str, Any]:
        return {"loss_sum": self.loss_sum, "correct": self.correct, "count": self.count, "seconds": self.seconds,
                "data_wait": self.data_wait}


SYNC_EVERY_ACCELERATOR = 50  # steps between reads of the loss on GPUs (run.sync_every 0 = automatic)


def resolve_sync_every(sync_every: int, device: torch.device) -> int:
    """How often the loss is read back to the host. On the CPU every step: a read costs nothing there (the step's
    work is already done when `.item()` runs), and it lets the non-finite check run before each step is applied.
    On GPUs a read makes the CPU wait for every queued kernel, and the GPU then idles while the CPU prepares the
    next step, so the values stay on the device for SYNC_EVERY_ACCELERATOR steps and are read together."""
    if sync_every:
        return sync_every
    return 1 if device.type == "cpu" else SYNC_EVERY_ACCELERATOR


class StepReadback:
    """The loss sums and correct counts of the steps since the last read, kept on the device as 0-d tensors.

    `read()` brings them to the host in one transfer (one host sync; under torchrun one all-reduce as well) and adds
    them to the epoch totals step by step, in order, so the totals are bit-for-bit those of a read every step.
    """

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self.steps: list[int] = []
        self.loss_sums: list[torch.Tensor] = []
        self.correct: list[torch.Tensor] = []
        self.counts: list[int] = []

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: int, loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        self.steps.append(step)
        self.loss_sums.append(loss_sum.detach())
        self.correct.append(correct)
        self.counts.append(count)

    def read(self, totals: EpochTotals, epoch: int, sync_every: int) -> list[float]:
        """The pending steps' mean losses, added to `totals`. Raises TrainingError on every rank at once when any
        rank's loss was non-finite; the newest pending step is the one not applied yet."""
        n = len(self.steps)
        losses = torch.stack(self.loss_sums).float()  # (n,)
        correct = torch.stack(self.correct).float()  # (n,) exact: a step's count is far below 2**24
        bad = (~torch.isfinite(losses)).any().float().view(1)
        distributed.all_reduce_sum(bad)  # ranks must stop at the same step, or the others hang in the next collective
        host = torch.cat([bad, losses, correct]).tolist()
        values, hits = host[1 : 1 + n], host[1 + n :]
        steps, counts = self.steps, self.counts
        self.clear()
        if host[0] > 0:
            raise non_finite_error(epoch, steps, values, sync_every)
        means = []
        for value, hit, count in zip(values, hits, counts, strict=True):
            totals.loss_sum += value
            totals.correct += int(hit)
            totals.count += count
            means.append(value / max(count, 1))
        return means


def non_finite_error(epoch: int, steps: list[int], loss_sums: list[float], sync_every: int) -> TrainingError:
    first = next((i for i, v in enumerate(loss_sums) if not math.isfinite(v)), None)
    current = steps[-1]
    if first is None:
        where = f"on another rank, between steps {steps[0] + 1} and {current + 1} of epoch {epoch + 1}"
    else:
        where = f"({loss_sums[first]}) at epoch {epoch + 1}, step {steps[first] + 1}"
    if first is not None and steps[first] == current:
        stopped = "stopped before applying it"
    else:
        stopped = (f"stopped at step {current + 1} (the loss is read from the device every {sync_every} steps, "
                   "--sync-every) without saving the weights since")
    return TrainingError(
        f"non-finite loss {where}: {stopped}; the last checkpoint is intact. Usual causes: a learning rate too high "
        "for this optimizer/init (try 10x lower), fp16 overflow (--amp bf16 or none), or corrupt input values"
    )


@dataclass
class ChanceWatch:
    """Warns once when, after `after_steps` steps, the training loss still averages about ln(C) (chance level)."""

    num_classes: int
    after_steps: int
    warned: bool = False
    recent: deque = field(default_factory=lambda: deque(maxlen=CHANCE_WINDOW))

    def check(self, global_step: int, loss: float) -> str | None:
        self.recent.append(loss)
        if self.warned or self.after_steps <= 0 or global_step < self.after_steps or self.num_classes < 2:
            return None
        chance = math.log(self.num_classes)
        mean = sum(self.recent) / len(self.recent)
        if abs(mean - chance) > max(CHANCE_TOLERANCE * chance, 0.02):
            return None
        self.warned = True
        return (
            f"warning: after {global_step} steps the training loss is {mean:.3f}, still about ln({self.num_classes}) = "
            f"{chance:.3f}, i.e. chance: the network is not learning. Usual causes: the learning rate (too high makes "
            "ReLUs die, too low does nothing: try --lr 1e-4 with Adam or 0.01 with SGD), the init (the paper's "
            "N(0, 0.01) without BatchNorm trains slowly from scratch: try --model alexnet-bn), the normalisation "
            "(inputs not scaled by mean/std), or labels that do not match the images"
        )


@dataclass(frozen=True)
class EpochSettings:
    """How every step of the run is taken: fixed for the run's whole length (a time budget's new plan changes its
    length, never these)."""

    seed: int  # dropout masks are drawn from (seed, epoch, step, rank)
    info: DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast's dtype (None: fp32)
    channels_last: bool = False  # the memory format of the model's input
    label_smoothing: float = 0.0
    sync_every: int = 1  # steps between reads of the loss from the device (resolve_sync_every)
    class_weights: torch.Tensor | None = None  # the loss's weight per class (training.balance), or None


@dataclass(frozen=True)
class WeightUpdate:
    """How each step changes the weights: the optimizer, the learning rate it takes at each step (an LRSchedule, or
    anything with `lr_at(epoch, step)`), and fp16 loss scaling (None: off)."""

    optimizer: torch.optim.Optimizer
    schedule: Any  # LRSchedule, or the LR range test's ramp
    scaler: torch.amp.GradScaler | None = None


@dataclass(frozen=True)
class EpochHooks:
    """What train_one_epoch asks of its caller during the epoch; the defaults ask nothing of it.

    `must_sync(step)`: True when the loss must be read back at `step` (the caller's checkpoints, its last step, a
    signal). `after_step(step, images, losses)` runs after each step (progress, checkpoints, signals) with the
    per-step mean losses read back at that step (None when there was no read) and returns True to stop; it must only
    stop or checkpoint at a read step. `train_mode(model)` puts the model in training mode (fine-tuning keeps its
    frozen layers in eval mode)."""

    must_sync: Callable[[int], bool] = lambda step: False
    after_step: Callable[[int, int, list[float] | None], bool] = lambda step, images, losses: False
    train_mode: Callable[[torch.nn.Module], Any] = torch.nn.Module.train


NO_HOOKS = EpochHooks()


# One function on purpose (about 55 lines with its docstring): the step's order (lr, seed, forward, read back before
# backward, step, hooks) is the contract of exact resume and of the non-finite check, and reads best in one place.
def train_one_epoch(model: torch.nn.Module, update: WeightUpdate, source: BatchSource, epoch: int, start_step: int,
                    totals: EpochTotals, settings: EpochSettings, hooks: EpochHooks = NO_HOOKS) -> int:
    """Optimise over the steps start_step.. of `epoch`; returns the position reached (steps done in the epoch).

    The loss and accuracy stay on the device and are read back (StepReadback) every `settings.sync_every` steps, at
    the epoch's last step, and at any step where `hooks.must_sync(step)` is True; `hooks.after_step` runs after each
    step and may stop the epoch (EpochHooks). A non-finite loss raises TrainingError at the read that finds it,
    before that step is applied and on every rank at once. `totals` is updated in place; its `seconds` include
    fetching the batches and `data_wait` is the part spent waiting for them.
    """
    optimizer, schedule, scaler = update.optimizer, update.schedule, update.scaler
    info, device, sync_every = settings.info, settings.device, settings.sync_every
    hooks.train_mode(model)
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    pending = StepReadback()
    position = start_step
    last = time.perf_counter()
    # closing(): leaving early (max_steps, a signal, an exception) stops and joins the prefetch thread at once.
    with contextlib.closing(source.batches(epoch, start_step)) as batches:
        while True:
            wait_start = time.perf_counter()
            batch = next(batches, None)
            totals.data_wait += time.perf_counter() - wait_start
            if batch is None:
                break
            step, images, labels, global_batch = batch
            set_lr(optimizer, schedule.lr_at(epoch, step))
            torch.manual_seed(derive_seed(settings.seed, epoch, step, info.rank, PURPOSE_DROPOUT))  # dropout masks
            with autocast(device.type, settings.amp_dtype):
                logits = model(images.contiguous(memory_format=memory_format))  # (B, num_classes)
            loss_sum = F.cross_entropy(logits.float(), labels, weight=settings.class_weights, reduction="sum",
                                       label_smoothing=settings.label_smoothing)
            # Scaled so that DDP's mean over ranks of the gradients is the gradient of the global batch's mean loss.
            loss = loss_sum * (info.world_size / global_batch)
            pending.add(step, loss_sum, (logits.argmax(dim=1) == labels).sum(), len(labels))
            losses = None
            # Read before the backward pass, so that a non-finite loss found here is never applied.
            if len(pending) >= sync_every or step + 1 == len(source) or hooks.must_sync(step):
                losses = pending.read(totals, epoch, sync_every)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:  # GradScaler.step reads its inf check on the host: fp16 keeps one sync per step
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            now = time.perf_counter()
            totals.seconds += now - last
            last = now
            position = step + 1
            if hooks.after_step(step, global_batch, losses):
                break
    if len(pending):  # only when a caller stops at a step it did not ask to read: keep the totals whole anyway
        pending.read(totals, epoch, sync_every)
    return position


def gather_totals(totals: EpochTotals, info: DistInfo) -> list[dict[str, Any]]:
    """Every rank's epoch totals (collective: all ranks call it), so a resume restores each rank's sums."""
    if not info.enabled:
        return [totals.to_dict()]
    out: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(out, totals.to_dict())
    return out


def reduce_totals(totals: EpochTotals, device: torch.device) -> dict[str, float]:
    """The epoch's training loss and accuracy over all ranks' images; seconds and data_wait are this rank's."""
    dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    t = torch.tensor([totals.loss_sum, totals.correct, totals.count], dtype=dtype, device=device)
    distributed.all_reduce_sum(t)
    loss_sum, correct, count = t.tolist()
    return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1), "count": count,
            "seconds": totals.seconds, "data_wait": totals.data_wait}


def first_non_finite(model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> str | None:
    """The first weight, buffer or optimizer state tensor holding NaN or Inf (None: all finite).

    One flag per tensor stays on the device, summed over ranks, and is read in one transfer. Collective under
    torchrun: every rank gets the same answer."""
    named: list[tuple[str, torch.Tensor]] = [(f"weight {k!r}", v) for k, v in model.state_dict().items()]
    for name, param in model.named_parameters():
        for key, value in optimizer.state.get(param, {}).items():
            if isinstance(value, torch.Tensor):
                named.append((f"optimizer state {key!r} of {name!r}", value))
    named = [(n, t) for n, t in named if t.is_floating_point()]
    if not named:
        return None
    flags = torch.stack([(~torch.isfinite(t)).any().to(device) for _, t in named]).float()
    distributed.all_reduce_sum(flags)
    for (name, _), bad in zip(named, flags.tolist(), strict=True):
        if bad:
            return name
    return None


def check_validation(val: Any, epoch: int, kept: str) -> None:
    """Stop before saving when the validation pass is unusable: no images, or a non-finite loss (outputs that
    overflow with finite weights): best.pt must never be chosen by a NaN evaluation."""
    if val.total == 0:
        raise DataError(f"the validation pass of epoch {epoch + 1} saw no images; {kept}")
    if not math.isfinite(val.loss):
        raise TrainingError(f"validation loss is {val.loss} after epoch {epoch + 1} (the model's outputs overflow): "
                            f"the run diverged, so this epoch was not saved and training stopped; {kept}")
