"""Which changes make a short run on real photos more accurate: the candidates of the `fast` recipe, measured.

    python benchmarks/fast_recipe.py --data ../shared/data/dogs-vs-cats-4k --epochs 8 --seeds 3 --out runs/fast

Every candidate is the base run with one change (`CANDIDATES`), trained by `alexnet train` in its own process, as a
user types it, with a cosine schedule over its epochs. All get the same arithmetic: the base trains `--epochs`
epochs, and a candidate whose model costs more multiply-accumulates per image (`alexnet summary`) trains
proportionally fewer (a larger input or width pays for itself in epochs). Arithmetic, not seconds, so that the
accuracies do not depend on how busy a shared machine was while they were measured; each run's own seconds per
epoch are reported beside them, and `time_to_accuracy.py` then measures the chosen recipe against the note's script
in wall-clock time. Seeds run in the outer loop. The flip-at-test row evaluates the base runs' own checkpoints with
`alexnet eval --tta flip` (no retraining). The effect of a candidate is its final validation
top-1 minus the base's, paired by seed, with a 95% t interval. Finished runs are reused when the command is run
again (a run folder with a complete metrics.csv and checkpoint), so an interrupted search continues.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The base: the note's BatchNorm AlexNet at a quarter of its width and 128 px, the note's optimizer (Adam 1e-3) and
# no augmentation, on the fast path (uint8 cache, channels_last), with the budget's cosine schedule.
BASE = ["--model", "alexnet-bn", "--width-mult", "0.25", "--image-size", "128", "--preset", "seed", "--no-augment",
        "--opt", "adam", "--lr", "1e-3", "--batch-size", "64", "--channels-last"]

# One change each; a later flag of the same name overrides the base's (argparse keeps the last).
CANDIDATES: dict[str, list[str]] = {
    "base": [],
    "crop+flip+PCA (paper preset)": ["--preset", "paper", "--augment"],
    "rotate+flip (the note's augmentation)": ["--augment"],
    "width x0.5": ["--width-mult", "0.5"],
    "96 px": ["--image-size", "96"],
    "160 px": ["--image-size", "160"],
    "batch 128": ["--batch-size", "128"],
    "batch 32": ["--batch-size", "32"],
    "label smoothing 0.1": ["--label-smoothing", "0.1"],
    "lr 2e-3": ["--lr", "2e-3"],
    "AdamW, weight decay 0.05": ["--opt", "adamw", "--weight-decay", "0.05"],
}
FLIP_AT_TEST = "flip at test (base checkpoints)"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").lower()


def final_row(run: Path) -> dict | None:
    """The last epoch of a finished run (metrics.csv and checkpoints/last.pt both there), else None."""
    metrics = run / "metrics.csv"
    if not metrics.is_file() or not (run / "checkpoints" / "last.pt").is_file():
        return None
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else None


def macs_per_image(extra: list[str]) -> int:
    """conv and fc multiply-accumulates of the candidate's model at its input size (the last flag wins)."""
    from alexnet.models import model_config
    from alexnet.models.summary import summarize

    flags = BASE + extra
    last = {flags[i]: flags[i + 1] for i in range(len(flags) - 1) if flags[i].startswith("--")}
    cfg = model_config(last["--model"], num_classes=2, image_size=int(last["--image-size"]),
                       width_mult=float(last["--width-mult"]))
    return summarize(cfg).macs


def epochs_for(extra: list[str], base_epochs: int) -> int:
    return max(1, round(base_epochs * macs_per_image([]) / macs_per_image(extra)))


def train(run: Path, extra: list[str], data: str, epochs: int, seed: int) -> dict:
    row = final_row(run)
    if row is not None and int(row["epoch"]) < epochs:
        row = None
    if row is None:
        if run.exists():
            subprocess.run(["rm", "-rf", str(run)], check=True)  # a partial run is redone whole
        command = [sys.executable, "-m", "alexnet", "train", "--data", data, *BASE, *extra, "--epochs", str(epochs),
                   "--lr-schedule", "cosine", "--seed", str(seed), "--device", "cpu", "--no-progress",
                   "--output-dir", str(run)]
        print(" ".join(command[1:]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.perf_counter() - start:.1f} s", flush=True)
        row = final_row(run)
    with open(run / "metrics.csv", newline="") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    return {"val_top1": float(row["val_top1"]), "epochs": int(row["epoch"]), "epoch_s": statistics.median(seconds)}


def eval_flip(run: Path) -> float:
    out = run / "eval-flip.json"
    if not out.is_file():
        command = [sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(run / "checkpoints" / "last.pt"),
                   "--tta", "flip", "--device", "cpu", "--output-dir", str(run / "eval-flip"), "--json"]
        printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        out.write_text(printed.strip().splitlines()[-1] + "\n")
    return float(json.loads(out.read_text())["top1"])


def interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval of paired differences."""
    t95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan, math.nan
    half = t95.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def table(results: dict[str, list[float]], epochs: dict[str, int], epoch_s: dict[str, list[float]]) -> str:
    base = results["base"]
    lines = ["| candidate | epochs | s per epoch (median) | val top-1, mean ± std | effect vs base (paired), 95% interval |",
             "|---|---:|---:|---|---|"]
    for name, accs in results.items():
        spread = f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}" if len(accs) > 1 else f"{accs[0]:.3f}"
        if name == "base":
            effect = "—"
        else:
            mean, lo, hi = interval([a - b for a, b in zip(accs, base, strict=True)])
            effect = f"{mean * 100:+.1f} points [{lo * 100:+.1f}, {hi * 100:+.1f}]"
        seconds = f"{statistics.median(epoch_s[name]):.1f}" if epoch_s.get(name) else "—"
        lines.append(f"| {name} | {epochs.get(name, '—')} | {seconds} | {spread} | {effect} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a photo folder with train/ and val/ (e.g. dogs-vs-cats-4k)")
    parser.add_argument("--epochs", type=int, default=8, help="the base's epochs (others: the same arithmetic)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/fast-recipe"))
    parser.add_argument("--only", nargs="*", help="candidate names to run (default: all)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    names = [n for n in CANDIDATES if not args.only or n == "base" or n in args.only]
    results: dict[str, list[float]] = {n: [] for n in names}
    results[FLIP_AT_TEST] = []
    epochs = {n: epochs_for(CANDIDATES[n], args.epochs) for n in names}
    epoch_s: dict[str, list[float]] = {n: [] for n in names}
    for seed in range(args.seeds):
        for name in names:
            run = args.out / f"{slug(name)}-seed{seed}"
            done = train(run, CANDIDATES[name], args.data, epochs[name], seed)
            results[name].append(done["val_top1"])
            epoch_s[name].append(done["epoch_s"])
        results[FLIP_AT_TEST].append(eval_flip(args.out / f"base-seed{seed}"))
    text = table(results, epochs, epoch_s)
    print(f"\n{args.seeds} seeds, base {args.epochs} epochs, data {args.data}\n\n{text}")
    if args.json:
        Path(args.json).write_text(json.dumps({"base_epochs": args.epochs, "data": args.data, "epochs": epochs,
                                               "epoch_s": epoch_s, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
