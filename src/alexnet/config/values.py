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


def check_cache_fields(cfg: Any) -> None:
    """Refuse the fields that read the training images from the uint8 cache where there is none (--loader pil), or
    where they mean nothing, naming every flag that takes them back (the fast recipe sets two of them). The training
    cache's scale (data.train_cache_scale, data.augment.random_resized_crop) is checked here too."""
    _F.number(cfg.data.train_cache_scale, "data.train_cache_scale", 1.0, 4.0)
    if cfg.data.train_cache_scale != 1.0 and cfg.data.preset == "paper":
        raise ConfigError("field 'data.train_cache_scale' is for random-resized crops: the paper preset cuts its "
                          "crops at the input size from the 256/224 resize (with it, add --train-cache-scale 1)")
    cached = []  # (field, the flag that takes it back)
    if cfg.model.conv1_init == "patches":
        cached.append(("'model.conv1_init' patches", "--conv1-init random"))
    if cfg.data.train_cache_scale != 1.0:
        cached.append((f"'data.train_cache_scale' {cfg.data.train_cache_scale:g}", "--train-cache-scale 1"))
    if cached and cfg.data.loader != "cache":
        fields, flags = " and ".join(f for f, _ in cached), " ".join(f for _, f in cached)
        reads = "reads" if len(cached) == 1 else "read"
        raise ConfigError(f"field{'s' * (len(cached) > 1)} {fields} {reads} the training images from the uint8 "
                          f"cache: not with --loader pil (with it, add {flags})")
