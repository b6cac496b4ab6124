"""Fine-tuning on real photos: from scratch vs initialised from a run trained on other data, frozen vs not.

    .venv/bin/python benchmarks/finetune.py --data ../shared/data/dogs-vs-cats-4k [--seeds 3] [--epochs 5]
        [--image-size 96] [--width-mult 0.25] [--source-epochs 8] [--out DIR]

The source is `alexnet train` on the built-in shapes dataset (other data: rendered shapes and textures, 6 classes)
at the same variant, width and input size. Each arm is `alexnet train` on --data in its own process, as a user types
it, differing only in the fine-tuning flags:

    scratch         no --init-from
    init            --init-from SOURCE (every layer trains; fc8 replaced: 6 -> 2 classes)
    init+freeze     --init-from SOURCE --freeze features (only fc6-fc8 train)
    init+unfreeze   --init-from SOURCE --freeze features --freeze-epochs 2 (then everything trains)
    init+lr-mult    --init-from SOURCE --backbone-lr-mult 0.1

Reported per arm over the seeds: best and final validation top-1 (mean and sample sd), training seconds (the sum of
metrics.csv's per-epoch seconds: training and validation, no process start-up or first decode), and the paired
difference of best top-1 to scratch with a 95% t interval. The first run warms the uint8 cache, so no arm pays the
one-time decode. The CPU and thread count are printed with the table.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARMS = {
    "scratch": [],
    "init": ["--init-from", "{source}"],
    "init+freeze": ["--init-from", "{source}", "--freeze", "features"],
    "init+unfreeze": ["--init-from", "{source}", "--freeze", "features", "--freeze-epochs", "2"],
    "init+lr-mult": ["--init-from", "{source}", "--backbone-lr-mult", "0.1"],
}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 9: 2.262}


def train(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "alexnet", "train", "--no-progress", *args], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"alexnet train {' '.join(args)} failed:\n{done.stderr[-3000:]}")


def read_metrics(run: Path) -> tuple[float, float, float]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    top1 = [float(r["val_top1"]) for r in rows]
    return max(top1), top1[-1], sum(float(r["seconds"]) for r in rows)


def spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def interval(diffs: list[float]) -> str:
    n = len(diffs)
    if n < 2:
        return f"{diffs[0]:+.3f}"
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = T95.get(n - 1, 2.0) * sd / math.sqrt(n)
    return f"{mean:+.3f} [{mean - half:+.3f}, {mean + half:+.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a photo folder (train/ + val/ class folders)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--width-mult", type=float, default=0.25)
    parser.add_argument("--source-epochs", type=int, default=8)
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--out", help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        model = ["--model", "alexnet-bn", "--width-mult", str(args.width_mult), "--image-size", str(args.image_size),
                 "--batch-size", "64", "--lr-schedule", "cosine", "--device", "cpu", "--channels-last"]
        start = time.perf_counter()
        source = out / "source"
        train([*model, "--epochs", str(args.source_epochs), "--output-dir", str(source)])  # the built-in dataset
        source_top1 = read_metrics(source)[0]
        print(f"source: alexnet-bn x{args.width_mult:g} at {args.image_size} px on the built-in shapes dataset, "
              f"{args.source_epochs} epochs, best val top-1 {source_top1:.3f} ({time.perf_counter() - start:.0f} s)")
        train([*model, "--data", args.data, "--epochs", "1", "--max-steps", "1", "--output-dir", str(out / "warm")])
        results: dict[str, list[tuple[float, float, float]]] = {arm: [] for arm in args.arms}
        for seed in range(args.seeds):
            for arm in args.arms:
                flags = [f.format(source=source) for f in ARMS[arm]]
                run = out / f"{arm}-seed{seed}"
                train([*model, "--data", args.data, "--epochs", str(args.epochs), "--seed", str(seed), *flags,
                       "--output-dir", str(run)])
                results[arm].append(read_metrics(run))
                best, final, seconds = results[arm][-1]
                print(f"  {arm:<14} seed {seed}: best {best:.3f}, final {final:.3f}, {seconds:.1f} s", flush=True)

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as info:
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    print(f"\n{args.data}: {args.epochs} epochs, {args.seeds} seeds, alexnet-bn x{args.width_mult:g} at "
          f"{args.image_size} px; CPU {cpu}, {torch.get_num_threads()} threads\n")
    print("| arm | best val top-1 | final val top-1 | training s | best - scratch (95% CI) |")
    print("|---|---|---|---|---|")
    scratch = [r[0] for r in results.get("scratch", [])]
    for arm, rows in results.items():
        best, final, secs = ([r[i] for r in rows] for i in range(3))
        diff = interval([b - s for b, s in zip(best, scratch, strict=True)]) if scratch and arm != "scratch" else ""
        print(f"| {arm} | {statistics.mean(best):.3f} ± {spread(best):.3f} | {statistics.mean(final):.3f} ± "
              f"{spread(final):.3f} | {statistics.median(secs):.1f} | {diff} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
