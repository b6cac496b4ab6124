"""`alexnet eval`: accuracy, top-5, per-class precision/recall and the confusion matrix of a checkpoint."""

from __future__ import annotations

import argparse
import json

from alexnet.cli.inference_flags import add_inference_flags, inference_options
from alexnet.config import SPLITS, TTA_MODES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint: Accuracy line, top-1/top-5, per-class precision/recall, confusion matrix",
        description="Evaluate a checkpoint (a file or a run folder: its best.pt) with the preprocessing recorded in "
        "it. Without --data, on the data it was trained on (its validation split). Writes confusion.csv and "
        "confusion.png into the checkpoint's run folder, or --output-dir.",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="checkpoint file or run folder")
    p.add_argument("--data", metavar="SRC", help="evaluate on this data instead (same classes); a folder with no "
                   "train/val split of its own is evaluated whole")
    p.add_argument("--split", choices=SPLITS, default="val")
    p.add_argument("--ten-crop", action="store_true", help="average the paper's 10 crops (corners, centre, mirrored)")
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: none, or flip = average the softmax of "
                   "each image and its mirror (not with --ten-crop); default: what the run validated with")
    p.add_argument("--batch-size", type=int, default=64, metavar="N")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps")
    p.add_argument("--workers", type=int, metavar="N", help="decoding threads")
    p.add_argument("--output-dir", metavar="DIR", help="where confusion.csv/png go (default: the run folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    add_inference_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.errors import ConfigError
    from alexnet.evaluate import EvalOptions, check_tta, evaluate_checkpoint
    from alexnet.runtime.distributed import DistInfo, resolve_device

    check_tta(args.tta, args.ten_crop)  # before the data is read
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    device = resolve_device(args.device, DistInfo())
    options = EvalOptions(split=args.split, ten_crop=args.ten_crop, tta=args.tta, batch_size=args.batch_size,
                          workers=args.workers)
    inference = inference_options(args, args.checkpoint, args.batch_size, device)
    out = evaluate_checkpoint(args.checkpoint, data=args.data, options=options, output_dir=args.output_dir,
                              device=device, inference=inference)
    if args.json:
        print(json.dumps(out.result.to_json()))
    else:
        print(out.description)
        print(out.result.report())
        print(f"\nconfusion matrix: {out.confusion_csv}, {out.confusion_png}")
    return 0
