"""Training: `fit()` is the one place that wires data -> batches -> model -> loss/optimizer -> checkpoints/metrics.

Read `fit()` top to bottom to see a whole run. The pieces it calls take explicit objects and know nothing about
files or the command line: `train_one_epoch()` (the optimisation loop), `LRSchedule` (warm-up, step, cosine, and the
paper's divide-by-10-on-plateau), `CacheBatches` / `LoaderBatches` (where each step's images come from), and
`alexnet.evaluate.evaluate()` (validation).

Exact resume. Nothing random depends on history: the epoch's order is a permutation drawn from a generator seeded
by (seed, epoch); the augmentation and the dropout masks of a step come from generators seeded by
(seed, epoch, step, rank). A checkpoint therefore only needs the weights, the optimizer/schedule/scaler state and
the position (epoch, step in epoch); a resumed run draws exactly what the uninterrupted run drew, and on CPU with
`--deterministic` it ends with bitwise-equal weights. (RNG states are saved and restored too, for anything else
that draws from the global generators.)

Batch size is GLOBAL: each torchrun rank takes a contiguous part of every batch, and the loss is scaled so that
DDP's gradient mean equals the gradient of the whole batch's mean loss.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alexnet import distributed
from alexnet.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    RunPaths,
    atomic_save,
    check_matches,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    run_dir_of,
    set_rng_state,
    versions,
)
from alexnet.config import OptimSpec, TrainConfig
from alexnet.distributed import DistInfo
from alexnet.errors import AlexNetError, CheckpointError, ConfigError, DataError
from alexnet.evaluate import evaluate
from alexnet.files import atomic_write, atomic_write_text
from alexnet.inference import AMP_DTYPES
from alexnet.runfolder import RunLock, check_new_run_folder

METRIC_COLUMNS = [
    "epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "seconds", "images_per_s",
    "data_wait_s", "data_wait_share",  # time the training loop waited for its next batch, and its share of the epoch
]
CHANCE_WINDOW = 20  # steps averaged when checking the loss against ln(C)
CHANCE_TOLERANCE = 0.1  # "near ln(C)": within 10 % of it
# Under torchrun a signal reaches one rank (or all, at different steps); ranks agree to stop at read steps, and at
# least every STOP_AGREE_EVERY steps whatever --sync-every says, so SIGTERM is honoured within that many steps.
STOP_AGREE_EVERY = 50
# Fault injection for tests only: "RANK=PATH" makes that rank read PATH as its data source, as a node with another
# copy of the data would (tests/test_distributed.py). Never set in real runs.
TEST_RANK_SOURCE_ENV = "ALEXNET_TEST_RANK_SOURCE"


class TrainingError(AlexNetError):
    """The run cannot go on (non-finite loss, ...); the last good checkpoint is left as it was."""


class RunInterrupted(AlexNetError):
    """SIGTERM or SIGINT: the current step was finished and checkpoints/last.pt written."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@dataclass
class FitResult:
    run_dir: Path
    epochs_done: int
    global_step: int
    best_val_top1: float
    rows: list[dict[str, Any]]  # metrics.csv, one dict per epoch
    stopped_early: bool = False  # run.max_steps reached before the last epoch ended


# --- seeds -------------------------------------------------------------------------------------------------------


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, step, rank, purpose): independent streams, no shared state."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


