"""`alexnet demo` (what `make demo` runs): the default training run on the built-in dataset, then where to look."""

from __future__ import annotations

import argparse

from alexnet.cli.train import add_training_flags, overrides_from
from alexnet.config import DEFAULT_RECIPE, resolve_config


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train the default recipe on the built-in dataset (no download) and say where the results are",
        description="Exactly `alexnet train` with no --data: the `demo` recipe (configs/demo.yaml) on the built-in "
        "shapes dataset. Flags override the recipe.",
    )
    add_training_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.train import fit  # torch: imported when the command runs

    cfg = resolve_config(recipe=DEFAULT_RECIPE, overrides=overrides_from(args))
    result = fit(cfg, progress=args.progress)
    folder = result.run_dir
    best = folder / "checkpoints" / "best.pt"
    print()
    print(f"results in {folder}/")
    print("  metrics.csv  log.txt  config.yaml  curves.png  filters.png  checkpoints/last.pt  checkpoints/best.pt")
    print(f"best validation top-1: {result.best_val_top1:.4f}")
    print("next:")
    print(f"  alexnet eval --checkpoint {best}")
    print(f"  alexnet predict --checkpoint {best} path/to/images/")
    return 0
