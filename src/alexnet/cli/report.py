"""`alexnet report --checkpoint RUN` (or `alexnet report RUN`): one self-contained report.html (no network, images
inlined) to hand in or share."""

from __future__ import annotations

import argparse

from alexnet.cli.vocabulary import add_progress_flag, checkpoints_given, progress_wanted
from alexnet.errors import ConfigError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of a run: curves, per-class table, confusion, filters, Grad-CAM samples",
        description="Writes one HTML file that needs nothing else (no network, no scripts, every image inlined): the "
        "training curves, the per-class table and confusion matrix of the validation set, conv1's filters, a sample "
        "of right and wrong validation predictions with their Grad-CAM maps, and the resolved config. Uses (and "
        "builds when missing) the run's index, as `alexnet serve` does.",
    )
    p.add_argument("--checkpoint", metavar="RUN", help="run folder or checkpoint file")
    p.add_argument("run_path", nargs="?", metavar="RUN", help="the same, named without --checkpoint")
    p.add_argument("--output", default=None, metavar="FILE", help="default: RUN/report.html")
    p.add_argument("--samples", type=int, default=8, metavar="N", help="right and wrong predictions shown (each)")
    add_progress_flag(p, "while indexing")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.inspect.report import write_report  # here: it imports torch, which `alexnet --help` must not

    if not 0 <= args.samples <= 100:
        raise ConfigError(f"--samples must be in 0..100, got {args.samples}")
    runs = checkpoints_given(args.checkpoint, args.run_path)
    if len(runs) > 1:
        raise ConfigError(f"one run per report, got two: {' and '.join(runs)}")
    path = write_report(runs[0], args.output, samples=args.samples, progress=progress_wanted(args.progress))
    print(path)
    return 0
