"""What random-resized crops of a training batch cost on this machine: per image, one grid_sample for the batch, or
in groups that share a crop size (data.augment.random_resized_crop, what `--crop-scale` runs).

    python benchmarks/bench_crops.py [--size 96] [--stored 96] [--batch 64] [--repeats 30]

Median milliseconds per batch of uint8 images, each way, in one process, beside a training step of the fast
recipe's model at the same size (so the share of the step is a ratio measured in the same run).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

from alexnet.data.augment import random_resized_crop
from alexnet.models import build_model


def per_image(x: torch.Tensor, size: int, scale: float, g: torch.Generator) -> torch.Tensor:
    """torchvision's way: one crop size and one resize per image."""
    out = []
    for img in x:
        area = float(torch.empty(1).uniform_(scale, 1.0, generator=g))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)))
        w = max(1, min(x.shape[-1], round(math.sqrt(area * ratio) * x.shape[-1])))
        h = max(1, min(x.shape[-2], round(math.sqrt(area / ratio) * x.shape[-2])))
        t = int(torch.randint(0, x.shape[-2] - h + 1, (1,), generator=g))
        s = int(torch.randint(0, x.shape[-1] - w + 1, (1,), generator=g))
        crop = img[None, :, t : t + h, s : s + w]
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out).float().div_(255)


def one_grid(x: torch.Tensor, size: int, scale: float, g: torch.Generator) -> torch.Tensor:
    """One affine grid per image, one grid_sample for the batch (float, no antialiasing)."""
    B = x.shape[0]
    area = torch.empty(B).uniform_(scale, 1.0, generator=g)
    ratio = torch.empty(B).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g).exp()
    w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = w, h
    theta[:, 0, 2], theta[:, 1, 2] = (torch.rand(B, generator=g) * 2 - 1) * (1 - w), (torch.rand(B, generator=g) * 2 - 1) * (1 - h)
    grid = F.affine_grid(theta, [B, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x.float() / 255, grid, mode="bilinear", padding_mode="border", align_corners=False)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--stored", type=int, default=96, help="side of the cached images the crops are cut from")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, args.stored, args.stored), dtype=torch.uint8)
    model = build_model("alexnet-bn", num_classes=2, image_size=args.size, width_mult=0.25)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())
    images = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 2, (args.batch,))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        opt.step()

    step_ms = median_ms(step, args.repeats)
    print(f"batch {args.batch}, {args.stored} px stored -> {args.size} px, {torch.get_num_threads()} threads; "
          f"a training step of alexnet-bn x0.25: {step_ms:.1f} ms")
    print("| crops | ms per batch (median) | share of the step |\n|---|---:|---:|")
    for name, fn in (("per image (torchvision's way)", per_image), ("one grid_sample", one_grid),
                     ("groups of 8 (ours)", random_resized_crop)):
        ms = median_ms(lambda fn=fn: fn(x, args.size, 0.35, g), args.repeats)
        print(f"| {name} | {ms:.1f} | {ms / step_ms:.2f} |")


if __name__ == "__main__":
    main()
