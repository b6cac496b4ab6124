"""What `alexnet ablate` does, as functions: a Session (studies + settings + output folder) that plans, runs and
reports; `report(DIR)` from whatever has finished; `run_job` for one scheduler-made job."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet.ablate.catalog import every_study, get_study
from alexnet.ablate.plan import (
    Settings,
    StudyPlan,
    make_plan,
    open_output_dir,
    read_plan,
    study_folders,
    write_plan,
)
from alexnet.ablate.report import write_report, write_summary
from alexnet.ablate.runner import DONE, commands, jobs_of, run_plan, run_side_job, train_in_process, train_pooled
from alexnet.ablate.studies import (
    FORBIDDEN,
    METRICS,
    PROFILES,
    STUDIES,
    Study,
    _flatten,
)
from alexnet.ablate.sweep import choose_rates
from alexnet.config import load_yaml
from alexnet.errors import AlexNetError, ConfigError, short

NAMED_SOURCES = ("shapes", "mnist", "fashion-mnist", "cifar10")  # --data values that are not paths (data.sources)


def describe_studies() -> str:
    lines = []
    for s in every_study().values():
        arms = ", ".join(a.name for a in s.arms) + (" (not in all: CIFAR-10's own nets)" if s.name not in STUDIES
                                                     else "")
        measured = ", ".join(METRICS[k][0] for k in s.metrics)
        lines.append(f"{s.name:9} {s.title}\n          arms: {arms}; measures: {measured}")
    return "\n".join(lines)


def _user_overrides(config: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """The --config YAML's fields and the flags, as dotted keys (flags win); the runner's own keys refused."""
    out: dict[str, Any] = {}
    if config is not None:
        raw = load_yaml(config)
        if "recipe" in raw:
            raise ConfigError(f"{config}: a study's runs start from its --profile, not a recipe: drop 'recipe'")
        out.update(_flatten(raw, str(config)))
    out.update(flags)
    for key in out:
        if key in FORBIDDEN:
            raise ConfigError(f"{key} cannot be set for a study: the runner sets each run's folder and seed, and "
                              "every run trains its whole epochs")
    return out


def default_output_dir(profile: str, data: str | None) -> Path:
    tail = "" if data is None else "-" + re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data.rstrip("/")).name or "data")
    return Path("runs") / f"ablate-{profile}{tail}"


@dataclass
class Session:
    studies: list[Study]
    all: bool
    root: Path
    plans: list[StudyPlan]

    @classmethod
    def make(cls, name: str, *, profile: str = "quick", data: str | None = None,
             overrides: dict[str, Any] | None = None, config: str | None = None, seeds: int = 3,
             output_dir: str | Path | None = None) -> Session:
        """Check everything (study, profile, overrides, output folder) before anything trains."""
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {short(profile)} (known: {', '.join(PROFILES)})")
        studies = list(STUDIES.values()) if name == "all" else [get_study(name)]
        if "data.source" in (overrides or {}):
            data = (overrides or {}).pop("data.source")
        if data is not None and data not in NAMED_SOURCES and not Path(data).exists():
            raise ConfigError(f"--data {short(data)}: no such file or folder (or one of {', '.join(NAMED_SOURCES)})")
        settings = Settings(profile, data, _user_overrides(config, dict(overrides or {})))
        root = Path(output_dir) if output_dir is not None else default_output_dir(profile, data)
        plans = [make_plan(s, root, settings, seeds) for s in studies]  # validates every arm's config
        open_output_dir(root, settings)
        for p in plans:
            write_plan(p)
        return cls(studies, name == "all", root, plans)

    def plan_text(self) -> str:
        lines = [f"# alexnet ablate: {self.root} (train runs first; the `ablate job` lines need their runs "
                 "finished); then: alexnet ablate report " + str(self.root)]
        seen: set[str] = set()
        for p in self.plans:
            todo = [(job, cmd) for job, cmd in commands(p) if job.name not in seen]
            seen.update(job.name for job, _ in todo)
            lines.append(f"# {p.study.name}: {len(todo)} to run")
            lines += [cmd for job, cmd in todo if job.kind == "train"]
            lines += [cmd for job, cmd in todo if job.kind != "train"]
        return "\n".join(lines)

    def run(self, jobs: int = 1) -> list[tuple[str, str]]:
        if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= 256:
            raise ConfigError(f"--jobs must be 1..256, got {short(jobs)}")
        failures = []
        for i, p in enumerate(self.plans):  # an arm whose rate a sweep chooses: the sweep first, then its plan
            if p.study.lr_sweep:
                study, swept = choose_rates(p.study, self.root, p.settings)
                failures += swept
                self.plans[i] = make_plan(study, self.root, p.settings, p.seeds)
                write_plan(self.plans[i])
        self.results = []
        tried: frozenset[str] = frozenset()
        if jobs > 1 and len(self.plans) > 1:  # one queue for every study's runs: no core waits between studies
            tried, failures = train_pooled(self.plans, jobs)
        for p in self.plans:
            failures += run_plan(p, jobs=jobs, tried=tried)
            self.results.append(write_report(p))
        if self.all:
            write_summary(self.root, self.results)
        return failures

    def report_paths(self) -> list[str]:
        out = [str(p.folder / "report.md") for p in self.plans]
        if self.all:
            out.append(str(self.root / "summary.md"))
        return out


def report(path: Path) -> list[Path]:
    """Reports of every study in an ablate folder (or of one study's folder), and the summary of them all."""
    if not path.is_dir():
        raise AlexNetError(f"{path}: no such folder")
    folders = study_folders(path)
    if not folders:
        raise AlexNetError(f"{path}: holds no study yet (no STUDY/study.json)")
    results = [write_report(read_plan(f)) for f in folders]
    out = [f / "report.md" for f in folders]
    if len(folders) > 1:
        out.append(write_summary(path, results))
    return out


def run_job(root: Path, study: str, name: str) -> None:
    """One job of a plan, by name (what `alexnet ablate plan` prints for the jobs that do not train)."""
    plan = read_plan(root / study)
    for job in jobs_of(plan):
        if job.name == name:
            if job.status == DONE:
                print(f"{name}: finished already")
            elif job.kind == "train":
                train_in_process(root, job)
            else:
                run_side_job(plan, job)
            return
    raise AlexNetError(f"{root / study}: no job {short(name)} in this study")
