"""One epoch of optimisation (`train_one_epoch`) and what it adds up: the epoch's totals, the loss read back from the
device, and the checks that stop a run (a non-finite loss, weights or validation) or warn (a run stuck at chance).
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

# The chance warning (ChanceWatch) says "the network is not learning", so it must be right when it speaks. The loss
# alone cries wolf: a two-class run that learns slowly sits within 10% of ln 2 for epochs (issue 23: it warned at
# loss 0.625, training accuracy 0.68 and rising). So the watch also asks the accuracy, and asks both for a trend.
CHANCE_WINDOW = 50  # steps of the window judged now; the trend compares it with the CHANCE_WINDOW steps before it
CHANCE_TOLERANCE = 0.1  # "the loss is near ln(C)": within 10% of it (and 0.02 at least)
# Standard errors a window may stray from chance and still count as chance: a window of a run at chance stays below
# chance + 2 SE 97.7% of the time, and one of a run at 0.56 on 1,600 images (2 classes) goes below it almost never.
CHANCE_Z = 2.0
# A fall of the loss smaller than 0.5% of ln(C) between the two windows is flat whatever its noise: a loss that is
# constant to the last digit has no variance to compare a fall with.
CHANCE_FLAT = 0.005


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


@dataclass(frozen=True)
class StepStats:
    """One step as read back from the device (this rank's images)."""

    loss: float  # the mean loss over the step's images
    correct: int  # images whose top-1 prediction was right
    count: int  # images in the step

    @property
    def acc(self) -> float:
        return self.correct / max(self.count, 1)


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

    def read(self, totals: EpochTotals, epoch: int, sync_every: int) -> list[StepStats]:
        """The pending steps' figures (mean loss, correct, images), added to `totals`. Raises TrainingError on every
        rank at once when any rank's loss was non-finite; the newest pending step is the one not applied yet."""
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
        reads = []
        for value, hit, count in zip(values, hits, counts, strict=True):
            totals.loss_sum += value
            totals.correct += int(hit)
            totals.count += count
            reads.append(StepStats(value / max(count, 1), int(hit), count))
        return reads


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


@dataclass(frozen=True)
class StepWindow:
    """What ChanceWatch judges of a run of consecutive steps."""

    steps: int
    images: int
    loss: float  # the mean of the steps' mean losses
    loss_var: float  # their sample variance (0 for a single step)
    acc: float  # correct / images

    @classmethod
    def of(cls, reads: list[StepStats]) -> StepWindow:
        k = len(reads)
        mean = sum(r.loss for r in reads) / k
        var = sum((r.loss - mean) ** 2 for r in reads) / (k - 1) if k > 1 else 0.0
        images = sum(r.count for r in reads)
        return cls(k, images, mean, var, sum(r.correct for r in reads) / max(images, 1))


def stuck_at_chance(before: StepWindow, now: StepWindow, num_classes: int) -> bool:
    """The rule of the chance warning: True when all four hold (SE: standard error; Z = CHANCE_Z).

    - the accuracy is at chance: `now`'s training accuracy is at most 1/C + Z SE, SE = sqrt(p (1 - p) / n) over its
      n images, the spread of a binomial count at p = 1/C (a net at chance guesses each image right with p);
    - the accuracy is not rising: `now`'s exceeds `before`'s by at most Z SE of that difference;
    - the loss is not falling below ln(C): `now`'s mean is below `before`'s (or below ln(C), when `before`'s is
      above it) by at most Z SE of the difference of the two means (from their steps' variances), or by at most
      CHANCE_FLAT x ln(C) when that is larger. A loss that comes down onto ln(C) from above, as a fresh init's
      does, has moved to chance, not away from it;
    - the loss is near ln(C), the loss of a uniform guess: within CHANCE_TOLERANCE of it.
    On data with a majority class the accuracy of a net that learned nothing but the prior is above 1/C: the rule
    then stays silent rather than guess (it cannot tell that from learning)."""
    p, chance = 1 / num_classes, math.log(num_classes)
    spread = p * (1 - p)
    at_chance = now.acc <= p + CHANCE_Z * math.sqrt(spread / max(now.images, 1))
    rising = now.acc - before.acc > CHANCE_Z * math.sqrt(spread * (1 / max(before.images, 1) + 1 / max(now.images, 1)))
    noise = math.sqrt(before.loss_var / before.steps + now.loss_var / now.steps)
    falling = min(before.loss, chance) - now.loss > max(CHANCE_Z * noise, CHANCE_FLAT * chance)
    near = abs(now.loss - chance) <= max(CHANCE_TOLERANCE * chance, 0.02)
    return at_chance and near and not rising and not falling


@dataclass
class ChanceWatch:
    """Warns once when, from step `after_steps` on, the run is stuck at chance (`stuck_at_chance`): the newest
    CHANCE_WINDOW steps judged against the CHANCE_WINDOW before them. It waits until it has seen
    min(2 x CHANCE_WINDOW, after_steps) steps itself (a resumed run too); with fewer than 2 x CHANCE_WINDOW the steps
    seen are split in two halves. `after_steps` 0: never."""

    num_classes: int
    after_steps: int
    warned: bool = False
    recent: deque = field(default_factory=lambda: deque(maxlen=2 * CHANCE_WINDOW))

    def check(self, global_step: int, step: StepStats) -> str | None:
        self.recent.append(step)
        seen = len(self.recent)
        if (self.warned or self.after_steps <= 0 or global_step < self.after_steps or self.num_classes < 2
                or seen < max(2, min(2 * CHANCE_WINDOW, self.after_steps))):
            return None
        reads = list(self.recent)
        before, now = StepWindow.of(reads[: seen // 2]), StepWindow.of(reads[seen // 2 :])
        if not stuck_at_chance(before, now, self.num_classes):
            return None
        self.warned = True
        return chance_message(global_step, before, now, self.num_classes)


def chance_message(global_step: int, before: StepWindow, now: StepWindow, num_classes: int) -> str:
    """What the watch saw (loss against ln(C), accuracy against 1/C, over which steps), then the usual causes."""
    c = num_classes
    return (
        f"warning: after {global_step} steps the network is not learning: over the last {now.steps} steps the "
        f"training loss is {now.loss:.3f}, about ln({c}) = {math.log(c):.3f} (chance), and has not fallen "
        f"below it ({before.loss:.3f} over the {before.steps} steps before), and the training accuracy is {now.acc:.3f} on "
        f"{now.images} images, within {CHANCE_Z:g} standard errors of chance (1/{c} = {1 / c:.3f}). Usual causes: the "
        "learning rate (too high makes ReLUs die, too low does nothing: try --lr 1e-4 with Adam or 0.01 with SGD), "
        "the init (the paper's N(0, 0.01) without BatchNorm trains slowly from scratch: try --model alexnet-bn), the "
        "normalisation (inputs not scaled by mean/std), or labels that do not match the images"
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
    signal). `after_step(step, images, reads)` runs after each step (progress, checkpoints, signals) with the steps
    read back at that step, one StepStats each (mean loss, correct, images; None when there was no read), and
    returns True to stop; it must only stop or checkpoint at a read step. `train_mode(model)` puts the model in
    training mode (fine-tuning keeps its frozen layers in eval mode)."""

    must_sync: Callable[[int], bool] = lambda step: False
    after_step: Callable[[int, int, list[StepStats] | None], bool] = lambda step, images, reads: False
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
            reads = None
            # Read before the backward pass, so that a non-finite loss found here is never applied.
            if len(pending) >= sync_every or step + 1 == len(source) or hooks.must_sync(step):
                reads = pending.read(totals, epoch, sync_every)
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
            if hooks.after_step(step, global_batch, reads):
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
