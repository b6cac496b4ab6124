"""Every built-in study by name: the paper's claims on any data (studies.STUDIES, what `all` runs) and its CIFAR-10
experiments (cifar_studies), or a study YAML file by path."""

from __future__ import annotations

from pathlib import Path

from alexnet.ablate.cifar_studies import CIFAR_STUDIES
from alexnet.ablate.studies import STUDIES, Study, load_study_file
from alexnet.errors import ConfigError, short


def every_study() -> dict[str, Study]:
    return {**STUDIES, **{s.name: s for s in CIFAR_STUDIES}}


def get_study(name: str) -> Study:
    """A built-in study by name, or a study YAML file by path."""
    every = every_study()
    if name in every:
        return every[name]
    if isinstance(name, str) and (name.endswith((".yaml", ".yml")) or Path(name).is_file()):
        return load_study_file(name)
    raise ConfigError(f"unknown study {short(name)} (built in: {', '.join(every)}, all; or a study .yaml file)")
