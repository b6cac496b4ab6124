"""Where each step's images come from, and the validation batches: one object per path, for this rank.

- `TrainBatches`, the fast path: the split decoded once into one uint8 tensor (alexnet.data.cache), each step's batch
  indexed from it and augmented whole on the device (alexnet.data.augment), optionally made ahead in a thread.
- `LoaderBatches`, what the notes do: a DataLoader that decodes every image every epoch.

Both yield, for steps start..end of an epoch, `(step, images, labels, global batch size)`; a batch is a function of
(seed, epoch, step, rank) alone (`BatchPlan`), so it is the same after a resume, with prefetch on or off. The batch
size is GLOBAL: each torchrun rank takes a contiguous part of every batch (`distributed.shard`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from alexnet.config import TrainConfig
from alexnet.config.values import adapt_fields
from alexnet.data.augment import BatchAugment, squash
from alexnet.data.batches import EvalBatches, rank_part
from alexnet.data.cache import cache_split, typical_side
from alexnet.data.limits import loader_workers
from alexnet.data.prefetch import Prefetcher
from alexnet.data.transforms import resize_size
from alexnet.runtime import distributed
from alexnet.runtime.distributed import DistInfo
from alexnet.training.balance import epoch_order
from alexnet.training.determinism import PURPOSE_AUGMENT, derive_seed


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches only (an incomplete last batch is dropped, as each epoch's order differs); one batch of
    everything when the set is smaller than a batch."""
    return max(1, n // batch_size)


def batch_indices(perm: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    return perm[step * batch_size : (step + 1) * batch_size]


PREFETCH_DEPTH = 1  # batches queued ahead of the step (one more is being made): enough when a step outlasts a batch


@dataclass(frozen=True)
class BatchPlan:
    """Which images each step of this rank gets, and where they go: the same for both batch sources."""

    batch_size: int  # GLOBAL: every rank takes its contiguous part of each batch
    seed: int  # the epoch's order and each batch's augmentation are drawn from (seed, epoch, step, rank)
    info: DistInfo
    device: torch.device
    balanced: bool = False  # each epoch draws the classes equally (training.balance)


class TrainBatches:
    """The fast path: the split as one uint8 tensor (N, C, H, W), augmented a whole batch at a time.

    Decoding JPEGs is done once (alexnet.data.cache); each step indexes the tensor, moves the uint8 batch to the
    device (4x fewer bytes than float) and augments it there. With `prefetch`, a background thread makes the next
    batches while the model computes (alexnet.data.prefetch); every batch is a function of (seed, epoch, step,
    rank) alone, so the batches are bit-identical with prefetch on or off and after a resume.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: Any, generator: torch.Generator,
                 plan: BatchPlan, prefetch: bool = False, memory_format: torch.memory_format = torch.contiguous_format):
        self.images, self.labels = images, labels
        self.balance_labels = labels if plan.balanced else None  # each epoch draws the classes equally
        # The buffers are laid out as the model wants its input, so the uint8 -> float copy also changes the layout
        # and the step's .contiguous(memory_format) costs nothing (one 64 x 3 x S x S copy less per step).
        self.memory_format = memory_format
        self.augment, self.generator = augment, generator
        self.batch_size, self.seed, self.info, self.device = plan.batch_size, plan.seed, plan.info, plan.device
        self.prefetch = prefetch
        self.steps = steps_per_epoch(len(labels), plan.batch_size)
        # On the CPU, output buffers are reused: a fresh float batch per step is page-faulted into existence every
        # time (benchmarks/README.md). A buffer is free again once its step's backward is done. Without prefetch
        # that is before the next batch is made (one buffer); with it, while step k computes, batch k + 1..k + depth
        # wait in the queue and k + depth + 1 is being made, so step s writes buffer s mod (depth + 2). GPUs get a
        # fresh tensor from PyTorch's caching allocator instead (cheap there, and safe across streams).
        self.ring = PREFETCH_DEPTH + 2 if prefetch else 1
        self.buffers: dict[tuple[int, ...], list[torch.Tensor]] = {}
        # On CUDA the producer copies and augments on its own stream, so that work overlaps the step's kernels.
        self.stream = torch.cuda.Stream(plan.device) if prefetch and plan.device.type == "cuda" else None

    def __len__(self) -> int:
        return self.steps

    def fit_images_to_input(self) -> None:
        """Squash a training cache kept larger than the input (data.train_cache_scale) to the input once, for a run
        that takes no random-resized crops, instead of in every batch (a resize of every image of every step). The
        same resize BatchAugment applies per batch, image by image: the batches do not change."""
        a, side = self.augment, min(self.images.shape[-2:])
        if a.crop_scale or a.preset == "paper" or side <= a.size:
            return
        self.images = torch.cat([squash(chunk, a.size) for chunk in self.images.split(256)])

    def describe(self) -> str:
        """How batches reach the step, for the per-epoch data-wait line."""
        return f"uint8 cache, prefetch {'on' if self.prefetch else 'off'}"

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, int]]:
        """(step, images, labels, global batch size) for steps start..end of `epoch`, this rank's part only.

        Close the iterator (contextlib.closing) when leaving early: that stops and joins the prefetch thread."""
        if not self.prefetch:
            for step, x, y, n, _ in self._make(epoch, start):
                yield step, x, y, n
            return
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
        perm = epoch_order(len(self.labels), self.seed, epoch, self.balance_labels)
        cuda = self.device.type == "cuda"
        for step in range(start, self.steps):
            idx = batch_indices(perm, step, self.batch_size)
            local = distributed.shard(idx, self.info)
            # Each batch's randomness is seeded by its position alone: no state carries over from earlier batches,
            # so it does not matter which thread makes it, or how far ahead.
            self.generator.manual_seed(derive_seed(self.seed, epoch, step, self.info.rank, PURPOSE_AUGMENT))
            if cuda:  # gathered straight into pinned memory, so that the copy to the GPU is asynchronous
                x = torch.empty((len(local), *self.images.shape[1:]), dtype=self.images.dtype, pin_memory=True)
                torch.index_select(self.images, 0, local, out=x)
                y = self.labels[local].pin_memory()
            else:  # index_select copies whole rows: much faster than x[idx] on a uint8 (N, C, H, W) tensor
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

    def __init__(self, dataset: Any, plan: BatchPlan, workers: int):
        self.dataset, self.batch_size, self.seed = dataset, plan.batch_size, plan.seed
        self.balance_labels = torch.tensor(dataset.targets) if plan.balanced else None  # as TrainBatches
        self.info, self.device, self.workers = plan.info, plan.device, workers
        self.steps = steps_per_epoch(len(dataset), plan.batch_size)

    def __len__(self) -> int:
        return self.steps

    def describe(self) -> str:
        return f"pil loader, {self.workers} DataLoader workers"

    def batches(self, epoch: int, start: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, int]]:
        perm = epoch_order(len(self.dataset), self.seed, epoch, self.balance_labels)
        plan = [batch_indices(perm, s, self.batch_size) for s in range(start, self.steps)]
        local = [distributed.shard(idx, self.info).tolist() for idx in plan]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=local, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            generator=torch.Generator().manual_seed(derive_seed(self.seed, epoch, start, PURPOSE_AUGMENT)),
        )
        for offset, (x, y) in enumerate(loader):
            torch.manual_seed(derive_seed(self.seed, epoch, start + offset, self.info.rank, PURPOSE_AUGMENT))
            yield start + offset, x.to(self.device, non_blocking=True), y.to(self.device), len(plan[offset])


# Off on the CPU, by measurement (benchmarks/README.md, "Prefetch and host syncs"): the producer thread competes with
# the step's own threads for the cores, and costs more than the wait for data it removes.
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


# The largest side data.train_cache_scale stores (the paper's resize side): beyond it a larger copy costs memory
# (9,469 Imagenette photos at 256 px: 1.9 GB) and adds little detail to photos of a few hundred pixels.
MAX_TRAIN_CACHE_SIDE = 256


def train_stored_size(cfg: TrainConfig, preset: str, image_size: int, photo_side: int | None = None) -> int | None:
    """The side the training split's cache stores: data.train_cache_scale x the preset's resize size, at most
    MAX_TRAIN_CACHE_SIDE and the photos' own shorter side (`photo_side`: a larger copy would only enlarge them, as
    32 px CIFAR photos at 192 px would take 5.5 GB), never less than the resize size. None: the resize size, the
    cache's default."""
    base, scale = resize_size(preset, image_size), cfg.data.train_cache_scale
    stored = max(base, min(round(base * scale), MAX_TRAIN_CACHE_SIDE, photo_side or MAX_TRAIN_CACHE_SIDE))
    return stored if stored != base else None


def build_batches(cfg: TrainConfig, bundle: Any, image_size: int, in_channels: int, info: DistInfo,
                  device: torch.device) -> tuple[TrainBatches | LoaderBatches, EvalBatches | LoaderEval]:
    """The training batch source and the validation batch iterable for this rank."""
    plan = BatchPlan(cfg.run.batch_size, cfg.run.seed, info, device, balanced=cfg.data.balanced_sampler)
    if cfg.data.loader == "cache":
        workers = cfg.data.workers or None
        side = typical_side(bundle.train) if cfg.data.train_cache_scale != 1.0 else None
        stored = train_stored_size(cfg, bundle.preset, image_size, side)
        train, val = cache_split(bundle, "train", size=stored, workers=workers), cache_split(bundle, "val", workers=workers)
        generator = torch.Generator()  # BatchAugment draws on the CPU whatever the batch's device
        train_aug = BatchAugment(bundle.preset, image_size, bundle.mean, bundle.std, train=True, pca=bundle.pca,
                                 generator=generator, augment=cfg.data.augment, in_channels=in_channels,
                                 sigma=cfg.data.pca_sigma, crop_scale=cfg.data.crop_scale)
        val_aug = BatchAugment(bundle.preset, image_size, bundle.mean, bundle.std, train=False,
                               in_channels=in_channels)
        source = TrainBatches(train.images, train.labels, train_aug, generator, plan,
                              prefetch=resolve_prefetch(cfg.data.prefetch, device),
                              memory_format=torch.channels_last if cfg.run.channels_last else torch.contiguous_format)
        if "data.crop_scale" not in adapt_fields(cfg.run.adapt):  # else the run's length decides (training.adapt)
            source.fit_images_to_input()
        # This rank's contiguous part of the split, centre view (ranks hold different numbers of batches).
        part = rank_part(len(val.labels), info.rank, info.world_size)
        return source, EvalBatches(val.images, val.labels, val_aug, cfg.run.batch_size, indices=part, device=device)
    workers = loader_workers(cfg.data.workers)  # DataLoader processes, clamped to the machine's cores (0 stays 0)
    source = LoaderBatches(bundle.train, plan, workers)
    return source, LoaderEval(bundle.val, cfg.run.batch_size, info, workers)


class LoaderEval:
    """Validation batches of the PIL path: this rank's contiguous part of the split, through a DataLoader."""

    def __init__(self, dataset, batch_size: int, info: DistInfo, workers: int):
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers
        self.part = rank_part(len(dataset), info.rank, info.world_size).tolist()

    def __iter__(self):
        subset = torch.utils.data.Subset(self.dataset, self.part)
        yield from torch.utils.data.DataLoader(subset, batch_size=self.batch_size, num_workers=self.workers)



BatchSource = TrainBatches | LoaderBatches  # what train_one_epoch takes: len() steps, .batches(epoch, start)
