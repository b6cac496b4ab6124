"""How many images per second each data path feeds the model, on real 500x375 JPEGs like the Kaggle photos.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py --json bench_data.json

Paths, each delivering normalised float batches of 64 at the working size (227 by default):
- `PIL loader, N workers`: our ImageFileDataset (load_image + the preset's PIL transform) through a DataLoader with
  N = 0, 1, 2 worker processes: what the notes' ImageFolder pipeline does on every epoch.
- `first scan`: build_datasets on the fresh folder, which decodes every file once (JPEG at 1/8 scale) to find bad ones.
- `uint8 cache build`: the one-time decode of every file into the memory-mapped uint8 cache (threads).
- `uint8 cache + BatchAugment`: every later epoch: index a random batch of the cache, crop/flip/colour it as a tensor;
  `(out=)` writes every batch into one reused float buffer instead of a new tensor.

Steady state: the first batch of each timed pass (worker start-up) is excluded; each figure is the median of
`--repeats` passes. The machine may be shared: compare rows of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from alexnet.speed.config import PHOTO_SIZE
from alexnet.speed.photos import make_photos, time_batch_augment, time_loader

BATCH = 64


def main() -> None:
    from alexnet.data import BatchAugment, build_datasets
    from alexnet.data.cache import cache_split

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=640, help="JPEGs to generate (default 640)")
    p.add_argument("--image-size", type=int, default=227)
    p.add_argument("--presets", default="seed,paper")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--batches", type=int, default=8, help="timed batches of 64 per pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", help="keep the generated photos here (default: a temporary folder)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()

    tmp = None
    folder = args.dir
    if folder is None:
        tmp = tempfile.TemporaryDirectory()
        folder = tmp.name
    os.environ.setdefault("ALEXNET_CACHE", os.path.join(folder, ".cache"))  # a fresh cache for the build timing
    os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    if not any(n.endswith(".jpg") for n in os.listdir(folder)):
        make_photos(Path(folder), args.images, class_folders=False)
    print(f"{args.images} JPEGs of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} in {folder} ({time.perf_counter() - start:.1f} s); "
          f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}", flush=True)  # fmt: skip

    rows = []
    import torchvision.transforms  # noqa: F401  (imported once here, so the scan row times the scan, not the import)

    t0 = time.perf_counter()
    build_datasets(folder, image_size=args.image_size, val_split=0.0)  # first scan: every file verified once
    scan = args.images / (time.perf_counter() - t0)
    rows.append({"preset": "-", "path": "first scan (verify every file)", "images_per_s": scan, "runs": [scan]})
    print(f"{'-':6s} {rows[-1]['path']:32s} {scan:8.1f} images/s", flush=True)
    for preset in args.presets.split(","):
        bundle = build_datasets(folder, image_size=args.image_size, preset=preset, val_split=0.0)
        for workers in (int(w) for w in args.workers.split(",")):
            rates = time_loader(bundle.train, BATCH, workers, args.batches, args.repeats)
            rows.append({"preset": preset, "path": f"PIL loader, {workers} workers", "images_per_s": statistics.median(rates),
                         "runs": rates})  # fmt: skip
            print(f"{preset:6s} {rows[-1]['path']:32s} {rows[-1]['images_per_s']:8.1f} images/s", flush=True)
        t0 = time.perf_counter()
        cached = cache_split(bundle, "train")
        build = len(cached) / (time.perf_counter() - t0)
        rows.append({"preset": preset, "path": "uint8 cache build (once)", "images_per_s": build, "runs": [build]})
        print(f"{preset:6s} {rows[-1]['path']:32s} {build:8.1f} images/s", flush=True)
        aug = BatchAugment(preset, args.image_size, bundle.mean, bundle.std, train=True, pca=bundle.pca,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
        for reuse in (False, True):
            rates = time_batch_augment(cached, aug, BATCH, args.batches, args.repeats, reuse)
            path = "uint8 cache + BatchAugment" + (" (out=)" if reuse else "")
            rows.append({"preset": preset, "path": path, "images_per_s": statistics.median(rates), "runs": rates})
            print(f"{preset:6s} {rows[-1]['path']:32s} {rows[-1]['images_per_s']:8.1f} images/s", flush=True)

    print("\n| preset | path | images/s (median) |\n|---|---|---:|")
    for r in rows:
        print(f"| {r['preset']} | {r['path']} | {r['images_per_s']:.0f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"image_size": args.image_size, "batch": BATCH, "photos": args.images, "rows": rows}, f, indent=2)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
