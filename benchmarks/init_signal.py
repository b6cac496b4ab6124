"""Which init lets the paper's AlexNet (no BatchNorm) learn at all? (issue 25, the paper-imagenette recipe)

    nice -n 10 .venv/bin/python benchmarks/init_signal.py --data /tmp/data/imagenette [--per-class 13] [--steps 60]

One batch of real photos (`--per-class` from each class of DATA's training split, resized and centre-cropped to the
recipe's 131 px, normalised by the batch's own mean and std, or kept on 0-255 as the paper fed them) goes through
the recipe's model (alexnet x0.5, LRN, two towers, dropout 0.5) under each init. Printed per init and input scale:
- fc7 / conv1: the standard deviation of fc7's output over conv1's (about 1: the signal keeps its scale through the
  net; far below 1: the logits hardly depend on the image);
- how far the logits vary with the image: the std over the batch of each logit, averaged over classes (the paper's
  biases of 1 give large logits that are nearly the same for every image);
- the loss on that same batch after 0, 20, 40 and `--steps` steps of the recipe's SGD (lr 0.01, momentum 0.9,
  weight decay 5e-4): a net that can learn anything learns one batch by heart; ln(classes) means it learned nothing.
The table goes with README.md, "The paper's recipe on Imagenette".
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from alexnet.data import load_image
from alexnet.errors import AlexNetError
from alexnet.models import build_model

INITS = ("paper", "paper-bias0", "default", "kaiming", "paper-he")
SIZE = 131


def one_batch(data: str, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torchvision.transforms.functional as TF

    rng = random.Random(seed)
    classes = sorted(p for p in (Path(data) / "train").iterdir() if p.is_dir())
    if not classes:
        raise SystemExit(f"{data}/train: no class folders")
    images, labels = [], []
    for label, folder in enumerate(classes):
        files = sorted(p for p in folder.iterdir() if p.is_file())
        for path in rng.sample(files, min(per_class, len(files))):
            img = load_image(str(path), 3)
            images.append(TF.to_tensor(TF.center_crop(TF.resize(img, SIZE), SIZE)))
            labels.append(label)
    if not images:
        raise SystemExit(f"{data}/train: no images in its class folders")
    return torch.stack(images), torch.tensor(labels)


def measure(init: str, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> tuple[float, float, list[float]]:
    torch.manual_seed(seed)
    model = build_model("alexnet", init=init, width_mult=0.5, image_size=SIZE, num_classes=int(y.max()) + 1)
    scale: dict[str, float] = {}
    hooks = [model.layer(name).register_forward_hook(lambda m, i, o, name=name: scale.__setitem__(name, o.std().item()))
             for name in ("conv1", "fc7")]
    with torch.no_grad():
        logits = model.eval()(x)
    for h in hooks:
        h.remove()
    spread = logits.std(dim=0).mean().item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    losses = []
    for step in range(steps + 1):
        loss = F.cross_entropy(model(x), y)
        if step in (0, 20, 40, steps):
            losses.append(loss.item())
        if step < steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return scale["fc7"] / scale["conv1"], spread, losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a folder with train/<class>/ images (Imagenette)")
    parser.add_argument("--per-class", type=int, default=13)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        images, labels = one_batch(args.data, args.per_class, args.seed)
    except (AlexNetError, OSError) as e:
        print(f"init_signal: {e}", file=sys.stderr)
        return 1
    mean, std = images.mean((0, 2, 3), keepdim=True), images.std((0, 2, 3), keepdim=True)
    inputs = {"unit std": (images - mean) / std, "0-255": (images - mean) * 255}
    print(f"{len(labels)} photos, {int(labels.max()) + 1} classes, {SIZE} px; chance loss ln(C) = "
          f"{math.log(int(labels.max()) + 1):.3f}")
    print(f"| init | inputs | fc7 / conv1 | logit spread over images | loss at step 0 / 20 / 40 / {args.steps} |")
    print("|---|---|---:|---:|---|")
    for init in INITS:
        for name, x in inputs.items():
            ratio, spread, losses = measure(init, x, labels, args.steps, args.seed)
            shown = " / ".join("nan" if not math.isfinite(v) else f"{v:.3f}" for v in losses)
            print(f"| {init} | {name} | {ratio:.4f} | {spread:.4f} | {shown} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
