"""Errors meant for the user: the CLI prints their message on one line and exits non-zero, with no traceback.

Library code raises these (or a subclass) for every problem a user can cause: a bad argument, a file that cannot
be read, a checkpoint that does not match. Anything else is a bug and keeps its traceback.
"""


class AlexNetError(Exception):
    """A problem with the user's input; the message names the file or field and the cause."""


class ConfigError(AlexNetError, ValueError):
    """A configuration field has an invalid value."""


class DataError(AlexNetError):
    """A dataset, folder or image file cannot be used."""


class CheckpointError(AlexNetError):
    """A checkpoint file cannot be read, or does not match what it is used with."""


SHORT_LIMIT = 80  # characters of a bad value that an error message echoes


def short(value: object, limit: int = SHORT_LIMIT) -> str:
    """A bounded repr of an untrusted value for an error message: at most `limit` characters, ending in '...'.

    Built with reprlib, so a list of a million class names or a ten-megabyte string is never rendered whole just to
    be cut (a crafted YAML or checkpoint must not make the error path allocate more than the input did).
    """
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset = 3, 6, 8, 8, 8
    r.maxstring = max(limit // 2, 12)
    r.maxother = r.maxlong = max(limit, 12)
    try:
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
            text = f"<an int of {value.bit_length()} bits>"  # repr would be huge, or refused past 4300 digits
        else:
            text = r.repr(value)
    except Exception:  # a repr that fails must not hide the error being reported
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def clip(text: str, limit: int = 200) -> str:
    """A message part that is already text (a parser's complaint), cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plural(n: int, one: str, many: str | None = None) -> str:
    """A count and its noun in agreement, for messages: plural(1, "epoch") -> '1 epoch', plural(3, "entry",
    "entries") -> '3 entries'. A run of one epoch or a folder with one stray file is common, and '1 epochs' reads
    as a slip that makes a user doubt the rest of the line."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
