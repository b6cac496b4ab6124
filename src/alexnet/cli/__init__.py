"""The `alexnet` command: parses arguments and calls the library; it holds no logic of its own.

Each subcommand lives in its own module in this package with two functions: `add_parser(subparsers)` and
`run(args) -> int`. Only argparse is imported here; each `run` imports torch and friends when it is called, so
`alexnet --help` answers in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alexnet import __version__
from alexnet.errors import AlexNetError

# Subcommand modules, in the order `alexnet --help` lists them.
COMMANDS = [
    "models", "summary", "data", "train", "eval", "predict", "features", "neighbours", "inspect", "serve", "report",
    "export", "bench", "ablate", "demo",
]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alexnet",
        description="Train, evaluate, inspect, export and reproduce AlexNet (Krizhevsky et al., 2012).",
    )
    parser.add_argument("--version", action="version", version=f"alexnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # every name is a module of this package: a typo fails here, loudly
        importlib.import_module(f"alexnet.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except AlexNetError as e:
        print(f"alexnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `alexnet summary ... | head`: the reader left. Point stdout at devnull so that the interpreter's final
        # flush does not raise again, and exit quietly as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # A full disk, a read-only file system, no permission, wherever it surfaced (a writer that does not go
        # through alexnet.files, a library's own open()): the path and the cause on one line, not a traceback.
        from alexnet.files import describe_os_error

        print(f"alexnet {args.command}: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
