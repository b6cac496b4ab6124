"""`alexnet predict`: top-k labels with probabilities for image files, folders or globs."""

from __future__ import annotations

import argparse

from alexnet.cli.inference_flags import add_inference_flags, inference_options
from alexnet.config import TTA_MODES


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="top-k labels with probabilities for images (files, folders, globs)",
        description="Predict with a checkpoint (a file or a run folder: its best.pt), preprocessing each image as "
        "validation images were preprocessed in training. Files that cannot be read are reported and the others "
        "still predicted; the exit status is 1 when any file failed.",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="checkpoint file or run folder")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR_OR_GLOB")
    p.add_argument("--top-k", type=int, default=5, metavar="K")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help='a list of {"file", "top": [{"label", "prob"}]}')
    fmt.add_argument("--csv", action="store_true", help="one row per file: file, label1, prob1, ..., error")
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation: none, or flip = average the softmax of "
                   "each image and its mirror; default: what the run validated with")
    add_inference_flags(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.errors import ConfigError
    from alexnet.predict import format_csv, format_json, format_table, predict_files
    from alexnet.runtime.distributed import DistInfo, resolve_device
    from alexnet.store.checkpoint import load_checkpoint

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    from alexnet.predict import BATCH

    ckpt = load_checkpoint(args.checkpoint, prefer="best")
    device = resolve_device(args.device, DistInfo())
    results = predict_files(ckpt, args.inputs, top_k=args.top_k, device=device,
                            inference=inference_options(args, ckpt, BATCH, device), tta=args.tta)
    if args.json:
        print(format_json(results))
    elif args.csv:
        print(format_csv(results), end="")
    else:
        print(format_table(results))
    return 1 if any(r.error is not None for r in results) else 0
