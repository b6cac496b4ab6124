"""One name per meaning across the commands' flags, and the old spellings kept (hidden) for one release.

The names, as torchvision's and timm's reference scripts spell them where they have one:

    --output-dir DIR          a folder the command writes into
    --output FILE             the one file the command writes
    --top-k K                 how many results (labels, neighbours)
    --checkpoint RUN          the run folder or checkpoint file to read
    --data SRC                the data to read; --data-root DIR: where torchvision's datasets live
    --image-size N            the side of the model's input
    --json                    a switch: print JSON to stdout instead of the table
    --progress/--no-progress  a bar on stderr; by default only when stderr is a terminal (a log is not flooded)

tests/test_cli_vocabulary.py walks every parser and fails on a second visible name for one of these meanings. Only
argparse, sys and alexnet.errors are imported here: `alexnet --help` stays torch-free.
"""

from __future__ import annotations

import argparse
import sys

from alexnet.errors import ConfigError


class DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: hidden from --help, stores into the canonical flag's dest, and says so on stderr."""

    def __init__(self, option_strings, dest, *, canonical: str, **kwargs):
        self.canonical = canonical
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated, use {self.canonical} (the old spelling goes in a "
              "later release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_alias(parser, old: str, canonical: argparse.Action) -> argparse.Action:
    """Accept `old` as the flag `canonical` (the Action that add_argument returned), without listing it."""
    # default SUPPRESS: the canonical flag's default is the one the namespace starts with
    return parser.add_argument(old, dest=canonical.dest, action=DeprecatedAlias, canonical=canonical.option_strings[0],
                               type=canonical.type, choices=canonical.choices, metavar=canonical.metavar,
                               default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class JsonSwitch(argparse.Action):
    """`--json` as every command has it: a switch. For a command whose `--json` once took a FILE (`alexnet bench
    --json FILE`), the old form still writes FILE as `--output FILE` now does, with a note on stderr."""

    def __init__(self, option_strings, dest, *, old_value_to: str, **kwargs):
        self.old_value_to = old_value_to  # the dest of the flag that now takes the old FILE
        super().__init__(option_strings, dest, nargs="?", const=True, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if values is True:
            setattr(namespace, self.dest, True)
            return
        print(f"{parser.prog}: {option_string} FILE is deprecated, use --{self.old_value_to.replace('_', '-')} FILE "
              f"(--json alone prints JSON)", file=sys.stderr)
        setattr(namespace, self.old_value_to, values)


class SwitchFormatter(argparse.HelpFormatter):
    """Shows a JsonSwitch as the plain switch it now is (`--json`, not `--json [JSON]`): the FILE it still takes is
    the deprecated form."""

    def _format_args(self, action, default_metavar):
        return "" if isinstance(action, JsonSwitch) else super()._format_args(action, default_metavar)


def add_progress_flag(parser, what: str) -> argparse.Action:
    """`--progress/--no-progress`, default None: see progress_wanted."""
    return parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                               help=f"progress bar {what} (default: when stderr is a terminal)")


def progress_wanted(flag: bool | None) -> bool:
    """The rule `alexnet train` follows: a bar when asked, else only on a terminal (in a log it is noise)."""
    return sys.stderr.isatty() if flag is None else flag


def checkpoints_given(flag: list[str] | str | None, positional: list[str] | str | None) -> list[str]:
    """The runs named by `--checkpoint RUN` and by the positional RUN that serve and report also take, in that
    order; refused when there is none."""

    def listed(value):
        return [value] if isinstance(value, str) else list(value or [])

    given = [*listed(flag), *listed(positional)]
    if not given:
        raise ConfigError("name a run: --checkpoint RUN (a run folder or checkpoint file)")
    return given
