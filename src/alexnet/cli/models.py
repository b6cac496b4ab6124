"""`alexnet models`: the registered AlexNet variants, their parameter counts, sources and deviations."""

from __future__ import annotations

import argparse
import json
import textwrap


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the AlexNet variants with their parameter counts",
        description="List the registered AlexNet variants: parameters, input, classes, source and deviations "
        "from the 2012 paper.",
    )
    p.add_argument("names", nargs="*", metavar="MODEL", help="show only these variants")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.models import describe_variants, get_variant

    for name in args.names:
        get_variant(name)  # an unknown name is a ConfigError listing the valid ones
    rows = [r for r in describe_variants() if not args.names or r["name"] in args.names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'params':>10}  {'input':<9}  {'classes':>7}  what it is")
    for r in rows:
        shape = "x".join(map(str, r["input"]))
        print(f"{r['name']:<{width}}  {r['params']:>10,}  {shape:<9}  {r['num_classes']:>7}  {r['summary']}")
    for r in rows:
        print(f"\n{r['name']}")
        for label in ("source", "deviations"):
            print(textwrap.fill(f"{label}: {r[label]}", width=110, initial_indent="  ", subsequent_indent="    "))
    return 0