_PURPOSE_ORDER, _PURPOSE_AUGMENT, _PURPOSE_DROPOUT = 1, 2, 3


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the training set in `epoch`: the same on every rank and in every resumed process."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, _PURPOSE_ORDER))
    return torch.randperm(n, generator=g)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches only (an incomplete last batch is dropped, as each epoch's order differs); one batch of
    everything when the set is smaller than a batch."""
    return max(1, n // batch_size)


def batch_indices(perm: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    return perm[step * batch_size : (step + 1) * batch_size]


# --- learning-rate schedule --------------------------------------------------------------------------------------


class LRSchedule:
    """lr for (epoch, step): linear warm-up, then constant (none), step, cosine, or the paper's plateau rule.

    Plateau (section 5 of the paper): "divide the learning rate by 10 when the validation error rate stopped
    improving with the current learning rate", at most `max_drops` times (3 in the paper). Its only state is a few
    numbers (`state_dict()`), saved in every checkpoint.
    """

    def __init__(self, spec: OptimSpec, epochs: int, steps_per_epoch: int):
        self.spec = spec
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.drops = 0
        self.best = -math.inf
        self.bad_epochs = 0

    def lr_at(self, epoch: int, step: int) -> float:
        s = self.spec
        t = epoch + (step + 1) / self.steps_per_epoch  # epochs completed after this step
        factor = 1.0
        if s.warmup_epochs > 0 and t < s.warmup_epochs:
            factor = t / s.warmup_epochs
        if s.lr_schedule == "step":
            factor *= s.gamma ** (epoch // s.step_size)
        elif s.lr_schedule == "cosine":
            span = max(self.epochs - s.warmup_epochs, 1e-9)
            progress = min(max((t - s.warmup_epochs) / span, 0.0), 1.0)
            factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
        elif s.lr_schedule == "plateau":
            factor *= s.gamma**self.drops
        return s.lr * factor

    def end_epoch(self, val_top1: float) -> bool:
        """Record an epoch's validation accuracy; True when the plateau rule divides the lr."""
        if self.spec.lr_schedule != "plateau":
            return False
        if val_top1 > self.best:
            self.best, self.bad_epochs = val_top1, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.spec.patience and self.drops < self.spec.max_drops:
            self.drops += 1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"drops": self.drops, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drops, self.best, self.bad_epochs = int(state["drops"]), float(state["best"]), int(state["bad_epochs"])


# --- where the batches come from ---------------------------------------------------------------------------------


PREFETCH_DEPTH = 1  # batches queued ahead of the step (one more is being made): enough when a step outlasts a batch


class CacheBatches:
    """The fast path: the split as one uint8 tensor (N, C, H, W), augmented a whole batch at a time.

    Decoding JPEGs is done once (alexnet.data.cache); each step indexes the tensor, moves the uint8 batch to the
    device (4x fewer bytes than float) and augments it there. With `prefetch`, a background thread makes the next
    batches while the model computes (alexnet.data.prefetch); every batch is a function of (seed, epoch, step,
    rank) alone, so the batches are bit-identical with prefetch on or off and after a resume.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: Any, generator: torch.Generator,
                 batch_size: int, seed: int, info: DistInfo, device: torch.device, prefetch: bool = False,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.images, self.labels = images, labels
        # The buffers are laid out as the model wants its input, so the uint8 -> float copy also changes the layout
        # and the step's .contiguous(memory_format) costs nothing (one 64 x 3 x S x S copy less per step).
        self.memory_format = memory_format
        self.augment, self.generator = augment, generator
        self.batch_size, self.seed, self.info, self.device = batch_size, seed, info, device
        self.prefetch = prefetch
        self.steps = steps_per_epoch(len(labels), batch_size)
        # On the CPU, output buffers are reused: a fresh float batch per step is page-faulted into existence every
        # time (benchmarks/README.md). A buffer is free again once its step's backward is done. Without prefetch
        # that is before the next batch is made (one buffer); with it, while step k computes, batch k + 1..k + depth
        # wait in the queue and k + depth + 1 is being made, so step s writes buffer s mod (depth + 2). GPUs get a
        # fresh tensor from PyTorch's caching allocator instead (cheap there, and safe across streams).
        self.ring = PREFETCH_DEPTH + 2 if prefetch else 1
        self.buffers: dict[tuple[int, ...], list[torch.Tensor]] = {}
        # On CUDA the producer copies and augments on its own stream, so that work overlaps the step's kernels.
        self.stream = torch.cuda.Stream(device) if prefetch and device.type == "cuda" else None

    def __len__(self) -> int:
        return self.steps

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, int]]:
        """(step, images, labels, global batch size) for steps start..end of `epoch`, this rank's part only.

        Close the iterator (contextlib.closing) when leaving early: that stops and joins the prefetch thread."""
        if not self.prefetch:
            for step, x, y, n, _ in self._make(epoch, start):
                yield step, x, y, n
            return
        from alexnet.data.prefetch import Prefetcher

        with Prefetcher(self._make(epoch, start), depth=PREFETCH_DEPTH, name=f"alexnet-batches-e{epoch}") as ahead:
            for step, x, y, n, ready in ahead:
                if ready is not None:  # CUDA: the compute stream waits for the producer's copy and augmentation
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(ready)
                    x.record_stream(current)  # the caching allocator must not recycle them while the step runs
                    y.record_stream(current)
                yield step, x, y, n

    def _make(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, int, Any]]:
        """Makes the batches, in whichever thread iterates it; the last item is the CUDA event marking it ready."""
        perm = epoch_permutation(len(self.labels), self.seed, epoch)
        cuda = self.device.type == "cuda"
        for step in range(start, self.steps):
            idx = batch_indices(perm, step, self.batch_size)
            local = distributed.shard(idx, self.info)
            # Each batch's randomness is seeded by its position alone: no state carries over from earlier batches,
            # so it does not matter which thread makes it, or how far ahead.
            self.generator.manual_seed(derive_seed(self.seed, epoch, step, self.info.rank, _PURPOSE_AUGMENT))
            if cuda:  # gathered straight into pinned memory, so that the copy to the GPU is asynchronous
                x = torch.empty((len(local), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=True)
                torch.index_select(self.images, 0, local, out=x)
                y = self.labels[local].pin_memory()
            else:  # index_select copies whole rows: 9x faster than x[idx] on a uint8 (N, C, H, W) tensor here
                x, y = torch.index_select(self.images, 0, local), torch.index_select(self.labels, 0, local)
            with torch.cuda.stream(self.stream) if self.stream is not None else contextlib.nullcontext():
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                out = self._buffer(step, (len(local), x.shape[1], self.augment.size, self.augment.size))
                x = self.augment(x, out=out)
                ready = torch.cuda.Event() if self.stream is not None else None
                if ready is not None:
                    ready.record(self.stream)
            yield step, x, y, len(idx), ready

    def _buffer(self, step: int, shape: tuple[int, ...]) -> torch.Tensor | None:
        if self.device.type != "cpu":
            return None
        if shape not in self.buffers:
            self.buffers[shape] = [torch.empty(shape, dtype=torch.float32, memory_format=self.memory_format)
                                   for _ in range(self.ring)]
        return self.buffers[shape][step % self.ring]


class LoaderBatches:
    """The PIL path (what the notes do): a DataLoader over decoded-per-step images, with a sampler that plays the
    role of DistributedSampler (each rank its part of the same (seed, epoch) permutation) and can start mid-epoch."""

    def __init__(self, dataset: Any, batch_size: int, seed: int, info: DistInfo, device: torch.device, workers: int):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.info, self.device, self.workers = info, device, workers
        self.steps = steps_per_epoch(len(dataset), batch_size)

    def __len__(self) -> int:
        return self.steps

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, int]]:
        perm = epoch_permutation(len(self.dataset), self.seed, epoch)
        plan = [batch_indices(perm, s, self.batch_size) for s in range(start, self.steps)]
        local = [distributed.shard(idx, self.info).tolist() for idx in plan]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=local, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch, start, _PURPOSE_AUGMENT)),
        )
        for offset, (x, y) in enumerate(loader):
            torch.manual_seed(derive_seed(self.seed, epoch, start + offset, self.info.rank, _PURPOSE_AUGMENT))
            yield start + offset, x.to(self.device, non_blocking=True), y.to(self.device), len(plan[offset])


# --- one epoch ---------------------------------------------------------------------------------------------------


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


def train_one_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    scaler: torch.amp.GradScaler | None,
    source: CacheBatches | LoaderBatches,
    epoch: int,
    start_step: int,
    totals: EpochTotals,
    *,
    seed: int,
    info: DistInfo,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    label_smoothing: float,
    sync_every: int,
    must_sync: Callable[[int], bool],
    after_step: Callable[[int, int, list[float] | None], bool],
) -> int:
    """Optimise over the steps start_step.. of `epoch`; returns the position reached (steps done in the epoch).

    The loss and accuracy stay on the device and are read back (StepReadback) every `sync_every` steps, at the
    epoch's last step, and at any step where `must_sync(step)` is True (the caller's checkpoints, its last step,
    a signal). `after_step(step, images, losses)` runs after each step (progress, checkpoints, signals) with the
    per-step mean losses read back at that step (None when there was no read) and returns True to stop; it must
    only stop or checkpoint at a read step. A non-finite loss raises TrainingError at the read that finds it, before
    that step is applied and on every rank at once. `totals` is updated in place; its `seconds` include fetching
    the batches and `data_wait` is the part spent waiting for them.
    """
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    autocast = (
        torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    )
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
            lr = schedule.lr_at(epoch, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(derive_seed(seed, epoch, step, info.rank, _PURPOSE_DROPOUT))  # dropout masks
            with autocast:
                logits = model(images.contiguous(memory_format=memory_format))  # (B, num_classes)
            loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=label_smoothing)
            # Scaled so that DDP's mean over ranks of the gradients is the gradient of the global batch's mean loss.
            loss = loss_sum * (info.world_size / global_batch)
            pending.add(step, loss_sum, (logits.argmax(dim=1) == labels).sum(), len(labels))
            losses = None
            # Read before the backward pass, so that a non-finite loss found here is never applied.
            if len(pending) >= sync_every or step + 1 == len(source) or must_sync(step):
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
            if after_step(step, global_batch, losses):
                break
    if len(pending):  # only when a caller stops at a step it did not ask to read: keep the totals whole anyway
        pending.read(totals, epoch, sync_every)
    return position


# --- the run -----------------------------------------------------------------------------------------------------


def fit(cfg: TrainConfig, resume: str | Path | None = None, *, progress: bool | None = None) -> FitResult:
    """Train `cfg`; with `resume` (a run folder or checkpoint), continue that run exactly where it stopped.

    Under torchrun every rank calls this; rank 0 alone prints and writes files.
    """
    # Imported here: the data layer pulls torchvision and PIL, the model module its own helpers.
    from alexnet.data import build_datasets
    from alexnet.models import build_model, model_config

    # 1. Where and how: device, process group, numerics, seeds.
    info = distributed.env_info()
    if cfg.run.deterministic and cfg.run.device != "cpu":
        # cuBLAS reads it when its first handle is made: set before anything below can touch CUDA.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    device = distributed.resolve_device(cfg.run.device, info)
    distributed.setup(info, device)
    run_lock: RunLock | None = None
    stop = StopFlag()
    try:
        if cfg.run.batch_size < info.world_size:
            raise AlexNetError(f"field 'run.batch_size' ({cfg.run.batch_size}) is smaller than the number of ranks "
                               f"({info.world_size}): it is the global batch, split over ranks")
        set_determinism(cfg.run.deterministic, device)
        amp_dtype = AMP_DTYPES[cfg.run.amp]
        ckpt = load_checkpoint(resume, prefer="last") if resume is not None else None

        # 2. The run folder (rank 0 writes; the others only read the path).
        run_dir = Path(resume).resolve() if resume is not None and Path(resume).is_dir() else None
        if ckpt is not None and run_dir is None:
            run_dir = run_dir_of(Path(ckpt["path"]))
        if run_dir is None:
            run_dir = Path(cfg.run.output_dir or default_output_dir(cfg)).resolve()
        paths = RunPaths(run_dir)
        # One writer per run folder (rank 0 writes for every rank): no foreign folder, and the lock for the whole run.
        with distributed.fail_together("checking the run folder"):
            if info.is_main:
                if ckpt is None:
                    check_new_run_folder(run_dir)
                run_lock = RunLock(run_dir).acquire()
                if ckpt is None and paths.last.exists():
                    raise ConfigError(f"{run_dir} already holds a run (checkpoints/last.pt): continue it with "
                                      f"--resume {run_dir}, or choose another --output-dir")
        log = RunLog(paths.log if info.is_main else None, enabled=info.is_main)
        log(f"run folder: {run_dir}")
        if info.is_main:  # an explicit --amp that measured clearly slower than fp32 on this CPU: say so with the factor
            from alexnet.precision import warn_if_slow

            warn_if_slow(cfg.run.amp, device.type, emit=log)

        # 3. Data: the model variant decides channels and the default input size.
        base = model_config(cfg.model.name, width_mult=cfg.model.width_mult, dropout=cfg.model.dropout,
                            norm=cfg.model.norm, in_channels=cfg.model.in_channels)
        image_size = cfg.data.image_size or base.image_size
        log(f"preparing data: {cfg.data.source or 'the built-in shapes dataset'} (decoded once into the uint8 cache "
            "under $ALEXNET_CACHE; the first use takes longer)" if cfg.data.loader == "cache" else
            f"preparing data: {cfg.data.source or 'the built-in shapes dataset'}")
        if not info.is_main:  # the data layer reports each skipped file once: on rank 0, not once per rank
            logging.getLogger("alexnet.data").setLevel(logging.ERROR)
        # An error on any rank stops every rank here (no rank is left waiting in a collective), naming the rank.
        with distributed.fail_together("preparing the data"):
            with rank0_first(info, "preparing the data"):  # the built-in dataset and caches: once per machine
                bundle = build_datasets(
                    source=data_source_for_rank(cfg.data.source, info), image_size=image_size,
                    in_channels=base.in_channels, preset=cfg.data.preset, val_split=cfg.data.val_split,
                    seed=cfg.data.split_seed, strict=cfg.data.strict, download=cfg.data.download,
                    root=cfg.data.root, augment=cfg.data.augment,
                )
                train_source, val_batches = build_batches(cfg, bundle, image_size, base.in_channels, info, device)
            if len(bundle.val) == 0:
                raise DataError(f"{bundle.source}: the validation split is empty; training needs validation "
                                "images (they choose best.pt and drive the plateau schedule): add a val/ folder "
                                "or more images per class")
        distributed.check_same("data", data_identity(bundle))  # DDP would silently average different datasets
        class_names = list(bundle.class_names)
        num_classes = len(class_names)

        # 4. Model: same init on every rank (DDP also broadcasts rank 0's weights).
        torch.manual_seed(cfg.run.seed)
        raw_model = build_model(cfg.model.name, num_classes=num_classes, image_size=image_size,
                                width_mult=cfg.model.width_mult, dropout=cfg.model.dropout, norm=cfg.model.norm,
                                in_channels=cfg.model.in_channels)
        model_args = as_plain(raw_model.config)
        if ckpt is not None:
            check_matches(ckpt, {"model_name": cfg.model.name, "class_names": class_names, "image_size": image_size,
                                 "in_channels": base.in_channels, "model_args": model_args}, "resume")
            raw_model.load_state_dict(ckpt["model"])
        memory_format = torch.channels_last if cfg.run.channels_last else torch.contiguous_format
        raw_model.to(device=device, memory_format=memory_format)
        if cfg.run.deterministic and device.type != "cpu":
            check_deterministic_backward(raw_model, device, image_size, base.in_channels, amp_dtype, memory_format,
                                         cfg.model.name)
        model: torch.nn.Module = raw_model
        if info.enabled:
            model = torch.nn.parallel.DistributedDataParallel(
                raw_model, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.run.compile:
            model = torch.compile(model)

        # 5. Optimizer, schedule, loss scaling.
        optimizer = build_optimizer(cfg.optim, raw_model)
        schedule = LRSchedule(cfg.optim, cfg.run.epochs, len(train_source))
        scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

        # 6. Where to start: the beginning, or exactly where the checkpoint left off.
        epoch, start_step, global_step, best = 0, 0, 0, -math.inf
        totals = EpochTotals()
        chance = ChanceWatch(num_classes, cfg.run.chance_warn_steps)
        if ckpt is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.load_state_dict(ckpt["scheduler"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            epoch, start_step, global_step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"]
            best = ckpt["best_val_top1"]
            totals = EpochTotals(**ckpt["epoch_totals"][info.rank]) if info.world_size == len(
                ckpt["epoch_totals"]) else EpochTotals()
            chance.warned = bool(ckpt.get("chance_warned", False))
            set_rng_state(ckpt["rng"])
        # Signals (see 8): finish the step, save, stop. Installed before the collective below, so that once rank 0 goes
        # on every rank honours a SIGTERM (with a checkpoint) instead of dying of it.
        stop.install()
        rows: list[dict[str, Any]] = []
        with distributed.fail_together("writing the run folder"):
            if info.is_main:
                paths.checkpoints.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(paths.checkpoints)
                write_config(cfg, paths.config)
                rows = truncate_metrics(paths.metrics, keep_epochs=epoch)

        if ckpt is not None:
            log(f"resuming from {ckpt['path']}: epoch {epoch + 1}, step {start_step} of {len(train_source)}")
        log(describe_run(cfg, raw_model, bundle, image_size, device, info, len(train_source)))
        for path, reason in list(getattr(bundle, "skipped", []) or []):  # shown by the data layer; kept in log.txt
            log(f"skipped {path}: {reason}", console=False)

        # 7. Checkpoint contents: tensors and plain types only (weights_only=True loads them). Never of weights or
        # optimizer state that are not all finite: the step before a save may have diverged after its loss was read.
        saved_step = ckpt["global_step"] if ckpt is not None else None  # what last.pt holds now

        def kept() -> str:
            if saved_step is None:
                return "no checkpoint had been written yet, and none was"
            both = paths.best.exists()
            return (f"{paths.last}{' and best.pt are' if both else ' is'} left as {'they were' if both else 'it was'} "
                    f"(last.pt from global step {saved_step})")

        def checkpoint(epoch_: int, step_: int) -> dict[str, Any]:
            bad = first_non_finite(raw_model, optimizer, device)  # collective: every rank stops at once
            if bad is not None:
                raise TrainingError(
                    f"{bad} holds NaN or Inf after global step {global_step} (epoch {epoch_ + 1}): the run diverged, "
                    f"so it was not saved and training stopped; {kept()}. Usual causes: a learning rate too high "
                    "for this optimizer/init (try 10x lower), fp16 overflow (--amp bf16 or none)")
            gathered = gather_totals(totals, info)
            return {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "model": raw_model.state_dict(), "model_name": cfg.model.name, "model_args": model_args,
                "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch_, "step_in_epoch": step_, "global_step": global_step, "best_val_top1": best,
                "epoch_totals": gathered, "chance_warned": chance.warned,
                "rng": rng_state(), "sampler": {"seed": cfg.run.seed, "epoch": epoch_, "kind": cfg.data.loader},
                "class_names": class_names, "mean": list(bundle.mean), "std": list(bundle.std),
                "image_size": image_size, "in_channels": base.in_channels, "preset": bundle.preset,
                "data": plain(bundle.describe()), "config": cfg.to_dict(), "versions": versions(),
                "world_size": info.world_size,
            }

        # 8. Progress, and what a step may do: read back, checkpoint, stop on a signal.
        bar = make_bar(progress, info, total=len(train_source) * cfg.run.batch_size)

        sync_every = resolve_sync_every(cfg.run.sync_every, device)

        def checkpoint_due(step: int, number: int) -> bool:
            """The `--save-every-steps` checkpoint after global step `number` (epoch ends save anyway)."""
            every = cfg.run.save_every_steps
            return bool(every) and number % every == 0 and step + 1 < len(train_source)

        def must_sync(step: int) -> bool:
            """Steps after which after_step may checkpoint or stop: their losses must be read first. The same on
            every rank; a signal counts on a single process only (under torchrun ranks agree at read steps)."""
            number = global_step + 1
            return (checkpoint_due(step, number) or (cfg.run.max_steps is not None and number >= cfg.run.max_steps)
                    or stop_agreement_due(number, info, bool(stop.signum)))

        def after_step(step: int, images: int, losses: list[float] | None) -> bool:
            nonlocal global_step, saved_step
            global_step += 1
            bar.update(images)
            if losses is None:  # the loss stays on the device this step: nothing to show, save or agree on
                return False
            for i, loss in enumerate(losses):
                warning = chance.check(global_step - len(losses) + 1 + i, loss)
                if warning:
                    log(warning)
            bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}", refresh=False)
            stopping = stop.agreed(device, info)
            done_steps = cfg.run.max_steps is not None and global_step >= cfg.run.max_steps
            if stopping or checkpoint_due(step, global_step):
                state = checkpoint(epoch, step + 1)
                with distributed.fail_together("saving a checkpoint"):
                    if info.is_main:
                        atomic_save(state, paths.last)
                saved_step = global_step
            if stopping:
                raise RunInterrupted(f"{stop.name}: finished step {step + 1} of epoch {epoch + 1} and saved "
                                     f"{paths.last}; continue with: alexnet train --resume {run_dir}", stop.signum)
            return done_steps

        # 9. The epochs.
        stopped_early = False
        while epoch < cfg.run.epochs:
            bar.reset(total=len(train_source) * cfg.run.batch_size)
            bar.update(start_step * cfg.run.batch_size)
            bar.set_description(f"epoch {epoch + 1}/{cfg.run.epochs}")
            position = train_one_epoch(
                model, optimizer, schedule, scaler, train_source, epoch, start_step, totals,
                seed=cfg.run.seed, info=info, device=device, amp_dtype=amp_dtype,
                channels_last=cfg.run.channels_last, label_smoothing=cfg.optim.label_smoothing,
                sync_every=sync_every, must_sync=must_sync, after_step=after_step,
            )
            complete = position >= len(train_source)
            stopped_early = not complete  # run.max_steps reached mid-epoch
            eval_start = time.perf_counter()
            # The bare model, not the DDP wrapper: ranks hold different numbers of val batches, and DDP's
            # forward would broadcast BatchNorm buffers (a collective) on each call.
            val = evaluate(raw_model, val_batches, num_classes, class_names, device, amp_dtype=amp_dtype,
                           channels_last=cfg.run.channels_last)
            check_validation(val, epoch, kept())  # best.pt never comes from a NaN evaluation
            train = reduce_totals(totals, device)
            seconds = train["seconds"] + (time.perf_counter() - eval_start)
            row = {
                "epoch": epoch + 1,
                "lr": optimizer.param_groups[0]["lr"],
                "train_loss": train["loss"], "train_acc": train["acc"],
                "val_loss": val.loss, "val_top1": val.top1, "val_top5": val.top5,
                "seconds": seconds, "images_per_s": train["count"] / max(train["seconds"], 1e-9),
                "data_wait_s": train["data_wait"], "data_wait_share": train["data_wait"] / max(train["seconds"], 1e-9),
            }
            rows.append(row)
            log(d2l_line(row))
            log(f"data wait, epoch {epoch + 1}: waited {row['data_wait_s']:.2f} s for batches, "
                f"{100 * row['data_wait_share']:.1f}% of {train['seconds']:.1f} s of training "
                f"({data_path(cfg, train_source)})", console=False)
            improved = val.top1 > best
            best = max(best, val.top1)
            if complete and schedule.end_epoch(val.top1):  # the plateau rule judges whole epochs only
                log(f"validation top-1 stopped improving: lr divided by {1 / cfg.optim.gamma:g} "
                    f"({schedule.drops} of at most {cfg.optim.max_drops})")
            if complete:
                totals = EpochTotals()
                next_position = (epoch + 1, 0)
            else:  # stay in this epoch, at the step reached: a resume continues from there
                next_position = (epoch, position)
            state = checkpoint(*next_position)
            with distributed.fail_together("saving the epoch's checkpoints and metrics"):
                if info.is_main:
                    write_metrics(paths.metrics, rows)
                    atomic_save(state, paths.last)
                    if improved:
                        atomic_save(state, paths.best)
                    draw_plots(paths, rows, raw_model, cfg)
            saved_step = global_step
            epoch, start_step = next_position
            if stopped_early:
                break
        bar.close()
        if info.is_main:
            log(f"best val top-1 {best:.4f}; results in {run_dir}")
        return FitResult(run_dir=run_dir, epochs_done=epoch, global_step=global_step, best_val_top1=best,
                         rows=rows, stopped_early=stopped_early)
    finally:
        stop.restore()
        if run_lock is not None:
            run_lock.release()
        distributed.cleanup()


# --- helpers fit() calls -----------------------------------------------------------------------------------------


CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS's requirement for deterministic results


def set_determinism(on: bool, device: torch.device) -> None:
    """--deterministic: deterministic kernels only (an error names any op that has none), no cuDNN autotuning.

    fit() sets CUBLAS_WORKSPACE_CONFIG before CUDA is first used; this repeats it for other callers."""
    if on and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on


def default_output_dir(cfg: TrainConfig) -> str:
    return str(Path("runs") / f"{cfg.recipe or cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")


@contextlib.contextmanager
def rank0_first(info: DistInfo, what: str = "preparing the data"):
    """Each machine's local rank 0 runs the block first (it may write the dataset and caches under
    $ALEXNET_CACHE), then that machine's other ranks run it and find the files done.

    The others wait in `fail_together`, not a bare barrier: when a first rank fails, they hear it at once and stop
    with its message. An error in the others' own run of the block is for the caller's `fail_together`."""
    if info.local_rank == 0:
        with distributed.fail_together(what):
            yield
    else:
        with distributed.fail_together(what):
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
        autocast = (torch.autocast(device_type=device.type, dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        try:
            with autocast:
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


# Off on the CPU, by measurement (benchmarks/README.md, "Prefetch and host syncs"): prefetch removes the wait for
# data (4 % of a demo epoch, 22 % with the seed note's rotation) but its thread competes with the step's own
# threads for the two cores; in back-to-back runs on a quiet machine the demo trained about 20 % faster without it.
PREFETCH_ON_CPU = False


def resolve_prefetch(prefetch: bool | None, device: torch.device) -> bool:
    """data.prefetch None (automatic): on for CUDA, where making a batch would otherwise leave the GPU idle; on the
    CPU what measured faster (PREFETCH_ON_CPU); off elsewhere (MPS: untested, and the producer would issue MPS work
    from a second thread)."""
    if prefetch is not None:
        return prefetch
    if device.type == "cuda":
        return True
    return PREFETCH_ON_CPU if device.type == "cpu" else False


def data_path(cfg: TrainConfig, source: CacheBatches | LoaderBatches) -> str:
    """How batches reach the step, for the per-epoch data-wait line."""
    if isinstance(source, CacheBatches):
        return f"uint8 cache, prefetch {'on' if source.prefetch else 'off'}"
    return f"pil loader, {cfg.data.workers} DataLoader workers"


def build_batches(cfg: TrainConfig, bundle: Any, image_size: int, in_channels: int, info: DistInfo,
                  device: torch.device) -> tuple[CacheBatches | LoaderBatches, Any]:
    """The training batch source and the validation batch iterable for this rank."""
    if cfg.data.loader == "cache":
        from alexnet.data.augment import BatchAugment
        from alexnet.data.cache import cache_split

        workers = cfg.data.workers or None
        train, val = cache_split(bundle, "train", workers=workers), cache_split(bundle, "val", workers=workers)
        generator = torch.Generator()  # BatchAugment draws on the CPU whatever the batch's device
        train_aug = BatchAugment(bundle.preset, image_size, bundle.mean, bundle.std, train=True, pca=bundle.pca,
                                 generator=generator, augment=cfg.data.augment, in_channels=in_channels)
        val_aug = BatchAugment(bundle.preset, image_size, bundle.mean, bundle.std, train=False,
                               in_channels=in_channels)
        source = CacheBatches(train.images, train.labels, train_aug, generator, cfg.run.batch_size, cfg.run.seed,
                              info, device, prefetch=resolve_prefetch(cfg.data.prefetch, device),
                              memory_format=torch.channels_last if cfg.run.channels_last else torch.contiguous_format)
        return source, CacheEval(val.images, val.labels, val_aug, cfg.run.batch_size, info, device)
    from alexnet.data.limits import loader_workers

    workers = loader_workers(cfg.data.workers)  # DataLoader processes, clamped to the machine's cores (0 stays 0)
    source = LoaderBatches(bundle.train, cfg.run.batch_size, cfg.run.seed, info, device, workers)
    return source, LoaderEval(bundle.val, cfg.run.batch_size, info, workers)


class CacheEval:
    """Validation batches from a uint8 cache: this rank's contiguous part of the split, centre view."""

    def __init__(self, images, labels, augment, batch_size: int, info: DistInfo, device: torch.device):
        self.images, self.labels, self.augment = images, labels, augment
        self.batch_size, self.device = batch_size, device
        self.part = torch.tensor_split(torch.arange(len(labels)), info.world_size)[info.rank]

    def __iter__(self):
        for chunk in self.part.split(self.batch_size):
            x = self.images[chunk].to(self.device, non_blocking=True)
            yield self.augment(x), self.labels[chunk]


