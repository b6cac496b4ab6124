"""A study on disk: arm x seed -> run folders, each run's config YAML, and the exact command that makes it.

The output folder of `alexnet ablate` (DIR):

    DIR/ablate.json              what every run here shares: profile, data, the user's overrides (a marker: another
                                 profile or data source is refused, so two studies never mix their runs)
    DIR/configs/NAME.yaml        the resolved training config of run NAME (`alexnet train --config` takes it)
    DIR/runs/NAME/               an ordinary run folder made by `alexnet train` (or a baseline's metrics.csv)
    DIR/evals/NAME/metrics.csv   the 10-crop evaluation of run NAME's last.pt (the tencrop study)
    DIR/STUDY/study.json         the study's definition and its runs (what `alexnet ablate report` reads)
    DIR/STUDY/report.md, report.html, curves.png
    DIR/summary.md, summary.html (`alexnet ablate all`)

A run is named by what it trains, not by the study that asked for it: `<switches>-<hash>-seed<N>`, the hash over
the resolved config with the model section replaced by the architecture it builds. So the base run that the lrn,
overlap, towers, init, tencrop and features studies all contain is trained once per seed and shared. A
hand-crafted baseline (`features-<kind>-<hash>`) gives the same numbers for every seed and is fitted once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.ablate.studies import MAX_SEEDS, PROFILE_BASE, PROFILES, STUDIES, Arm, Claim, Study, check_study
from alexnet.config import ModelSpec, TrainConfig, resolve_config
from alexnet.errors import AlexNetError, ConfigError, short
from alexnet.files import atomic_write_text
from alexnet.models import model_config

MARKER = "ablate.json"
FORMAT = 1
SEED_STRIDE = 1  # run.seed of seed index i is i: `--seeds 5` after `--seeds 3` adds seeds 3 and 4


@dataclass(frozen=True)
class Settings:
    """What every run of an output folder shares."""

    profile: str = "quick"
    data: str | None = None  # None: the built-in dataset
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # the user's, dotted keys

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "data": self.data, "overrides": dict(sorted(self.overrides.items()))}


@dataclass(frozen=True)
class Run:
    """One arm x seed of a study."""

    name: str  # folder name under DIR/runs (train, pixels, hog) or DIR/evals (tencrop)
    arm: str
    seed: int
    kind: str  # studies.ARM_KINDS
    source: str | None = None  # tencrop: the train run whose last.pt it evaluates


@dataclass
class StudyPlan:
    study: Study
    root: Path  # DIR
    settings: Settings
    seeds: int
    runs: list[Run]
    configs: dict[str, dict[str, Any]]  # run name -> its resolved TrainConfig dict (train runs and baselines' data)

    @property
    def folder(self) -> Path:
        return self.root / self.study.name

    def runs_of(self, arm: str) -> list[Run]:
        return [r for r in self.runs if r.arm == arm]


# --- the output folder -------------------------------------------------------------------------------------------


def open_output_dir(root: Path, settings: Settings) -> None:
    """Make DIR an ablate folder for these settings, or check that it is one; refuse anything else, by name."""
    marker = root / MARKER
    if marker.is_file():
        held = read_marker(root)
        if held != settings.to_dict():
            diff = [f"{k}: {short(held.get(k))} there, {short(v)} here" for k, v in settings.to_dict().items()
                    if held.get(k) != v]
            raise ConfigError(f"{root} holds the studies of other settings ({'; '.join(diff)}): their runs would "
                              "mix with these; choose another --output-dir (or the same settings)")
        return
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"{root}: exists and is not a folder; choose another --output-dir")
        entries = sorted(p.name for p in root.iterdir())
        if entries:
            what = "an alexnet run folder" if "checkpoints" in entries or "metrics.csv" in entries else "not empty"
            raise ConfigError(f"{root}: {what} and not an `alexnet ablate` folder (no {MARKER}; it holds "
                              f"{', '.join(entries[:3])}{' ...' if len(entries) > 3 else ''}): choose a new or empty "
                              "--output-dir")

    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"tool": "alexnet ablate", "format": FORMAT, **settings.to_dict()},
                                         indent=2) + "\n")


def read_marker(root: Path) -> dict[str, Any]:
    try:
        raw = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{root / MARKER}: unreadable ({e}); is {root} an `alexnet ablate` folder?") from None
    if not isinstance(raw, dict) or raw.get("tool") != "alexnet ablate":
        raise ConfigError(f"{root / MARKER}: not an `alexnet ablate` marker")
    return {k: raw.get(k) for k in ("profile", "data", "overrides")}


# --- resolving runs ----------------------------------------------------------------------------------------------


def arm_overrides(study: Study, arm: Arm, settings: Settings) -> dict[str, Any]:
    """Layers, each overriding the one before: the profile's base, the study's base, the user's overrides (YAML
    and flags), the arm's own switch (which nothing may override: it is what the study measures)."""
    base = {k: v for k, v in PROFILE_BASE[settings.profile].items() if k != "recipe"}
    if settings.data is not None:  # a folder by its absolute path: the commands of `plan` run from anywhere
        base["data.source"] = str(Path(settings.data).resolve()) if Path(settings.data).exists() else settings.data
    return {**base, **study.base, **settings.overrides, **arm.overrides}


