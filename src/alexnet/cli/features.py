"""`alexnet features`: one vector per image from a named layer of a checkpoint, written as safetensors or .npy."""

from __future__ import annotations

import argparse

from alexnet.cli.vocabulary import add_progress_flag, progress_wanted
from alexnet.config import FEATURE_FORMATS
from alexnet.errors import plural


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "features",
        help="one feature vector per image from a named layer (fc7 by default), as safetensors or .npy",
        description="Run images through a checkpoint (a file or a run folder: its best.pt) with its eval "
        "preprocessing and keep the output of one layer: a vector per image (a conv or pool map is averaged over "
        "its positions, one value per channel). DATA is one folder of class folders (or train/ + val/ with class "
        "folders: the files are labelled with their class), or image files, folders and globs (no labels). Writes "
        "FILE and a JSON beside it (same name, .json) with the files in row order, their labels, the layer, the "
        "checkpoint and the shape. Unreadable images are skipped and listed; the others are still written, and the exit "
        "status is 1 when any file could not be read (as predict's).",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="checkpoint file or run folder")
    p.add_argument("data", nargs="+", metavar="DATA", help="a folder of class folders, or files, folders, globs")
    p.add_argument("--layer", metavar="NAME",
                   help="conv1 ... pool5, fc6, relu6, fc7, relu7, fc8 (see the error for a bad name; default: the "
                   "model's last hidden layer, fc7 in AlexNet: the paper's 4096-d descriptor)")
    p.add_argument("--output", metavar="FILE", help="where the vectors go (default: features.safetensors here)")
    # No argparse choices: alexnet.features.FORMATS is the one list (it imports torch), checked first in run().
    p.add_argument("--format", choices=FEATURE_FORMATS, help="safetensors (one tensor named 'features', (N, D)) or npy; "
                   "default: from FILE's suffix, else safetensors")
    p.add_argument("--batch-size", type=int, default=64, metavar="N")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps")
    add_progress_flag(p, "over the images")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.errors import ConfigError
    from alexnet.features import extract_features, output_paths, save_features
    from alexnet.runtime.distributed import DistInfo, resolve_device

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    output_paths(args.output, args.format)  # a bad --output/--format is refused before any image is read
    fs = extract_features(args.checkpoint, args.data, args.layer, batch_size=args.batch_size,
                          device=resolve_device(args.device, DistInfo()), progress=progress_wanted(args.progress))
    path, json_path = save_features(fs, args.output, args.format)
    for file, reason in fs.skipped:
        print(f"skipped {file}: {reason}")
    n, d = fs.vectors.shape
    print(f"{plural(n, 'image')} x {d} ({fs.layer} of {fs.checkpoint}) -> {path}, {json_path}")
    return 1 if fs.skipped else 0  # one rule with predict: an input not read is a failure, whatever was written
