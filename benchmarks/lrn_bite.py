"""How much a trained net's response normalisation changes its input: is it doing anything? (issue 24, lrn-cifar)

    nice -n 10 .venv/bin/python benchmarks/lrn_bite.py runs/ablate-lrn-cifar/runs/RUN [RUN ...] [--images 1000]

For each run (a checkpoint with LocalResponseNorm layers: the paper's lrn1/lrn2, cuda-convnet's rnorm1/rnorm2), the
first `--images` validation images of the run's own data go through its best.pt in eval mode, and at each
normalisation layer two numbers are printed: the relative change it makes, sum|out - in| / sum|in| (0: the identity),
and the mean divisor in / out over the positions where the input is not 0. With cuda-convnet's cmrnorm (k = 1,
scale 0.001 over 9 maps) on inputs of unit variance the change is near 0; on the file's 0-255 inputs it grows with
the activations. The numbers go with the study's table in README.md.
"""

from __future__ import annotations

import argparse

import torch

from alexnet.data import build_from_description
from alexnet.data.transforms import build_transform
from alexnet.errors import AlexNetError
from alexnet.store.checkpoint import load_checkpoint


def bite(run: str, images: int) -> list[tuple[str, float, float]]:
    ckpt = load_checkpoint(run, prefer="best")
    model = ckpt.build_model()
    bundle = build_from_description(ckpt.data_description(), statistics=False)
    p = ckpt.preprocessing  # the checkpoint's own mean and std (1/255 for --pixel-scale 255), as eval feeds them
    transform = build_transform(p.preset, p.image_size, False, p.mean, p.std, p.in_channels)
    batch = torch.stack([transform(bundle.val.load_pil(i)) for i in range(min(images, len(bundle.val)))])
    caught: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: caught.__setitem__(name, (args[0], out)))
             for name, module in model.named_layers() if "ResponseNorm" in type(module).__name__]
    with torch.no_grad():
        model(batch)
    for h in hooks:
        h.remove()
    rows = []
    for name, (x, y) in caught.items():
        change = float((y - x).abs().sum() / x.abs().sum().clamp_min(1e-30))
        nonzero = x.abs() > 1e-12
        divisor = float((x[nonzero] / y[nonzero]).mean()) if nonzero.any() else float("nan")
        rows.append((name, change, divisor))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders or checkpoints")
    p.add_argument("--images", type=int, default=1000, help="validation images per run (default 1000)")
    args = p.parse_args()
    print("| run | layer | relative change sum abs(out - in) / sum abs(in) | mean divisor in / out |")
    print("|---|---|---:|---:|")
    for run in args.runs:
        try:
            rows = bite(run, args.images)
        except (AlexNetError, OSError) as e:
            raise SystemExit(f"lrn_bite.py: {e}") from None
        if not rows:
            print(f"| {run} | (no LocalResponseNorm layer) | - | - |")
        for name, change, divisor in rows:
            print(f"| {run} | {name} | {change:.4f} | {divisor:.4f} |")


if __name__ == "__main__":
    main()
