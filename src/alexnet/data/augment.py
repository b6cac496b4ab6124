"""Whole-batch augmentation on uint8 tensors (the fast path), on whatever device the batch is on.

Same presets and same order of operations as the PIL path (transforms.py), applied to a (B, C, H, W) uint8 batch
that the cache stored at `resize_size(preset, S)`:

- `paper`, training: a random S x S crop per image, a horizontal flip with p = 0.5, PCA colour noise; evaluation:
  the centre S x S crop (or `ten_crop`: for every preset, from the larger square `ten_crop_size(S)`).
- `seed` with augment=True: a random rotation in [-20, 20] degrees (zero fill, like RandomRotation) and a flip.
- `d2l`, and every preset at evaluation: no randomness.
- any preset with `crop_scale` s > 0, training: random-resized crops (area a fraction in [s, 1] of the stored
  image, aspect ratio in [3/4, 4/3], as torchvision's RandomResizedCrop) resized to S x S, and flips
  (`random_resized_crop`). Its strength is what a recipe tunes to the passes each image gets.

Every random number comes from the torch.Generator given (on the CPU, whatever the batch's device), drawn in a fixed
order, so a run that saves `generator.get_state()` and restores it augments the next batch bit-for-bit the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from alexnet.data.transforms import PCA_SIGMA, check_preset, default_mean_std, default_pca, resize_size, ten_crop_size


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    # The same rounding as torchvision's CenterCrop, so both paths take the same pixels.
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def _fit(x: torch.Tensor, size: int) -> torch.Tensor:
    """A batch stored smaller than needed (or not square) is resized to at least `size` on each side."""
    h, w = x.shape[-2:]
    if h >= size and w >= size:
        return x
    out = F.interpolate(
        x.float(), size=(max(h, size), max(w, size)), mode="bilinear", antialias=True, align_corners=False
    )
    return out.round().clamp(0, 255).to(x.dtype) if not x.is_floating_point() else out


def five_crop(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Top-left, top-right, bottom-left, bottom-right and centre crops of a (..., H, W) batch (torchvision's order)."""
    h, w = x.shape[-2:]
    return [
        x[..., :size, :size],
        x[..., :size, w - size :],
        x[..., h - size :, :size],
        x[..., h - size :, w - size :],
        _center_crop(x, size),
    ]


def ten_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's 10 test crops, batched: (B, C, H, W) -> (B, 10, C, size, size), any dtype.

    The five crops of the image, then the five crops of its mirror image, as torchvision's TenCrop orders them.
    """
    x = _fit(x, size)
    crops = five_crop(x, size) + five_crop(x.flip(-1), size)
    return torch.stack(crops, dim=1)


def squash(x: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 (B, C, H, W) batch resized to size x size whatever its aspect (the seed and d2l presets' rule), on
    uint8, where torch's antialiased resize is fast."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


CROP_GROUP = 8  # images that share one crop size (each with its own position and flip): one resize per group


def random_resized_crop(x: torch.Tensor, size: int, scale: float, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float (B, C, size, size) in [0, 1]: crops of area fraction U(scale, 1) and log-uniform
    aspect ratio in [3/4, 4/3] (clipped to the image), each at a uniform position and mirrored with p = 0.5, resized
    bilinearly. Unlike torchvision's RandomResizedCrop, CROP_GROUP consecutive images share a crop size, so that a
    batch is resized in B / CROP_GROUP calls (one call per image, or one grid_sample for the batch, cost 1.5-2x as
    much on a 2-core CPU, a quarter of a step: benchmarks/README.md); the batch's order is random, so the groups
    are too."""
    B, C, H, W = x.shape
    out = torch.empty(B, C, size, size, dtype=torch.float32, device=x.device)
    for start in range(0, B, CROP_GROUP):
        n = min(CROP_GROUP, B - start)
        area = float(torch.empty(1).uniform_(scale, 1.0, generator=generator))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)))
        w = max(1, min(W, round(math.sqrt(area * ratio) * W)))
        h = max(1, min(H, round(math.sqrt(area / ratio) * H)))
        top = torch.randint(0, H - h + 1, (n,), generator=generator).tolist()
        left = torch.randint(0, W - w + 1, (n,), generator=generator).tolist()
        mirror = (torch.rand(n, generator=generator) < 0.5).tolist()
        crops = [x[start + i, :, t : t + h, s : s + w] for i, (t, s) in enumerate(zip(top, left, strict=True))]
        # mirrored before the resize, on the small uint8 crop (a bilinear resize commutes with the mirror)
        crops = torch.stack([c.flip(-1) if m else c for c, m in zip(crops, mirror, strict=True)])
        if (h, w) != (size, size):  # on uint8: torch's fast resize path (on float, antialias costs ~50x more)
            crops = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + n].copy_(crops)  # uint8 -> float
    return out.div_(255.0)


