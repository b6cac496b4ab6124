"""Evaluation batches from a cached split: the one loop from uint8 images to (float batch, labels).

Validation during training, `alexnet eval`, int8 calibration and the int8 parity check all read a split the same
way: pick which images and in what order (all of them, a rank's contiguous part, a seeded sample, the first few),
cut that order into batches, augment each uint8 batch (BatchAugment, evaluation transform) on the device it was
moved to. `EvalBatches` is that loop, written once; it is re-iterable, so one object serves every epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class EvalBatches:
    """(augment(images[chunk]), labels[chunk]) for consecutive chunks of `indices` (default: every image in order).

    `images` is (N, C, H, W) uint8, `labels` (N,) int64 (a `CachedImages`' two tensors). With `device`, each uint8
    chunk is moved there before `augment` (a quarter of the bytes of the float batch); labels stay where they are
    (`evaluate` moves them)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor],
                 batch_size: int, indices: torch.Tensor | None = None, device: torch.device | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.images, self.labels, self.augment = images, labels, augment
        self.batch_size, self.device = batch_size, device
        self.indices = torch.arange(len(labels)) if indices is None else indices

    def __len__(self) -> int:
        """Number of batches."""
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in self.indices.split(self.batch_size):
            x = self.images[chunk]
            if self.device is not None:
                x = x.to(self.device, non_blocking=True)
            yield self.augment(x), self.labels[chunk]


def rank_part(n: int, rank: int, world_size: int) -> torch.Tensor:
    """This rank's contiguous share of indices 0..n-1 (torch.tensor_split: the first n % world_size ranks get one
    more): every image is evaluated by exactly one rank."""
    return torch.tensor_split(torch.arange(n), world_size)[rank]


def seeded_order(n: int, seed: int = 0) -> torch.Tensor:
    """A permutation of 0..n-1 drawn from its own generator: the same for a given seed, whatever the global RNG."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))
