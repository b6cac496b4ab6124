"""GPU readiness in one short run (under 5 minutes on one H100/H200): what a lent GPU machine should measure first.

    bash benchmarks/gpu_check.sh [--photos ../shared/data/dogs-vs-cats-4k]     # or: python benchmarks/gpu_check.py

1. The d2l variant's training step at 224 (1 channel, batch 128 as in the note, and 256) on synthetic data, in
   fp32 and in bf16 autocast with channels_last, and with CUDA graphs (torch.compile mode "reduce-overhead") in
   bf16: images per second, the median of timed steps after warm-up, synchronised.
2. The d2l run itself, end to end, as a user types it: `alexnet train --recipe d2l` for 5 epochs on IDX files of
   Fashion-MNIST's shape (60,000 + 10,000 images of 28 x 28; random pixels, since the machine reaches no network:
   the arithmetic and the data path are the same, only the accuracy is meaningless), with bf16 and channels_last.
   The note's GPU took about 70 s per epoch (350 s); the goal is under 10 s in all on one H100.
3. With --photos DIR: `alexnet train --recipe fast` on those photos, 8 epochs on the GPU.

It prints one table; benchmarks/README.md holds the plan and the arithmetic behind the 10 s goal.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SRC = Path(__file__).resolve().parent.parent / "src"


def step_images_per_s(batch: int, amp: bool, channels_last: bool, graphs: bool, steps: int = 30) -> float:
    sys.path.insert(0, str(SRC))
    from alexnet.models import build_model

    device = torch.device("cuda")
    model = build_model("alexnet-d2l", num_classes=10, in_channels=1, image_size=224).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, 1, 224, 224, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    if graphs:
        step = torch.compile(step, mode="reduce-overhead")
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fashion_shaped(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 60000), ("t10k", 10000)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    return folder


def train_run(args: list[str], out: Path) -> dict:
    command = [sys.executable, "-m", "alexnet", "train", *args, "--device", "cuda", "--no-progress",
               "--output-dir", str(out)]
    env = {**__import__("os").environ, "PYTHONPATH": str(SRC)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"wall_s": round(wall, 1), "epochs_s": round(sum(float(r["seconds"]) for r in rows), 1),
            "images_per_s": round(statistics.median(float(r["images_per_s"]) for r in rows)),
            "val_top1": float(rows[-1]["val_top1"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, help="a photo folder (train/ + val/) for the fast recipe")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    rows = []
    for batch, amp, cl, graphs in ((128, False, False, False), (128, True, True, False), (256, True, True, False),
                                   (256, True, True, True)):
        name = f"d2l step, batch {batch}, {'bf16' if amp else 'fp32'}{' + channels_last' if cl else ''}" \
               f"{' + CUDA graphs' if graphs else ''}"
        try:
            ips = step_images_per_s(batch, amp, cl, graphs)
            rows.append((name, f"{ips:,.0f} images/s", f"5 epochs of 60,000: {5 * 60000 / ips:.1f} s of steps"))
        except Exception as e:  # a benchmark row that failed says why and the others still run
            rows.append((name, "failed", f"{type(e).__name__}: {str(e)[:120]}"))
        print(" | ".join(rows[-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = fashion_shaped(Path(tmp) / "fashion")
        for batch in (128, 256):
            r = train_run(["--recipe", "d2l", "--data", str(data), "--amp", "bf16", "--channels-last",
                           "--batch-size", str(batch)], Path(tmp) / f"d2l-{batch}")
            detail = r.get("error") or (f"{r['wall_s']} s wall, {r['epochs_s']} s in its 5 epochs (train + val), "
                                        f"{r['images_per_s']:,} images/s")
            rows.append((f"alexnet train --recipe d2l, 5 epochs, bf16, batch {batch}", "", detail))
            print(" | ".join(rows[-1]), flush=True)
        if args.photos:
            r = train_run(["--recipe", "fast", "--data", str(args.photos), "--epochs", "8"], Path(tmp) / "fast")
            detail = r.get("error") or (f"{r['wall_s']} s wall, {r['epochs_s']} s in 8 epochs, val top-1 "
                                        f"{r['val_top1']:.3f}")
            rows.append(("alexnet train --recipe fast on the photos", "", detail))
    print("\n| check | speed | what it means |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