def resolve_train_config(study: Study, arm: Arm, settings: Settings) -> dict[str, Any]:
    """The arm's TrainConfig as a plain dict, validated (a bad override is a ConfigError naming the field)."""
    if settings.profile not in PROFILES:
        raise ConfigError(f"unknown profile {short(settings.profile)} (known: {', '.join(PROFILES)})")
    cfg = resolve_config(recipe=PROFILE_BASE[settings.profile].get("recipe"),
                         overrides=arm_overrides(study, arm, settings))
    return cfg.to_dict()


def _identity(cfg: dict[str, Any], reduced: bool = True) -> dict[str, Any]:
    """What makes two runs the same run: the config with the model section replaced by the architecture it
    builds (norm=None and norm="lrn" build the same alexnet), less the seed and the output folder, and only where
    it differs from the defaults: an option added to a later version, at its default, renames no finished run."""
    spec = ModelSpec(**cfg["model"])
    arch = dataclasses.asdict(model_config(spec.name, **spec.architecture()))
    variant = dataclasses.asdict(model_config(spec.name))
    model = {k: v for k, v in cfg["model"].items() if k not in spec.architecture()}
    run = {k: v for k, v in cfg["run"].items() if k not in ("seed", "output_dir")}
    data = dict(cfg["data"])
    if data.get("augment") is None and data.get("preset") is not None:
        data["augment"] = data["preset"] == "paper"  # the preset's own default (config.DataSpec.augment)
    if reduced:
        arch = {k: v for k, v in arch.items() if variant[k] != v}
    full = _flat({**cfg, "model": {**model, "architecture": arch}, "data": data, "run": run, "recipe": None})
    if not reduced:
        return full
    defaults = _flat(TrainConfig().to_dict())
    return {k: v for k, v in full.items() if k not in defaults or defaults[k] != v}


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_stem(cfg: dict[str, Any], reference: dict[str, Any]) -> str:
    """`<switches>-<hash>`: the switches where this run differs from the profile's base run, and a hash of its
    identity (so two names never collide whatever the switches' text is cut to)."""
    ident = _identity(cfg)
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]
    mine, ref = _identity(cfg, reduced=False), _identity(reference, reduced=False)
    diffs = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in sorted(mine.items()) if ref.get(k) != v]
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", "_".join(diffs)).strip("-")[:48].strip("-") or "base"
    return f"{slug}-{digest}"


