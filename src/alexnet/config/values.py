"""Parsers and predicates of single configuration values (channel lists, class weights, durations, devices), shared
by the config sections (alexnet.config.specs) and the training code that reads the values again."""

from __future__ import annotations

import math
import re
from typing import Any

from alexnet import checks
from alexnet.config.choices import DURATION_UNITS
from alexnet.errors import ConfigError, short

_F = checks.Fields(ConfigError)


def parse_channels(text: Any) -> tuple[int, ...]:
    """ "48,128,192,192,256" -> five positive ints (conv1..conv5), else a ConfigError naming model.channels."""
    parts = str(text).split(",") if isinstance(text, str) else []
    if len(parts) != 5 or not all(p.strip().isdigit() and 0 < int(p) <= checks.MAX_WIDTH for p in parts):
        _F.fail("model.channels", f"five channel counts c1,c2,c3,c4,c5 in [1, {checks.MAX_WIDTH}]", text)
    return tuple(int(p) for p in parts)


def parse_class_weights(text: str) -> list[float]:
    """ "w1,w2,...": positive finite numbers, else a ConfigError naming optim.class_weights."""
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        weights = []
    if not weights or not all(math.isfinite(w) and w > 0 for w in weights):
        _F.fail("optim.class_weights", "none, auto or positive finite numbers w1,w2,...", text)
    return weights


def parse_duration(text: str) -> float:
    """"90s", "5m", "1h30m", "2.5m" or a bare number of seconds -> seconds."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        seconds = float(value)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smh])", value)
        if not parts or "".join(n + u for n, u in parts) != value.replace(" ", ""):
            raise ConfigError(f"field 'run.time_budget' must be a duration like 90s, 5m or 1h30m, got {text!r}")
        seconds = sum(float(n) * DURATION_UNITS[u] for n, u in parts)
    if not 0 < seconds <= 30 * 24 * 3600:
        raise ConfigError(f"field 'run.time_budget' must be between 1 s and 30 days, got {text!r}")
    return seconds


def _require(ok: bool, key: str, value: Any, wanted: str) -> None:
    if not ok:
        raise ConfigError(f"field '{key}' must be {wanted}, got {short(value)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_device(device: Any) -> bool:
    if not isinstance(device, str):
        return False
    if device in ("auto", "cpu", "cuda", "mps"):
        return True
    return device.startswith("cuda:") and device[5:].isdigit() and len(device) <= 9  # cuda:0 .. cuda:9999


def adapt_fields(text: str) -> list[str]:
    """run.adapt, "data.crop_scale, optim.tta" -> the field names (RunSpec checks each is adaptable)."""
    return [n.strip() for n in text.split(",") if n.strip()]
