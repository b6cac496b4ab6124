"""Time to the demo's target validation accuracy on the built-in dataset: the notes' plain loop vs `alexnet train`.

    python benchmarks/time_to_accuracy.py [--target 0.9] [--max-epochs 12] [--json FILE]

Plain: the first note's TrainingNet.py / TestNet.py, as written: torchvision ImageFolder over the same JPEG folders,
Resize + ToTensor + Normalize on every epoch, DataLoader(shuffle, no workers), the same model (the demo's
quarter-width alexnet-bn at 96 px) in fp32 eager, Adam at the same learning rate (constant, as in the note), batch 64,
a validation pass after each epoch. Ours: `alexnet train --recipe demo` in its own process, as a user types it
(uint8 cache, whole-batch augmentation, channels_last, fused Adam, cosine schedule). Both clocks count
training steps with their data loading (validation passes excluded) up to the first epoch whose validation accuracy
reaches the target; ours is also reported against its whole wall time (start-up and imports, decode into the cache,
every validation pass, checkpoints and plots of all its epochs), a bound that cannot flatter it. Ratios are
measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def plain_time_to_target(data_root: Path, target: float, max_epochs: int, image_size: int, lr: float,
                         batch_size: int, width_mult: float) -> dict:
    import torchvision
    from torchvision import transforms

    from alexnet.models import build_model

    transform = transforms.Compose([
        transforms.Resize(size=(image_size, image_size)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    train = torchvision.datasets.ImageFolder(root=str(data_root / "train"), transform=transform)
    val = torchvision.datasets.ImageFolder(root=str(data_root / "val"), transform=transform)
    train_loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=batch_size)
    torch.manual_seed(0)
    model = build_model("alexnet-bn", num_classes=len(train.classes), image_size=image_size, width_mult=width_mult)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    seconds, history = 0.0, []
    for epoch in range(1, max_epochs + 1):
        model.train()
        start = time.perf_counter()
        for img, label in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(img), label)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad():
            for img, label in val_loader:
                correct += (model(img).argmax(1) == label).sum().item()
        acc = correct / len(val)
        history.append({"epoch": epoch, "val_acc": acc, "train_seconds": round(seconds, 1)})
        print(f"plain epoch {epoch}: val acc {acc:.3f}, {seconds:.1f} s of training", flush=True)
        if acc >= target:
            return {"reached": True, "epochs": epoch, "seconds": seconds, "history": history}
    return {"reached": False, "epochs": max_epochs, "seconds": seconds, "history": history}


def ours_time_to_target(out: Path, target: float, max_epochs: int) -> dict:
    """`alexnet train` with the demo recipe, as a user runs it: its own process, with the command's defaults."""
    command = [sys.executable, "-m", "alexnet", "train", "--recipe", "demo", "--device", "cpu", "--no-progress",
               "--output-dir", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seconds = 0.0
    for r in rows[:max_epochs]:
        seconds += float(r["seconds"])
        if float(r["val_top1"]) >= target:
            return {"reached": True, "epochs": int(r["epoch"]), "seconds": seconds, "wall_seconds": wall}
    return {"reached": False, "epochs": len(rows), "seconds": seconds, "wall_seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    from alexnet.data import ShapesConfig, make_shapes

    data_root = Path(make_shapes(ShapesConfig()))
    with tempfile.TemporaryDirectory() as tmp:
        ours = ours_time_to_target(Path(tmp) / "run", args.target, args.max_epochs)
        print(f"ours: val >= {args.target} after {ours['epochs']} epochs, {ours['seconds']:.1f} s of training "
              f"({ours['wall_seconds']:.1f} s wall for the whole run)", flush=True)
    plain = plain_time_to_target(data_root, args.target, args.max_epochs, image_size=96, lr=1e-3, batch_size=64,
                                 width_mult=0.25)
    result = {"target": args.target, "ours": ours, "plain": plain}
    if ours["reached"] and plain["reached"]:
        result["plain_over_ours"] = round(plain["seconds"] / ours["seconds"], 2)
        result["plain_over_ours_whole_run"] = round(plain["seconds"] / ours["wall_seconds"], 2)
    print(json.dumps({k: v for k, v in result.items() if k != "plain"} | {"plain_seconds": plain["seconds"],
                                                                          "plain_epochs": plain["epochs"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
