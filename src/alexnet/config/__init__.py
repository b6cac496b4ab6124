"""Typed configuration for a training run: what to train, on what, how, and where to write it.

A run is resolved in layers, each overriding the one before: the dataclass defaults, a named recipe
(`configs/<name>.yaml`), the user's `--config run.yaml`, then command-line flags given as dotted keys
(`{"optim.lr": 0.01}`). The resolved `TrainConfig` is saved into the run folder and into every checkpoint as a
plain dict, so a run can be read back and resumed without the command line.

Each option is declared once, here: its type and default by the dataclass field, its flag, help, metavar and
choices by the field's metadata (`flag()` or `yaml_only()`). `alexnet train` generates its flags from them
(`train_flags()`), as litgpt does with jsonargparse. The choice lists below are the only copies: validation, the
CLI and the library modules that take the same names import them.

Modules: choices (the choice lists: the only copies), specs (the typed sections and the generated flags), loading
(recipes, YAML, the layers resolved). No torch import here: the CLI parses and validates a configuration before
paying for torch.
"""

from alexnet.config.choices import (
    ACTIVATIONS,
    ADAPTABLE,
    AMP_MODES,
    BENCH_SECTION_ALIASES,
    BENCH_SECTIONS,
    CLASS_WEIGHTS,
    CONFIGS_DIR,
    CONV1_INITS,
    DEFAULT_RECIPE,
    DURATION_UNITS,
    EXPORT_FORMATS,
    FEATURE_FORMATS,
    FREEZE_POINTS,
    IN_CHANNELS,
    INIT_TORCHVISION,
    INITS,
    LAYOUTS,
    LOADERS,
    LR_SCHEDULES,
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    NORMS,
    OPTIMIZERS,
    POOLINGS,
    PRESETS,
    RUNTIMES,
    SPLITS,
    TRAIN_AMP_MODES,
    TTA_MODES,
)
from alexnet.config.loading import (
    list_recipes,
    load_yaml,
    merge,
    overrides_to_dict,
    recipe_path,
    resolve_config,
    save_yaml,
)
from alexnet.config.specs import (
    DataSpec,
    FlagSpec,
    ModelSpec,
    OptimSpec,
    RunSpec,
    TrainConfig,
    flag,
    train_flags,
    yaml_only,
)
from alexnet.config.values import parse_channels, parse_class_weights, parse_duration

__all__ = [
    "ACTIVATIONS",
    "AMP_MODES",
    "TRAIN_AMP_MODES",
    "BENCH_SECTIONS",
    "BENCH_SECTION_ALIASES",
    "CLASS_WEIGHTS",
    "CONFIGS_DIR",
    "DEFAULT_RECIPE",
    "DURATION_UNITS",
    "EXPORT_FORMATS",
    "FEATURE_FORMATS",
    "FREEZE_POINTS",
    "INITS",
    "INIT_TORCHVISION",
    "IN_CHANNELS",
    "LAYOUTS",
    "LOADERS",
    "LR_SCHEDULES",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
    "NORMS",
    "OPTIMIZERS",
    "POOLINGS",
    "PRESETS",
    "RUNTIMES",
    "SPLITS",
    "TTA_MODES",
    "ADAPTABLE",
    "CONV1_INITS",
    "list_recipes",
    "load_yaml",
    "merge",
    "overrides_to_dict",
    "recipe_path",
    "resolve_config",
    "save_yaml",
    "DataSpec",
    "FlagSpec",
    "ModelSpec",
    "OptimSpec",
    "RunSpec",
    "TrainConfig",
    "flag",
    "parse_channels",
    "parse_class_weights",
    "parse_duration",
    "train_flags",
    "yaml_only",
]