class LoaderEval:
    def __init__(self, dataset, batch_size: int, info: DistInfo, workers: int):
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.part = torch.tensor_split(torch.arange(len(dataset)), info.world_size)[info.rank].tolist()

    def __iter__(self):
        subset = torch.utils.data.Subset(self.dataset, self.part)
        yield from torch.utils.data.DataLoader(subset, batch_size=self.batch_size, num_workers=self.workers)


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def build_optimizer(spec: OptimSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW with PyTorch's fused kernels where the parameters live on a device that has them: one
    kernel for the whole update instead of a dozen small ops per parameter tensor (the demo's step: 51 -> 44 ms on
    the 2-core build machine, `benchmarks/README.md`). Same update rule, rounded differently in the last bits."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(params) and all(p.device.type in FUSED_OPTIMIZER_DEVICES and p.is_floating_point() for p in params)
    options = {"lr": spec.lr, "weight_decay": spec.weight_decay, "fused": fused or None}
    if spec.opt == "sgd":
        return torch.optim.SGD(params, momentum=spec.momentum, **options)
    if spec.opt == "adam":
        return torch.optim.Adam(params, **options)
    return torch.optim.AdamW(params, **options)


def as_plain(config: Any) -> dict[str, Any]:
    import dataclasses

    return plain(dataclasses.asdict(config))


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


def d2l_line(row: dict[str, Any]) -> str:
    """The d2l note's per-epoch line, same format: `epoch 3, loss 0.2952, train acc 0.891, test acc 0.894, time 68.6 sec`."""
    return (f"epoch {row['epoch']}, loss {row['train_loss']:.4f}, train acc {row['train_acc']:.3f}, "
            f"test acc {row['val_top1']:.3f}, time {row['seconds']:.1f} sec")


def describe_run(cfg: TrainConfig, model: torch.nn.Module, bundle: Any, image_size: int, device: torch.device,
                 info: DistInfo, steps: int) -> str:
    params = sum(p.numel() for p in model.parameters())
    return (
        f"training {cfg.model.name} (width x{cfg.model.width_mult:g}, {params:,} parameters) on "
        f"{len(bundle.train)} train / {len(bundle.val)} val images, {len(bundle.class_names)} classes, "
        f"{image_size}x{image_size} px, preset {bundle.preset}" + ("" if cfg.data.preset else " (the data's own)")
        + f", loader {cfg.data.loader}; {cfg.optim.opt} lr "
        f"{cfg.optim.lr:g} ({cfg.optim.lr_schedule}), batch {cfg.run.batch_size} x {steps} steps/epoch, "
        f"{cfg.run.epochs} epochs, device {device}, amp {cfg.run.amp}"
        + (f", {info.world_size} ranks" if info.enabled else "")
    )


def truncate_metrics(path: Path, keep_epochs: int) -> list[dict[str, Any]]:
    """Rows of epochs 1..keep_epochs (a resumed run rewrites the later ones). A damaged file is an error naming
    the row, never rows silently dropped."""
    if not path.exists():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):  # line 1 is the header
            try:  # columns a run from an older version did not write stay empty
                rows.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()
                             if k is not None and v not in ("", None)})
                if "epoch" not in rows[-1]:
                    raise KeyError("epoch")
            except (ValueError, TypeError, KeyError) as e:
                raise DataError(f"{path}: line {number} is damaged ({e}); move the file away to resume without "
                                "the earlier epochs' rows") from None
    rows = [r for r in rows if r["epoch"] <= keep_epochs]
    write_metrics(path, rows)
    return rows