@dataclass(frozen=True)
class AugmentSettings:
    """What a BatchAugment does besides the preset, the size and the normalisation: its keyword arguments."""

    train: bool = True  # False: the evaluation transform (centre crop, or ten_crop), no randomness
    augment: bool | None = None  # None: the preset's default (paper: on, seed and d2l: off)
    ten_crop: bool = False
    pca: tuple | None = None  # (eigval, eigvec) of paper's colour noise; ImageNet's when None
    sigma: float = PCA_SIGMA  # the standard deviation of the colour noise's alpha
    in_channels: int | None = None  # default: as many as `mean` has, else 3
    crop_scale: float = 0.0  # > 0: random-resized crops of at least this area fraction, and flips (see above)


class BatchAugment:
    """uint8 (B, C, H, W) -> float (B, C, S, S) normalised, on the batch's device; see the module docstring.

    `settings` are AugmentSettings' fields, by keyword (train=False, augment=True, pca=..., ...); an unknown one is a
    TypeError. `generator` draws every random number."""

    def __init__(
        self,
        preset: str,
        image_size: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *,
        generator: torch.Generator | None = None,
        **settings: Any,
    ):
        s = AugmentSettings(**settings)
        channels = s.in_channels or len(mean or ()) or 3
        check_preset(preset, image_size, channels)
        d_mean, d_std = default_mean_std(preset, channels)
        self.preset, self.size, self.train = preset, image_size, s.train
        self.augment = (preset == "paper") if s.augment is None else s.augment
        self.ten_crop = s.ten_crop
        self.sigma = s.sigma
        self.crop_scale = s.crop_scale
        self.generator = generator
        self.mean = torch.tensor(mean or d_mean, dtype=torch.float32)
        self.std = torch.tensor(std or d_std, dtype=torch.float32)
        eigval, eigvec = s.pca or default_pca(channels)
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    @classmethod
    def for_checkpoint(cls, ckpt: Any, ten_crop: bool = False) -> BatchAugment:
        """The evaluation transform a checkpoint records (preset, size, mean, std, channels): what eval, int8
        calibration and the int8 parity check all apply to cached images."""
        p = ckpt.preprocessing  # an alexnet.store.checkpoint.Checkpoint
        return cls(p.preset, p.image_size, p.mean, p.std, train=False, ten_crop=ten_crop, in_channels=p.in_channels)

    def _to_float(self, x: torch.Tensor, shift: torch.Tensor | None = None, out: torch.Tensor | None = None):
        """uint8 (..., C, H, W) -> (x / 255 + shift - mean) / std, in place in one float buffer: the per-image colour
        shift (B, C) is folded into the per-channel bias. Fresh large buffers cost page faults on every batch
        (measured: 3 ops into one new buffer ~40 ms, into a reused one ~12 ms, for 64 x 3 x 227 x 227 on one
        core), hence the optional `out`."""
        c = x.shape[-3]
        lead = (1,) * (x.dim() - 3)
        std = self.std.to(x.device)
        scale = (1.0 / (255.0 * std)).view(*lead, c, 1, 1)
        bias = -self.mean.to(x.device) / std  # (C,)
        if shift is not None:
            bias = bias + shift.to(x.device) / std  # (B, C)
            bias = bias.view(x.shape[0], *lead[1:], c, 1, 1)
        else:
            bias = bias.view(*lead, c, 1, 1)
        if out is None:
            out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
        elif out.shape != x.shape or out.dtype != torch.float32:
            raise ValueError(f"out must be float32 of shape {tuple(x.shape)}, got {out.dtype} {tuple(out.shape)}")
        out.copy_(x)
        return out.mul_(scale).add_(bias)

    def __call__(self, batch: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Augments one batch; `out` (float32, the result's shape) is written into instead of a new tensor."""
        if batch.dim() != 4:
            raise ValueError(f"BatchAugment expects (B, C, H, W), got shape {tuple(batch.shape)}")
        S = self.size
        if self.ten_crop:  # cut from ten_crop_size(S) (eval caches at that size); a batch stored smaller is enlarged
            return self._to_float(ten_crop(_fit(batch, ten_crop_size(S)), S), out=out)  # (B, 10, C, S, S)
        # A batch stored smaller than the preset's resize size is resized up first (cache_split(size=...)).
        x = _fit(batch, S) if batch.shape[-1] >= S and batch.shape[-2] >= S else _fit(batch, resize_size(self.preset, S))
        if self.train and self.crop_scale > 0:  # from the stored photo, whatever its size (data.train_cache_scale)
            return self._normalize(random_resized_crop(x, S, self.crop_scale, self.generator), out)
        if self.preset != "paper" and x.shape[-1] > S and x.shape[-2] > S:
            # seed and d2l squash every photo to S x S; a cache kept larger (data.train_cache_scale) is squashed too
            x = squash(x, S)
        B = x.shape[0]
        randomize = self.train and self.augment and self.preset != "d2l"
        if randomize and self.preset == "paper":
            h, w = x.shape[-2:]
            g = self.generator
            oy = torch.randint(0, h - S + 1, (B,), generator=g).tolist()
            ox = torch.randint(0, w - S + 1, (B,), generator=g).tolist()
            flip = (torch.rand(B, generator=g) < 0.5).tolist()
            alpha = torch.randn(B, self.eigval.numel(), generator=g) * self.sigma
            # Crop and flip on uint8 (a quarter of the bytes of float), one copy into the stacked batch.
            crops = [x[i, :, oy[i] : oy[i] + S, ox[i] : ox[i] + S] for i in range(B)]
            x = torch.stack([c.flip(-1) if f else c for c, f in zip(crops, flip, strict=True)])  # (B, C, S, S)
            # The paper's colour noise: eigvec @ (alpha * eigval), one draw per image, added to every pixel.
            shift = (alpha * self.eigval) @ self.eigvec.T  # (B, C)
            return self._to_float(x, shift, out=out)
        if randomize:  # seed with the note's augmentation: rotation in [-20, 20] degrees, then a flip
            g = self.generator
            angle = (torch.rand(B, generator=g) * 40 - 20) * torch.pi / 180
            flip = torch.rand(B, generator=g) < 0.5
            x = _center_crop(x, S).float() / 255.0
            cos, sin = torch.cos(angle), torch.sin(angle)
            theta = torch.zeros(B, 2, 3)
            theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
            grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            x = torch.where(flip.to(x.device).view(B, 1, 1, 1), x.flip(-1), x)
            return self._normalize(x, out)
        return self._to_float(_center_crop(x, S), out=out)

    def _normalize(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        """float (B, C, S, S) in [0, 1] -> (x - mean) / std, into `out` when given."""
        x = (x - self.mean.to(x.device).view(1, -1, 1, 1)) / self.std.to(x.device).view(1, -1, 1, 1)
        return x if out is None else out.copy_(x)

    def __repr__(self) -> str:
        return f"BatchAugment(preset={self.preset!r}, size={self.size}, train={self.train}, augment={self.augment})"
