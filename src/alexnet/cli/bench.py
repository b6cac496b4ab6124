"""`alexnet bench`: this machine's ceilings, then the notes' plain loop and ours side by side (see alexnet.speed)."""

from __future__ import annotations

import argparse
import sys

from alexnet.cli.vocabulary import JsonSwitch, SwitchFormatter
from alexnet.config import BENCH_SECTION_ALIASES as SECTION_ALIASES
from alexnet.config import BENCH_SECTIONS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure training and inference speed, plain loop vs ours", description=__doc__,
        formatter_class=SwitchFormatter,
    )
    p.add_argument("--model", default="alexnet-bn", help="variant to time (default: the cats-vs-dogs note's alexnet-bn)")
    p.add_argument("--image-size", type=int, default=227)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width-mult", type=float, default=1.0, help="scale the model's widths (quick checks only)")
    p.add_argument("--steps", type=int, help="timed training steps per pass (default: planned from one measured "
                   "step, so that the whole run ends in minutes on any CPU)")
    p.add_argument("--repeats", type=int, default=3, help="passes per figure; figures are medians")
    p.add_argument("--photos", type=int, help="JPEG files in the end-to-end epoch (default: planned, at most 192)")
    p.add_argument("--only", nargs="+", choices=BENCH_SECTIONS + tuple(SECTION_ALIASES), default=list(BENCH_SECTIONS), metavar="SECTION",
                   help=f"sections to run: {', '.join(BENCH_SECTIONS)} (default: all)")
    p.add_argument("--output", metavar="FILE", help="also write the results as JSON to FILE")
    # a switch, as in every command; `--json FILE` (its meaning before) still writes FILE, with a note
    p.add_argument("--json", action=JsonSwitch, old_value_to="output",
                   help="print the results as JSON instead of the table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet import speed

    cfg = speed.BenchConfig(model=args.model, image_size=args.image_size, batch_size=args.batch_size,
                            steps=args.steps, width_mult=args.width_mult, repeats=args.repeats, photos=args.photos, sections=tuple(args.only))
    # with --json, stdout holds the JSON alone: the sections' progress lines go to stderr
    results = speed.run(cfg, log=(lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print)
    if args.json:
        print(speed.to_json(results))
    else:
        print(speed.format_table(results))
    if args.output:
        speed.write_json(results, args.output)
        print(f"results written to {args.output}", file=sys.stderr if args.json else sys.stdout)
    return 0