def make_plan(study: Study, root: Path, settings: Settings, seeds: int) -> StudyPlan:
    """Every run of the study (arm x seed) with its resolved config; nothing is written."""
    check_study(study)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds must be 1..{MAX_SEEDS}, got {short(seeds)}")
    reference = resolve_train_config(Study("base", "base", (Arm("base"),), ("val_top1",)), Arm("base"), settings)
    runs: list[Run] = []
    configs: dict[str, dict[str, Any]] = {}
    base_stem = run_stem(resolve_train_config(study, Arm("base"), settings), reference)
    for arm in study.arms:
        cfg = resolve_train_config(study, arm, settings)
        stem = run_stem(cfg, reference)
        for seed in range(seeds):
            run_seed = seed * SEED_STRIDE
            if arm.kind == "tencrop":
                source = f"{base_stem}-seed{run_seed}"
                runs.append(Run(f"{source}-tencrop", arm.name, seed, arm.kind, source))
                continue
            if arm.kind == "train":
                name = f"{stem}-seed{run_seed}"
            else:  # a baseline fits the same numbers for every seed (baselines.py): one job that every seed reads
                name, run_seed = f"features-{arm.kind}-{stem}", 0
            runs.append(Run(name, arm.name, seed, arm.kind))
            if name in configs:
                continue
            c = json.loads(json.dumps(cfg))  # a deep copy of plain types
            c["run"]["seed"] = run_seed
            c["run"]["output_dir"] = str((root / "runs" / name).resolve())
            configs[name] = c
    # the tencrop study evaluates the base run: it trains it when no other study has
    for run in [r for r in runs if r.kind == "tencrop"]:
        if run.source not in configs:
            c = json.loads(json.dumps(resolve_train_config(study, Arm("base"), settings)))
            c["run"]["seed"] = run.seed * SEED_STRIDE
            c["run"]["output_dir"] = str((root / "runs" / run.source).resolve())
            configs[run.source] = c
    return StudyPlan(study, root, settings, seeds, runs, configs)


# --- writing the plan, and reading it back -----------------------------------------------------------------------


def write_plan(plan: StudyPlan) -> None:
    """configs/NAME.yaml for every run to train, and STUDY/study.json: what `report` and the runner read."""
    import yaml

    (plan.root / "configs").mkdir(parents=True, exist_ok=True)
    (plan.root / "runs").mkdir(parents=True, exist_ok=True)
    for name, cfg in plan.configs.items():
        path = config_path(plan.root, name)
        text = yaml.safe_dump(cfg, sort_keys=False)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
    plan.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.folder / "study.json", json.dumps({
        "format": FORMAT, "study": study_to_dict(plan.study), "settings": plan.settings.to_dict(),
        "seeds": plan.seeds, "runs": [dataclasses.asdict(r) for r in plan.runs],
        "configs": plan.configs,
    }, indent=1, default=str) + "\n")


def config_path(root: Path, name: str) -> Path:
    return root / "configs" / f"{name}.yaml"


def study_to_dict(study: Study) -> dict[str, Any]:
    return dataclasses.asdict(study)


def study_from_dict(raw: dict[str, Any]) -> Study:
    arms = tuple(Arm(**a) for a in raw["arms"])
    claims = tuple(Claim(**c) for c in raw.get("claims", ()))
    rest = {k: v for k, v in raw.items() if k not in ("arms", "claims", "metrics")}
    if isinstance(rest.get("lr_sweep"), list):  # JSON's list back into the tuple a Study holds
        rest["lr_sweep"] = tuple(rest["lr_sweep"])
    return Study(arms=arms, claims=claims, metrics=tuple(raw["metrics"]), **rest)


def read_plan(folder: Path) -> StudyPlan:
    """STUDY/study.json back into a StudyPlan; a damaged file is an AlexNetError naming it."""
    path = folder / "study.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        study = study_from_dict(raw["study"])
        s = raw["settings"]
        settings = Settings(s["profile"], s["data"], s["overrides"])
        runs = [Run(**r) for r in raw["runs"]]
        return StudyPlan(study, folder.parent, settings, int(raw["seeds"]), runs, raw.get("configs", {}))
    except FileNotFoundError:
        raise AlexNetError(f"{folder}: no study.json: not a study folder of `alexnet ablate`") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AlexNetError(f"{path}: damaged ({type(e).__name__}: {short(str(e))}); run the study again to "
                           "rewrite it") from None


def study_folders(root: Path) -> list[Path]:
    """The study folders under an ablate DIR (or DIR itself when it is one study's folder)."""
    if (root / "study.json").is_file():
        return [root]
    if not (root / MARKER).is_file():
        raise AlexNetError(f"{root}: not an `alexnet ablate` folder (no {MARKER} and no study.json)")

    order = {name: i for i, name in enumerate(STUDIES)}  # the built-in studies in the paper's order, then the rest
    folders = [p for p in root.iterdir() if (p / "study.json").is_file()]
    return sorted(folders, key=lambda p: (order.get(p.name, len(order)), p.name))
