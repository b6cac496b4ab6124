"""Checks for untrusted values (a run YAML, command-line flags, a checkpoint's fields), and the bounds they enforce.

Every check names the field and echoes the bad value through `errors.short`, so a crafted input never turns the
error path into a gigabyte repr. The bounds are far above any AlexNet run (the paper: 227 px, 1000 classes, 61M
parameters) and far below what would exhaust a machine: they exist so that a typo or a crafted file is refused
in microseconds, by arithmetic, before anything is allocated.

No torch import: the config layer and the CLI use this before torch is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, NoReturn

from alexnet.errors import AlexNetError, ConfigError, short

# --- bounds (one place; the config layer, the model config and the checkpoint validator all use them) -----------

MAX_IMAGE_SIZE = 4096  # input side in pixels (the paper: 227); 4096 px is already 200 MB per float image
MAX_IN_CHANNELS = 64  # 1 (grey) or 3 (RGB) in practice
MAX_CLASSES = 100_000  # fc8 outputs and class names (ImageNet-21k has 21,841)
MAX_CLASS_NAME = 1024  # characters of one class name (a folder name is at most 255 bytes)
MAX_WIDTH_MULT = 64.0  # channel/fc scale (the paper: 1.0); the parameter bound below is the real limit
MAX_WIDTH = 1 << 16  # channels of one conv, or fc_width, before width_mult
MAX_CONV1_PADDING = 10  # below conv1's 11-pixel kernel: more padding only adds outputs that see nothing but zeros
MAX_PARAMETERS = 1 << 31  # 8 GiB of float32 weights, 35x the paper's 61M
MAX_ACTIVATION = 1 << 30  # elements of the largest feature map of ONE image (4 GiB in float32)
MAX_NAME = 256  # characters of a model or variant name
MAX_PATH = 4096  # characters of a path (PATH_MAX on Linux)
MAX_EPOCHS = 1_000_000
MAX_STEPS = 1 << 40  # optimizer steps, checkpoint positions
MAX_BATCH = 1 << 16  # images per global batch (65,536 images of 227 px are 10 GB of uint8)
MAX_WORKERS = 256  # DataLoader processes
MAX_RANKS = 1 << 16  # torchrun world size
MIN_SEED, MAX_SEED = -(1 << 63), (1 << 63) - 1  # torch.manual_seed takes 64 bits; more is an error deep in torch
MAX_IMAGES_PER_CLASS = 100_000  # synthetic dataset images per class and split (the default: 1000)
MAX_COUNT = 1 << 40  # image counts and sums recorded in a checkpoint


class Fields:
    """Checks of one untrusted source. Failures raise `error` with 'WHERE: field 'a.b' must be ..., got ...'."""

    def __init__(self, error: type[AlexNetError] = ConfigError, where: str = "", noun: str = "config") -> None:
        self.error = error
        self.prefix = f"{where}: " if where else ""
        self.noun = noun

    def fail(self, field: str, wanted: str, value: Any) -> NoReturn:
        raise self.error(f"{self.prefix}field '{field}' must be {wanted}, got {short(value)}")

    def require(self, ok: bool, field: str, value: Any, wanted: str) -> None:
        if not ok:
            self.fail(field, wanted, value)

    def integer(self, value: Any, field: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"an integer in [{lo}, {hi}]", value)
        if not lo <= value <= hi:
            self.fail(field, f"an integer in [{lo}, {hi}]", value)
        return value

    def number(self, value: Any, field: str, lo: float = -math.inf, hi: float = math.inf, *,
               lo_open: bool = False, hi_open: bool = False, allow: Iterable[float] = ()) -> float:
        """A finite int or float in [lo, hi] (open ends where asked); `allow` lists extra values (-inf for 'none yet')."""
        wanted = f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, wanted, value)
        if value in tuple(allow):
            return float(value)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(field, wanted, value)
        try:
            x = float(value)  # an int beyond float's range is an OverflowError, not a number
        except OverflowError:
            self.fail(field, wanted, value)
        ok = (lo < x if lo_open else lo <= x) and (x < hi if hi_open else x <= hi)
        if not ok or not math.isfinite(x):
            self.fail(field, wanted, value)
        return x

    def boolean(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            self.fail(field, "true or false", value)
        return value

    def text(self, value: Any, field: str, max_len: int = MAX_NAME, choices: Iterable[str] | None = None,
             empty: bool = False) -> str:
        if choices is not None:
            options = tuple(choices)
            if not isinstance(value, str) or value not in options:
                self.fail(field, f"one of {', '.join(options)}", value)
            return value
        if not isinstance(value, str) or len(value) > max_len or (not value and not empty):
            self.fail(field, f"a {'' if empty else 'non-empty '}string of at most {max_len} characters", value)
        if "\x00" in value:
            self.fail(field, "a string without NUL characters", value)
        return value

    def optional(self, value: Any, check, *args, **kwargs) -> Any:
        """None, or what `check(value, *args, **kwargs)` accepts."""
        return None if value is None else check(value, *args, **kwargs)

    def mapping(self, value: Any, field: str, required: Iterable[str] = (), optional: Iterable[str] = (),
                *, extra: bool = True) -> dict[str, Any]:
        """A dict with string keys holding every `required` key; other keys are refused unless `extra`."""
        if not isinstance(value, dict):
            self.fail(field, "a mapping", value)
        for key in value:
            if not isinstance(key, str):
                self.fail(field, "a mapping with string keys", key)
        prefix = f"{field}." if field else ""
        for key in required:
            if key not in value:
                raise self.error(f"{self.prefix}{self.noun} lacks field '{prefix}{key}'")
        if not extra:
            known = set(required) | set(optional)
            unknown = sorted(k for k in value if k not in known)
            if unknown:
                raise self.error(f"{self.prefix}unknown field {short(prefix + unknown[0])} "
                                 f"(known: {', '.join(sorted(known))})")
        return value

    def items(self, value: Any, field: str, lo: int, hi: int) -> list[Any]:
        """A list or tuple of lo..hi items (the length is checked before anything looks at the items)."""
        if not isinstance(value, (list, tuple)):
            self.fail(field, f"a list of {lo} to {hi} items", value)
        if not lo <= len(value) <= hi:
            raise self.error(f"{self.prefix}field '{field}' must be a list of {lo} to {hi} items, "
                             f"got {len(value)} items")
        return list(value)

    def numbers(self, value: Any, field: str, length: int, lo: float = -math.inf, hi: float = math.inf,
                *, lo_open: bool = False) -> list[float]:
        """Exactly `length` finite numbers in range (a mean, a std, an eigenvalue list)."""
        items = self.items(value, field, length, length)
        return [self.number(v, f"{field}[{i}]", lo, hi, lo_open=lo_open) for i, v in enumerate(items)]
