"""A run's configuration resolved in layers (defaults, a named recipe, the user's YAML, flags), from YAML files read
safely (no aliases, bounded size and depth), and written back atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from alexnet.config.choices import CONFIGS_DIR, DEFAULT_RECIPE, MAX_CONFIG_BYTES, MAX_YAML_DEPTH
from alexnet.config.specs import TrainConfig
from alexnet.config.values import adapt_fields
from alexnet.errors import ConfigError, clip, short
from alexnet.files import atomic_write_text


def list_recipes() -> list[str]:
    """Names accepted by `--recipe`: the YAML files in configs/."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml")) if CONFIGS_DIR.is_dir() else []


def recipe_path(name: str) -> Path:
    # Only the names listed: a recipe name from a YAML ("recipe: ../../x") must not reach other files.
    if not isinstance(name, str) or name not in list_recipes():
        known = ", ".join(list_recipes()) or f"none found in {CONFIGS_DIR}"
        raise ConfigError(f"unknown recipe {short(name)} (known: {known})")
    return CONFIGS_DIR / f"{name}.yaml"


class _ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader without aliases and with a depth limit.

    An alias (`*name`, `<<: *name`) makes PyYAML share one object between places, so nine lines of nested aliases
    ("billion laughs") load quickly into a graph that expands to 10**9 nodes the first time it is copied, merged or
    printed. A run config never needs one, so the first alias is refused with its line. The composer recurses once
    per level: nesting is refused past MAX_YAML_DEPTH instead of ending in a RecursionError.
    """

    _depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"line {mark.line + 1}: anchors and aliases (&name, *name, <<: *name) are not allowed "
                "in a run config; write the values out", None)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"line {mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels", None)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a run YAML into nested dicts; a missing, huge or unreadable file or bad YAML is a ConfigError naming it."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # bounded read: a FIFO or /dev/zero cannot make it read forever
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file ({e.strerror or e})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config file larger than {MAX_CONFIG_BYTES // 1024} KiB; a run config is a few "
                          "lines (refused unparsed)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read config file (not UTF-8 text: {e.reason} at byte {e.start})") from None
    try:
        raw = yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: plain types only
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({clip(str(e).strip().splitlines()[0])})") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # e.g. an int of 5000 digits
        raise ConfigError(f"{path}: not valid YAML ({type(e).__name__}: {clip(str(e))})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, data, optim, run), got {type(raw).__name__}")
    return raw


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Nested dict update: sections merge field by field, everything else is replaced."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def overrides_to_dict(overrides: dict[str, Any]) -> dict[str, Any]:
    """{"optim.lr": 0.01, "recipe": "paper"} -> {"optim": {"lr": 0.01}, "recipe": "paper"}; None values dropped."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *sections, leaf = key.split(".")
        node = nested
        for s in sections:
            node = node.setdefault(s, {})
        node[leaf] = value
    return nested


def resolve_config(
    recipe: str | None = None,
    config_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults <- recipe <- --config YAML <- flags. A YAML may name its own base with a top-level `recipe:`.

    With no recipe anywhere and no data source, the run is the default demo recipe on the built-in dataset.
    """
    user = load_yaml(config_path) if config_path is not None else {}
    flags = overrides_to_dict(overrides or {})
    name = recipe or user.get("recipe")
    data_given = _source(flags) or _source(user)
    if name is None and not data_given:
        name = DEFAULT_RECIPE
    layers: dict[str, Any] = {}
    if name is not None:
        path = recipe_path(name)
        layers = load_yaml(path)
        TrainConfig.from_dict(layers, origin=str(path))  # each layer is checked alone, so errors blame the right file
    if config_path is not None:
        TrainConfig.from_dict({k: v for k, v in user.items() if k != "recipe"}, origin=str(config_path))
    layers = merge(layers, user)
    layers["recipe"] = name
    merged = merge(layers, flags)
    if isinstance(merged.get("run"), dict) and merged["run"].get("adapt"):
        merged["run"]["adapt"] = _left_to_the_run(str(merged["run"]["adapt"]), [user, flags])
    return TrainConfig.from_dict(merged, origin="command line")


# Setting one of these (a flag or a YAML) takes the adaptable fields beside it out of `run.adapt` as well.
_IMPLIES = {"data.augment": ("data.crop_scale",)}


def _left_to_the_run(adapt: str, given: list[dict[str, Any]]) -> str:
    """`run.adapt` (a recipe's list of fields the run chooses itself) without the fields the user set."""
    keys = {f"{section}.{name}" for layer in given for section, fields in layer.items() if isinstance(fields, dict)
            for name in fields}
    keys |= {implied for key in keys for implied in _IMPLIES.get(key, ())}
    return ",".join(n for n in adapt_fields(adapt) if n not in keys)


def _source(layer: dict[str, Any]) -> Any:
    """data.source of one layer, if it has a data mapping (a malformed one is reported by from_dict, by name)."""
    data = layer.get("data")
    return data.get("source") if isinstance(data, dict) else None


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    """Written atomically: a crash mid-write or a reader (resume reads config.yaml) never sees half a file."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