def write_config(cfg: TrainConfig, path: Path) -> None:
    """config.yaml, written whole or not at all (a copy for people: resume reads the checkpoint's config)."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METRIC_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                         for k in METRIC_COLUMNS for v in [row.get(k, "")]})
    atomic_write_text(path, text.getvalue())


def draw_plots(paths: RunPaths, rows: list[dict[str, Any]], model: Any, cfg: TrainConfig) -> None:
    """curves.png and filters.png, each through the atomic writer (matplotlib picks the format from `.png`)."""
    from alexnet.plots import plot_curves, plot_filters

    title = f"{cfg.model.name} ({cfg.recipe or 'custom'})"
    atomic_write(paths.curves, lambda tmp: plot_curves(rows, tmp, title=title), suffix=".png")
    atomic_write(paths.filters, lambda tmp: plot_filters(model.conv1.weight, tmp,
                                                         title=f"{cfg.model.name} conv1 filters"), suffix=".png")


class RunLog:
    """Lines for the user: printed (above the progress bar) and appended to log.txt, on rank 0 only."""

    def __init__(self, path: Path | None, enabled: bool):
        self.path, self.enabled = path, enabled

    def __call__(self, message: str, console: bool = True) -> None:
        if not self.enabled:
            return
        if console:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(message + "\n")


def make_bar(progress: bool | None, info: DistInfo, total: int):
    """tqdm over images (so its rate is images/s), on stderr, only on rank 0 and only when stderr is a terminal."""
    from tqdm import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    return tqdm(total=total, unit="img", unit_scale=True, dynamic_ncols=True, leave=False,
                disable=not (show and info.is_main), file=sys.stderr)


class StopFlag:
    """SIGTERM/SIGINT set a flag; the loop finishes its step, saves and stops. A second SIGINT stops at once."""

    def __init__(self):
        self.signum = 0
        self.previous: dict[int, Any] = {}  # the handlers to put back

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def install(self) -> None:
        """Catch SIGTERM/SIGINT until `restore()` (only the main thread may install signal handlers)."""
        import threading

        if threading.current_thread() is threading.main_thread() and not self.previous:
            self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    @contextlib.contextmanager
    def installed(self):
        self.install()
        try:
            yield self
        finally:
            self.restore()

    def agreed(self, device: torch.device, info: DistInfo) -> bool:
        """True on every rank when any rank was signalled (ranks must stop at the same step)."""
        if not info.enabled:  # nothing to agree on; and no tensor, whose .item() would wait for the GPU
            return bool(self.signum)
        flag = torch.tensor([float(self.signum)], device=device)
        distributed.all_reduce_sum(flag)
        if flag.item() and not self.signum:
            self.signum = signal.SIGTERM
        return bool(flag.item())



def resume_config(resume: str | Path, config_path: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The configuration of the run being resumed, with the user's YAML and flags on top. fit() then refuses
    changes that would not fit the checkpoint (model, classes, size).

    The base is the checkpoint's own config, the one its weights were trained with, and never config.yaml: that
    file is a copy for people to read, and one cut by a crash or edited by hand must not change (or silently
    default) a resumed run. Changes go through --config and flags."""
    from alexnet.config import load_yaml, merge, overrides_to_dict

    ckpt = load_checkpoint(resume, prefer="last")
    base = ckpt.get("config")
    if not isinstance(base, dict):
        raise CheckpointError(f"{ckpt['path']}: the checkpoint lacks its run's 'config'; cannot resume from it")
    user = load_yaml(config_path) if config_path is not None else {}
    user.pop("recipe", None)
    return TrainConfig.from_dict(merge(merge(base, user), overrides_to_dict(overrides or {})), origin="resume")
