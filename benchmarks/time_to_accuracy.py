"""Time to accuracy: the notes' plain loop vs `alexnet train`, on the built-in dataset or on real photos.

    python benchmarks/time_to_accuracy.py [--target 0.9] [--max-epochs 12] [--json FILE]
    python benchmarks/time_to_accuracy.py --data PHOTOS --budget 2m 10m --repeats 3 [--note] [--json FILE]
    python benchmarks/time_to_accuracy.py --data CIFAR10 --recipe cifar10-fast --warm-cache --budget 80s 20m

With `--data` (a folder with train/ and val/ class folders, or any folder `alexnet train --data` takes), real
photos, at every `--budget`: `alexnet train --recipe fast --time-budget BUDGET` as a user types it, `--repeats`
times, each a cold start (its own process and an empty uint8 cache, so decoding the photos is paid every time), on a
clock that counts everything from the moment the command starts (imports, decoding, the budget's probe, every
validation, checkpoint and plot): the wall time at which each epoch's row appears in metrics.csv. Reported per
budget, the medians: best.pt's validation top-1 (the better of the weights and their moving average), the last
epoch's, the train-validation gap at the end, the wall time, and how many runs gave a chance warning.

With `--note`, the first note's TrainingNet.py as written runs beside each (`note_arm`: its BatchNorm AlexNet at
227, Resize + ToTensor + Normalize, ImageFolder, DataLoader batch 256 shuffled, Adam at its defaults,
cross-entropy; TestNet.py's evaluation on val/ after every epoch, batch 32) until its training clock passes the
budget, in its own process. Its clock counts everything but those validation passes, which the note's script does
not do (the benchmark's instrument, not its work).

Without `--data`, the built-in dataset:

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
import os
import shlex
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


class NoteAlexNet(torch.nn.Module):
    """The first note's ClassicalNet.AlexNet, layer for layer (BatchNorm after every conv, dropout before fc6/fc7)."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        nn = torch.nn
        self.conv_block = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4), nn.BatchNorm2d(96), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(256, 384, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(384), nn.ReLU(True),
            nn.Conv2d(384, 384, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(384), nn.ReLU(True),
            nn.Conv2d(384, 256, kernel_size=3, stride=1, padding=1), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classfier_block = nn.Sequential(
            nn.Dropout(p=0.5), nn.Linear(6 * 6 * 256, 4096), nn.ReLU(True),
            nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.conv_block(x)
        x = x.view(x.size(0), 6 * 6 * 256)
        return self.classfier_block(x)


def note_arm(data_root: Path, budget_s: float) -> dict:
    """TrainingNet.py as written, stopped at the first step after its training clock passes `budget_s`, with
    TestNet.py's evaluation after each epoch (and at the stop)."""
    import torchvision
    from torchvision import transforms

    start = time.perf_counter()
    transform = transforms.Compose([
        transforms.Resize(size=(227, 227)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    train_dataset = torchvision.datasets.ImageFolder(root=str(data_root / "train"), transform=transform)
    train_loader = torch.utils.data.DataLoader(dataset=train_dataset, batch_size=256, shuffle=True)
    test_dataset = torchvision.datasets.ImageFolder(root=str(data_root / "val"), transform=transform)
    test_loader = torch.utils.data.DataLoader(dataset=test_dataset, batch_size=32, shuffle=True)
    model = NoteAlexNet(num_classes=len(train_dataset.classes))
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters())
    excluded = 0.0  # seconds spent in the benchmark's validation passes
    history = []

    def test(epoch: float) -> None:
        nonlocal excluded
        began = time.perf_counter()
        clock = began - start - excluded  # the training clock: validation passes so far left out
        model.eval()
        correct = 0
        with torch.no_grad():
            for data, target in test_loader:
                correct += model(data).max(1, keepdim=True)[1].eq(target.view(-1, 1)).sum().item()
        excluded += time.perf_counter() - began
        history.append({"epoch": epoch, "seconds": round(clock, 1), "val_acc": correct / len(test_dataset)})
        print(f"note: epoch {epoch:g}, val acc {history[-1]['val_acc']:.3f} at {history[-1]['seconds']:.0f} s",
              flush=True)

    epoch, out_of_time = 0, False
    while not out_of_time:
        model.train()
        steps = 0
        for img, label in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(img), label)
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - start - excluded >= budget_s:
                out_of_time = True
                break
        epoch += 1
        test(epoch if not out_of_time else epoch - 1 + steps / len(train_loader))
    return {"budget_s": budget_s, "history": history, "best_val_acc": max(h["val_acc"] for h in history)}


def ours_arm(data_root: Path, budget_s: float, out: Path, extra: list[str] | None = None, recipe: str = "fast",
             cache: Path | None = None) -> dict:
    """`alexnet train --recipe RECIPE --time-budget` in its own process; each epoch's row timed from the launch. The
    run's accuracy is best.pt's: the better of the weights and their moving average, at its best epoch. `cache`: a
    uint8 cache already built (warm_cache), else the run's own, empty."""
    command = [sys.executable, "-m", "alexnet", "train", "--recipe", recipe, "--data", str(data_root),
               "--time-budget", f"{budget_s:g}s", "--device", "cpu", "--no-progress", "--output-dir", str(out),
               *(extra or [])]
    # A cache of its own unless given: every run decodes the photos into the uint8 cache as a first run does.
    env = {**os.environ, "ALEXNET_CACHE": str(cache or out.parent / f"{out.name}-cache")}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    seen: list[dict] = []
    while True:
        finished = proc.poll() is not None
        rows = _rows(out / "metrics.csv")
        for r in rows[len(seen):]:
            ema = float(r["ema_val_top1"]) if r.get("ema_val_top1") else None
            seen.append({"epoch": int(r["epoch"]), "seconds": round(time.perf_counter() - start, 1),
                         "val_acc": max(float(r["val_top1"]), ema or 0.0), "train_acc": float(r["train_acc"])})
            print(f"ours ({budget_s:g} s): epoch {r['epoch']}, val acc {seen[-1]['val_acc']:.3f} at "
                  f"{seen[-1]['seconds']:.0f} s", flush=True)
        if finished:
            break
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"alexnet train failed ({proc.returncode}): see {out / 'log.txt'}")
    log = (out / "log.txt").read_text(encoding="utf-8", errors="replace")
    chosen = next((line for line in log.splitlines() if line.startswith("recipe chosen")), "")
    rung = next((line for line in log.splitlines() if line.startswith("input size and width chosen")), "")
    last = seen[-1]
    return {"budget_s": budget_s, "wall_s": round(time.perf_counter() - start, 1), "history": seen,
            "best_val_acc": max(h["val_acc"] for h in seen), "final_val_acc": last["val_acc"],
            "gap": round(last["train_acc"] - last["val_acc"], 3), "chosen": chosen, "rung": rung,
            "chance_warning": "(chance), and has not fallen" in log}


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, csv.Error):
        return []  # not written yet, or being replaced (the file is renamed into place whole)


def warm_cache(data_root: Path, recipe: str, extra: list[str], cache: Path) -> float:
    """Decode the data into the uint8 cache at `cache` with one training step of the recipe; its seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "alexnet", "train", "--recipe", recipe, "--data", str(data_root),
                    "--epochs", "1", "--max-steps", "1", "--device", "cpu", "--no-progress", "--output-dir",
                    str(cache.parent / "warm-run"), *extra], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "ALEXNET_CACHE": str(cache)})
    return time.perf_counter() - start


def photos(args: argparse.Namespace) -> None:
    """Every budget, `--repeats` times (each a cold start: its own process and an empty cache, or with
    `--warm-cache` the cache built once before, its time reported apart), and with `--note` the note's script beside
    it at the same budget; medians per budget."""
    import statistics

    from alexnet.config import parse_duration

    table = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache" if args.warm_cache else None
        if cache is not None:
            print(f"uint8 cache built in {warm_cache(args.data, args.recipe, args.extra, cache):.1f} s (one "
                  "training step included; not counted in the runs below)", flush=True)
        for text in args.budget:
            budget = parse_duration(text)
            repeats = []
            for i in range(args.repeats):
                ours = ours_arm(args.data, budget, Path(tmp) / f"ours-{text}-{i}", args.extra, args.recipe, cache)
                r = {"ours": ours}
                if args.note:
                    note_json = Path(tmp) / f"note-{text}-{i}.json"
                    subprocess.run([sys.executable, __file__, "--note-arm", "--data", str(args.data), "--budget",
                                    text, "--json", str(note_json)], check=True)
                    r["note"] = json.loads(note_json.read_text())
                repeats.append(r)
                print(f"{text}, repeat {i + 1}: best {ours['best_val_acc']:.3f}, final {ours['final_val_acc']:.3f}, "
                      f"train-val gap {ours['gap']:+.3f}, {ours['wall_s']:.0f} s from launch"
                      + (f"; the note's script {r['note']['best_val_acc']:.3f}" if args.note else ""), flush=True)
            row = {"budget": text, "budget_s": budget, "repeats": repeats}
            for key in ("best_val_acc", "final_val_acc", "gap", "wall_s"):
                row[key] = statistics.median(r["ours"][key] for r in repeats)
            row["chance_warnings"] = sum(r["ours"]["chance_warning"] for r in repeats)
            if args.note:
                row["note_best_val_acc"] = statistics.median(r["note"]["best_val_acc"] for r in repeats)
            table.append(row)
    print(f"\n| budget | best.pt val top-1 (median of {args.repeats}) | final epoch | train-val gap | wall s from launch |"
          " chance warnings |" + (" the note's script |" if args.note else ""))
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if args.note else ""))
    for row in table:
        print(f"| {row['budget']} | {row['best_val_acc']:.3f} | {row['final_val_acc']:.3f} | {row['gap']:+.3f} | "
              f"{row['wall_s']:.0f} | {row['chance_warnings']} |" + (f" {row['note_best_val_acc']:.3f} |" if args.note
                                                                     else ""))
    for row in table:
        print(f"{row['budget']}: {row['repeats'][0]['ours']['rung']}\n  {row['repeats'][0]['ours']['chosen']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"data": str(args.data), "table": table}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--data", type=Path, help="real photos: a folder with train/ and val/ class folders")
    parser.add_argument("--budget", nargs="+", default=["2m", "10m"], help="with --data: the budgets (each run from "
                        "the command's launch)")
    parser.add_argument("--note", action="store_true", help="with --data: the first note's script beside each run")
    parser.add_argument("--extra", type=shlex.split, default=[],
                        help='with --data: more `alexnet train` flags, one string: --extra "--batch-size 32 --lr 0.01"')
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipe", default="fast", help="with --data: the recipe each run uses")
    parser.add_argument("--warm-cache", action="store_true", help="with --data: decode into the uint8 cache once, "
                        "before the runs (its time reported apart), so each run's clock starts with it built")
    parser.add_argument("--note-arm", action="store_true", help=argparse.SUPPRESS)  # one note run, in its process
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.note_arm:
        from alexnet.config import parse_duration

        Path(args.json).write_text(json.dumps(note_arm(args.data, parse_duration(args.budget[0]))) + "\n")
        return
    if args.data is not None:
        photos(args)
        return

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
