"""The candidates of `--recipe cifar10-fast` (issue 24): how far a cuda-convnet net gets on CIFAR-10 in N epochs.

    python benchmarks/cifar10_candidates.py --data CIFAR10 --epochs 5 [--crop 4] [--width 1.5] [--lr 0.4] ...

A plain loop, kept apart from `alexnet train` so that settings can be tried quickly:
- the training images are one uint8 tensor in memory, decoded once through alexnet's own readers into --cache;
- each batch gets flips, and translations of up to --crop pixels (reflect-padded, one shift per eighth of the
  batch);
- SGD with Nesterov momentum and a one-cycle schedule, bf16 autocast (--amp 0 for fp32), channels_last;
- flip TTA at the end.

It prints the test top-1 and the seconds. What it measured is in benchmarks/README.md, in "CIFAR-10 against the
authors' 2011 GPU".
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F


def arrays(data: str, cache: str) -> dict[str, torch.Tensor]:
    """(N, 3, 32, 32) uint8 images and int64 labels of both splits, decoded once into `cache`."""
    if not os.path.exists(cache):
        from alexnet.data import build_datasets

        bundle = build_datasets(data, image_size=32, statistics=False)
        out = {}
        for split, ds in (("train", bundle.train), ("test", bundle.val)):
            out[f"{split}_x"] = np.stack([np.asarray(ds.load_pil(i).convert("RGB")) for i in range(len(ds))])
            out[f"{split}_y"] = np.asarray(ds.targets)
        np.savez(cache, **out)
    d = np.load(cache)
    return {k: torch.from_numpy(d[k]).permute(0, 3, 1, 2).contiguous() if k.endswith("_x") else torch.from_numpy(d[k])
            for k in d.files}


def augment(x: torch.Tensor, crop: int) -> torch.Tensor:
    """Flips, and translations of up to `crop` pixels shared by each eighth of the batch."""
    if crop:
        padded = F.pad(x, (crop,) * 4, mode="reflect")
        out = torch.empty_like(x)
        n = len(x)
        for k in range(8):
            part = slice(k * n // 8, (k + 1) * n // 8)
            dy, dx = torch.randint(0, 2 * crop + 1, (2,)).tolist()
            out[part] = padded[part, :, dy:dy + 32, dx:dx + 32]
        x = out
    flip = torch.rand(len(x)) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR-10 in any form `alexnet train --data` reads")
    p.add_argument("--cache", default="/tmp/cifar10_candidates.npz", help="the decoded arrays, made on first use")
    p.add_argument("--model", default="cc-80sec")
    p.add_argument("--norm", default="bn")
    p.add_argument("--init", default="kaiming")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=float, default=5)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--crop", type=int, default=4, help="translations of up to this many pixels (0: flips only)")
    p.add_argument("--amp", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    start = time.time()
    torch.manual_seed(a.seed)
    d = arrays(a.data, a.cache)
    mean = d["train_x"].float().mean((0, 2, 3), keepdim=True)
    std = d["train_x"].float().std((0, 2, 3), keepdim=True)

    def prep(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - mean) / std).contiguous(memory_format=torch.channels_last)

    from alexnet.models import build_model

    model = build_model(a.model, norm=a.norm, init=a.init, width_mult=a.width).to(memory_format=torch.channels_last)
    decay = [q for q in model.parameters() if q.ndim > 1]
    rest = [q for q in model.parameters() if q.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd}, {"params": rest, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True)
    n = len(d["train_x"])
    per_epoch = n // a.batch
    total = int(a.epochs * per_epoch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total, pct_start=0.25,
                                                   anneal_strategy="linear", div_factor=10, final_div_factor=100)
    trained = time.time()
    step = 0
    while step < total:
        order = torch.randperm(n)
        for b in range(min(per_epoch, total - step)):
            idx = order[b * a.batch:(b + 1) * a.batch]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.amp)):
                loss = F.cross_entropy(model(prep(augment(d["train_x"][idx], a.crop))), d["train_y"][idx],
                                       label_smoothing=a.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            step += 1
    train_s = time.time() - trained
    model.eval()
    correct = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(a.amp)):
        for b in range(0, len(d["test_x"]), 1000):
            x = prep(d["test_x"][b:b + 1000])
            probs = model(x).float().softmax(1) + model(x.flip(3)).float().softmax(1)
            correct += int((probs.argmax(1) == d["test_y"][b:b + 1000]).sum())
    print(f"{vars(a)} test top-1 {correct / len(d['test_x']):.4f}, training {train_s:.1f} s, "
          f"all {time.time() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main()
