"""`alexnet data`: look at a dataset before training on it, and make the built-in one.

    alexnet data check SRC [--strict] [--json]      what would be trained on: classes, counts, skipped files and why
    alexnet data make-shapes [--output-dir DIR]     write the built-in `shapes` dataset as an image folder
    alexnet data cache SRC --image-size S           decode a dataset once into the uint8 cache (the fast path)
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

from alexnet.cli.vocabulary import add_alias
from alexnet.config import IN_CHANNELS, LAYOUTS, PRESETS, SPLITS
from alexnet.errors import plural


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="check a dataset, make the built-in one, build the uint8 cache",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    def source_args(q) -> None:
        q.add_argument("source", metavar="SRC",
                       help="a folder (train/+val/, class folders, flat cat.1.jpg names, IDX files, CIFAR-10 batches), "
                            "or shapes, mnist, fashion-mnist, cifar10")  # fmt: skip
        q.add_argument("--image-size", type=int, default=227, help="working size S (default 227)")
        q.add_argument("--in-channels", type=int, choices=IN_CHANNELS, default=3)
        q.add_argument("--preset", choices=PRESETS,
                       help="transform preset (default: the data's own: d2l for IDX files, seed for photos)")
        q.add_argument("--val-split", type=float, default=0.2, help="held out when there is no val/ (default 0.2)")
        q.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default 0)")
        q.add_argument("--strict", action="store_true", help="the first unusable file is an error")
        q.add_argument("--download", action="store_true", help="download mnist / fashion-mnist / cifar10")
        root = q.add_argument("--data-root", metavar="DIR",
                              help="where torchvision datasets live (default $ALEXNET_CACHE/torchvision)")
        add_alias(q, "--root", root)  # `alexnet train` has always said --data-root
        q.add_argument("--min-side", type=int, default=8, help="skip images with a shorter side below this (px)")
        q.add_argument("--layout", choices=LAYOUTS, default="auto",
                       help="class folders inside class folders: classes (the top ones) or leaves (each folder "
                            "holding images); auto refuses to guess")  # fmt: skip

    check = sub.add_parser("check", help="scan a dataset; print classes, counts and every skipped file with why")
    source_args(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--all", action="store_true", help="list every ignored file too, not only a count per reason")
    check.set_defaults(run=run_check)

    make = sub.add_parser("make-shapes", help="write the built-in shapes dataset (train/ and val/ JPEG folders)")
    output_dir = make.add_argument("--output-dir", metavar="DIR",
                                   help="folder to write (default $ALEXNET_CACHE/datasets/shapes-...)")
    add_alias(make, "--output", output_dir)
    # Defaults are ShapesConfig's, read when the command runs (importing it here would slow `alexnet --help`).
    make.add_argument("--image-size", type=int, help="side of the images in px (default 64)")
    make.add_argument("--train-per-class", type=int, help="images per class in train/ (default 1000)")
    make.add_argument("--val-per-class", type=int, help="images per class in val/ (default 200)")
    make.add_argument("--seed", type=int)
    make.add_argument("--workers", type=int, default=2)
    make.set_defaults(run=run_make_shapes)

    cache = sub.add_parser("cache", help="decode a dataset once into the memory-mapped uint8 cache")
    source_args(cache)
    cache.set_defaults(run=run_cache)
    p.set_defaults(run=lambda args: p.print_help() or 2)


def _bundle(args):
    from alexnet.data import build_datasets

    return build_datasets(
        args.source, image_size=args.image_size, in_channels=args.in_channels, preset=args.preset,
        val_split=args.val_split, seed=args.seed, strict=args.strict, download=args.download, root=args.data_root,
        min_side=args.min_side, statistics=False, layout=args.layout,
    )  # fmt: skip


def run_check(args) -> int:
    import logging

    from alexnet.data.images import display_path

    # This command prints every skipped file itself; the per-file log lines (meant for training runs) would repeat them.
    logging.getLogger("alexnet.data").setLevel(logging.ERROR)
    bundle = _bundle(args)
    train_counts = Counter(bundle.train.targets)
    val_counts = Counter(bundle.val.targets)
    report = {
        "source": bundle.source,
        "layout": bundle.layout,
        "classes": [
            {"name": name, "train": train_counts.get(i, 0), "val": val_counts.get(i, 0)}
            for i, name in enumerate(bundle.class_names)
        ],
        "train": len(bundle.train),
        "val": len(bundle.val),
        "skipped": [{"path": display_path(p), "reason": r} for p, r in bundle.skipped],
        "ignored": [{"path": display_path(p), "reason": r} for p, r in bundle.ignored],
        "notes": [{"path": display_path(p), "note": n} for p, n in bundle.notes],
    }
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print(f"{report['source']}: {report['layout']}, {len(bundle.class_names)} classes, "
          f"{report['train']} train / {report['val']} val images")  # fmt: skip
    width = max(len("class"), *(len(c["name"]) for c in report["classes"]))
    print(f"  {'class':<{width}}  {'train':>7}  {'val':>7}")
    for c in report["classes"]:
        print(f"  {c['name']:<{width}}  {c['train']:>7}  {c['val']:>7}")
    if report["skipped"]:
        print(f"skipped {plural(len(report['skipped']), 'file')}:")
        for s in report["skipped"]:
            print(f"  {s['path']}: {s['reason']}")
    if report["ignored"]:
        ignored = len(report["ignored"])
        what = f"ignored {plural(ignored, 'entry', 'entries')} that {'is' if ignored == 1 else 'are'} not data"
        if args.all:
            print(f"{what}:")
            for s in report["ignored"]:
                print(f"  {s['path']}: {s['reason']}")
        else:
            by_reason = Counter(s["reason"] for s in report["ignored"])
            print(f"{what} (--all lists them):")
            for reason, n in by_reason.most_common():
                print(f"  {n} x {reason}")
    for s in report["notes"]:
        print(f"note: {s['path']}: {s['note']}")
    return 0


def run_make_shapes(args) -> int:
    from alexnet.data.synthetic import ShapesConfig, make_shapes

    given = {k: getattr(args, k) for k in ("image_size", "train_per_class", "val_per_class", "seed")}
    cfg = ShapesConfig(**{k: v for k, v in given.items() if v is not None})
    start = time.perf_counter()
    folder = make_shapes(cfg, args.output_dir, workers=args.workers)
    with open(f"{folder}/shapes.json", encoding="utf-8") as f:
        info = json.load(f)
    print(f"{folder}: {info['images']} images of {cfg.image_size}x{cfg.image_size} px, classes "
          f"{', '.join(info['classes'])} (generated in {info['seconds_to_generate']} s; "
          f"this call took {time.perf_counter() - start:.1f} s)")  # fmt: skip
    return 0


def run_cache(args) -> int:
    from alexnet.data.cache import cache_split

    bundle = _bundle(args)
    for split in SPLITS:
        start = time.perf_counter()
        cached = cache_split(bundle, split)
        n, c, h, w = cached.images.shape
        what = "built" if cached.built else "reused"
        print(f"{split}: {n} images x {c}x{h}x{w} uint8 ({cached.images.numel() / 2**20:.1f} MiB) {what} in "
              f"{time.perf_counter() - start:.1f} s: {cached.path}")  # fmt: skip
    return 0
