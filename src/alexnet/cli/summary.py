"""`alexnet summary`: per-layer shapes with their formulas, parameters, MACs and receptive fields."""

from __future__ import annotations

import argparse
import json

from alexnet.cli.vocabulary import add_alias


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summary",
        help="per-layer shapes, size formulas, parameters, MACs and receptive fields",
        description="Print every layer of MODEL with its output shape, the size formula with the numbers filled "
        "in, parameters, MACs and receptive field, then totals. Explains 224 vs 227 and warns when a size "
        "silently truncates.",
    )
    p.add_argument("model", metavar="MODEL", help="a registered variant (see `alexnet models`)")
    size = p.add_argument("--image-size", type=int, metavar="N", help="square input side (default: the variant's)")
    add_alias(p, "--input-size", size)  # the name every other command gives the input's side
    p.add_argument("--in-channels", type=int, metavar="C", help="input channels (default: the variant's)")
    p.add_argument("--num-classes", type=int, metavar="K", help="classes (default: the variant's)")
    p.add_argument("--width-mult", type=float, metavar="W", help="scale conv channels and fc widths")
    p.add_argument("--ceil", action="store_true", help="round sizes up as cuda-convnet does (the paper's 224 -> 55)")
    p.add_argument(
        "--target-map", type=int, metavar="N", help="instead: which input sizes give an N x N map after conv1 and pool5"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.models import model_config
    from alexnet.models.summary import format_target_map, summarize, target_map

    cfg = model_config(
        args.model, in_channels=args.in_channels, num_classes=args.num_classes, width_mult=args.width_mult
    )
    if args.target_map is not None:
        answer = target_map(cfg, args.target_map, ceil=args.ceil)
        print(json.dumps(answer, indent=2) if args.json else format_target_map(answer))
        return 0
    summary = summarize(cfg, args.image_size, ceil=args.ceil)
    print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
    return 0
