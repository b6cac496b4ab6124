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
