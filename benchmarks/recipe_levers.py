"""Which parts of the adaptive `fast` recipe pay, and from how many passes per image (issue 23).

    python benchmarks/recipe_levers.py --data ../shared/data/dogs-vs-cats-4k --epochs 6 40 --seeds 3 \
        --out runs/levers [--workers 2] [--json FILE]
    python benchmarks/recipe_levers.py --data /tmp/data/cifar10 --recipe cifar10-fast --epochs 2 --seeds 3

The second form switches the parts of `--recipe cifar10-fast` (issue 24) at the length its 80-second budget buys,
with candidates of its own (CIFAR_CANDIDATES); that recipe does not choose by length, so each is one run.

At each number of epochs (passes over the training set), `alexnet train --recipe fast --epochs N` chooses its own
regularisation (alexnet.training.adapt); every candidate is that run with one part switched the other way by a flag
(a part the recipe chose is taken away, a part it left out is added), so the table says, for each part, what it
is worth at each length. The effect is the candidate's best.pt validation top-1 (the better of the weights and their
moving average) minus the recipe's, paired by seed, with a 95% t interval.

Epochs, not seconds: every run of a row does the same training steps, so its accuracy does not depend on how busy
the machine was, and the runs can share it: `--workers` runs go at once, each on one thread (OMP_NUM_THREADS=1). A
part that costs time (the crops, the moving average's update, flip TTA's second validation pass) shows it in the
seconds-per-epoch column, measured on one thread beside the other workers; the wall-clock runs of the chosen recipe
are time_to_accuracy.py's. Finished runs are reused when the command is run again, so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fast_recipe import interval, slug

# One change each against what the recipe chose for the row's length.
CANDIDATES: dict[str, list[str]] = {
    "the recipe's choice": [],
    "random-resized crops 0.35 + flips": ["--crop-scale", "0.35"],
    "no crops or flips": ["--crop-scale", "0"],
    "crops 0.2": ["--crop-scale", "0.2"],
    "moving average (EMA)": ["--ema-decay", "0.998"],
    "no moving average": ["--ema-decay", "0"],
    "flip TTA": ["--tta", "flip"],
    "no flip TTA": ["--tta", "none"],
    "label smoothing 0.1": ["--label-smoothing", "0.1"],
    "conv1 from the training patches": ["--conv1-init", "patches"],
    "patches, conv1 fixed": ["--conv1-init", "patches", "--freeze", "conv1"],
    # the optimizer and the head, which the recipe does not choose by length (Adam 1e-3, batch 64, dropout 0.5)
    "lr 0.002": ["--lr", "0.002"],
    "AdamW, weight decay 0.05": ["--opt", "adamw", "--weight-decay", "0.05"],
    "SGD 0.05, momentum 0.9, wd 5e-4": ["--opt", "sgd", "--lr", "0.05", "--momentum", "0.9", "--weight-decay", "5e-4"],
    "batch 32": ["--batch-size", "32"],
    "dropout 0.25": ["--dropout", "0.25"],
    # 99 px: the size near 96 at which no conv or pool of AlexNet drops a row (99 -> 23 -> 11 -> 5 -> 2); at 96
    # pool5 reads only 3x3 of conv5's 4x4 map (alexnet summary warns of it)
    "input 99 px": ["--image-size", "99"],
    # the training photos cached at 1.5x the input side: random-resized crops cut from them keep their detail (at
    # 1x a crop of 0.35 of the area is an enlargement of 57 of the input's 96 pixels)
    "crops from a 1.5x cache": ["--train-cache-scale", "1.5"],
    "crops from a 2x cache": ["--train-cache-scale", "2"],
    # the winners of the row above, together (a sum of single wins need not add up)
    "batch 32, patches": ["--batch-size", "32", "--conv1-init", "patches"],
    "batch 32, patches, dropout 0.25, AdamW 0.05": ["--batch-size", "32", "--conv1-init", "patches", "--dropout", "0.25",
                                                     "--opt", "adamw", "--weight-decay", "0.05"],
}
BASE = "the recipe's choice"
# cifar10-fast's candidates for the few epochs 80 s buys (issue 24): the recipe chooses nothing by length there, so
# every candidate is its own run.
CIFAR_CANDIDATES: dict[str, list[str]] = {
    "the recipe's choice": [],
    "conv1 from the training patches": ["--conv1-init", "patches"],
    "warm-up 0.3 epochs": ["--warmup-epochs", "0.3"],
    "no label smoothing": ["--label-smoothing", "0"],
    "no flip TTA": ["--tta", "none"],
    "lr 0.2": ["--lr", "0.2"],
    "patches, lr 0.2": ["--conv1-init", "patches", "--lr", "0.2"],
    "patches, conv1 fixed": ["--conv1-init", "patches", "--freeze", "conv1"],
}
CANDIDATE_SETS = {"fast": CANDIDATES, "cifar10-fast": CIFAR_CANDIDATES}


def changes(name: str, epochs: int, recipe: str = "fast") -> bool:
    """Whether the candidate differs from what the recipe chooses at this length (else it is the same run)."""
    from alexnet.training.adapt import regularisation_for

    if name == BASE or recipe != "fast":
        return True
    band = regularisation_for(epochs)
    chosen = {"--crop-scale": band.crop_scale, "--tta": band.tta, "--label-smoothing": band.label_smoothing,
              "--ema-decay": 1.0 if band.ema else 0.0}
    flag, value = CANDIDATES[name][:2]  # a candidate of several flags is judged by its first
    if flag not in chosen:
        return True  # not one of the recipe's choices: always a change
    if flag == "--ema-decay":
        return (float(value) > 0) != band.ema
    return str(chosen[flag]) != value and not (flag != "--tta" and float(chosen[flag]) == float(value))


def run_once(data: str, out: Path, epochs: int, seed: int, extra: list[str], recipe: str = "fast") -> dict:
    """One `alexnet train --recipe RECIPE` run on one thread (reused when its folder holds a finished run)."""
    done = out / "done.json"
    if not done.is_file():
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)  # a partial run is redone whole
        command = [sys.executable, "-m", "alexnet", "train", "--recipe", recipe, "--data", data, "--epochs",
                   str(epochs), "--seed", str(seed), "--device", "cpu", "--no-progress", "--output-dir", str(out),
                   *extra]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
        with open(out / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        best = max(max(float(r["val_top1"]), float(r["ema_val_top1"] or 0)) for r in rows)
        log = (out / "log.txt").read_text(encoding="utf-8", errors="replace")
        chosen = next((line for line in log.splitlines() if line.startswith("recipe chosen")), "")
        done.write_text(json.dumps({"best": best, "epoch_s": statistics.median(float(r["seconds"]) for r in rows),
                                    "train_acc": float(rows[-1]["train_acc"]), "chosen": chosen,
                                    "wall_s": round(time.perf_counter() - start, 1)}) + "\n")
        print(f"{out.name}: best {best:.3f}", flush=True)
    return json.loads(done.read_text())


def table(epochs: int, results: dict[str, list[dict]]) -> str:
    base = [r["best"] for r in results[BASE]]
    lines = [f"**{epochs} epochs.** {results[BASE][0]['chosen']}", "",
             "| candidate | val top-1 (best.pt), mean ± std | effect vs the recipe (paired), 95% interval | "
             "s per epoch, one thread |", "|---|---|---|---:|"]
    for name, runs in results.items():
        accs = [r["best"] for r in runs]
        spread = f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else f"{accs[0]:.3f}"
        if name == BASE:
            effect = "—"
        else:
            mean, lo, hi = interval([a - b for a, b in zip(accs, base, strict=True)])
            effect = f"{mean * 100:+.1f} points [{lo * 100:+.1f}, {hi * 100:+.1f}]"
        lines.append(f"| {name} | {spread} | {effect} | {statistics.median(r['epoch_s'] for r in runs):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--recipe", default="fast", choices=sorted(CANDIDATE_SETS),
                        help="the recipe whose parts are switched; each has its own candidates")
    parser.add_argument("--epochs", type=int, nargs="+", default=[6, 40])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="runs at once, one thread each")
    parser.add_argument("--only", nargs="*", help="candidate names to run besides the recipe's choice")
    parser.add_argument("--out", type=Path, default=Path("runs/recipe-levers"))
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    candidates = CANDIDATE_SETS[args.recipe]
    names = [n for n in candidates if n == BASE or not args.only or n in args.only]
    jobs = [(e, n, s) for e in args.epochs for s in range(args.seeds) for n in names if changes(n, e, args.recipe)]
    with ThreadPoolExecutor(args.workers) as pool:
        done = list(pool.map(lambda j: run_once(args.data, args.out / f"e{j[0]}-{slug(j[1])}-seed{j[2]}", j[0], j[2],
                                                candidates[j[1]], args.recipe), jobs))
    found = {(e, n, s): r for (e, n, s), r in zip(jobs, done, strict=True)}
    report, raw = [], {}
    for e in args.epochs:
        results = {n: [found[(e, n, s)] for s in range(args.seeds)] for n in names if changes(n, e, args.recipe)}
        report.append(table(e, results))
        raw[e] = results
    print(f"\n{args.seeds} seeds, data {args.data}\n\n" + "\n\n".join(report))
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "results": raw}, indent=2) + "\n")


if __name__ == "__main__":
    main()
