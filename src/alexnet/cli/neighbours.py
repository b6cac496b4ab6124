"""`alexnet neighbours`: the paper's Figure 4, the images of a data set nearest to each query in fc7 space."""

from __future__ import annotations

import argparse

from alexnet.cli.vocabulary import add_alias, add_progress_flag, progress_wanted


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "neighbours",
        help="the k images of a data set nearest to each query image in fc7 space (the paper's Figure 4)",
        description="For each query image, the k images of DATA whose feature vectors (fc7 by default, with the "
        "checkpoint's eval preprocessing) are nearest in Euclidean distance. A query that is itself a file of DATA "
        "is not its own neighbour. Writes neighbours.png (query in the first column, neighbours beside it with "
        "their class and distance) and neighbours.json (query -> [{file, label, distance}]) into --output-dir. "
        "Unreadable images are skipped and listed; the exit status is 1 when any file could not be read.",
    )
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="checkpoint file or run folder")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="query images: files, folders, globs")
    # not required=True: argparse would then refuse the old spelling --in; run() says that it is missing
    data = p.add_argument("--data", metavar="DATA", help="the images to search (required): a folder of class folders "
                          "(labels shown), or a folder of images")
    top_k = p.add_argument("--top-k", type=int, default=5, metavar="K", help="neighbours per query (default 5)")
    add_alias(p, "--in", data)
    add_alias(p, "--k", top_k)
    p.add_argument("--layer", metavar="NAME", help="the layer whose vectors are compared (default: the model's last "
                   "hidden layer: fc7 in AlexNet, fc64 or local4 in the cuda-convnet nets)")
    p.add_argument("--output-dir", default=".", metavar="DIR", help="where neighbours.png/json go (default: here)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps")
    add_progress_flag(p, "over the images")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from alexnet.errors import ConfigError
    from alexnet.features import as_checkpoint
    from alexnet.neighbours import find_neighbours, format_table, write_neighbours
    from alexnet.runtime.distributed import DistInfo, resolve_device

    if args.data is None:
        raise ConfigError("--data DATA is required: the images to search")
    if args.top_k < 1:
        raise ConfigError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    ckpt = as_checkpoint(args.checkpoint)
    result = find_neighbours(ckpt, args.queries, args.data, k=args.top_k, layer=args.layer, batch_size=args.batch_size,
                             device=resolve_device(args.device, DistInfo()), progress=progress_wanted(args.progress))
    png, doc = write_neighbours(result, args.output_dir, ckpt.preprocessing.in_channels)
    # One rule with predict: an input not read (a query or a file of DATA) is a failure, whatever was written.
    status = 1 if result.skipped else 0
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return status
    for file, reason in result.skipped:
        print(f"skipped {file}: {reason}")
    print(format_table(result))
    print(f"\n{png}, {doc}")
    return status
