"""Runs a study's plan: every run that is not finished, finished runs left alone, partial ones resumed.

A run's state is read from its folder, never from a record of the runner's, so runs made by `alexnet ablate plan`'s
commands on a cluster count the same:
- done: metrics.csv's last epoch is the run's own `run.epochs` (config.yaml), and checkpoints/last.pt was written
  after it (the epoch's metrics are written first, then last.pt: a run killed between the two is resumed);
- partial: a last.pt exists (`alexnet train --resume`, which continues exactly);
- new: anything else (a run killed before its first checkpoint starts again: `alexnet train` accepts the folder).

With `jobs` 1 the runs train in this process, one after another; with more, each is an `alexnet train`
subprocess (its output in DIR/logs/NAME.log), `jobs` at a time, the CPU's threads shared between them; `ablate
all` puts every study's runs in one queue (`train_pooled`), then makes each study's evaluations and reports.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alexnet.ablate import baselines
from alexnet.ablate.plan import StudyPlan, config_path
from alexnet.config import resolve_config
from alexnet.errors import AlexNetError
from alexnet.train import fit, resume_config
from alexnet.training.signals import RunInterrupted

DONE, PARTIAL, NEW = "done", "partial", "new"


@dataclass
class Job:
    name: str
    kind: str  # train | tencrop | pixels | hog
    status: str
    source: str | None = None  # tencrop: the run it evaluates


def run_dir(root: Path, name: str) -> Path:
    return root / "runs" / name


def eval_dir(root: Path, name: str) -> Path:
    return root / "evals" / name


def _last_epoch(metrics: Path) -> int | None:
    try:
        with open(metrics, newline="", encoding="utf-8") as f:
            epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        return None
    return epochs[-1] if epochs else None


def _planned_epochs(folder: Path) -> int | None:
    import yaml

    try:
        cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        return int(cfg["run"]["epochs"])
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
        return None


def train_status(folder: Path) -> str:
    last, metrics = folder / "checkpoints" / "last.pt", folder / "metrics.csv"
    if not last.is_file():
        return NEW
    epochs = _planned_epochs(folder)
    if (epochs is not None and metrics.is_file() and _last_epoch(metrics) == epochs
            and last.stat().st_mtime_ns >= metrics.stat().st_mtime_ns):
        return DONE
    return PARTIAL


def job_status(root: Path, name: str, kind: str, source: str | None = None) -> str:
    if kind == "train":
        return train_status(run_dir(root, name))
    if kind == "tencrop":
        metrics, last = eval_dir(root, name) / "metrics.csv", run_dir(root, source or "") / "checkpoints" / "last.pt"
        fresh = metrics.is_file() and last.is_file() and metrics.stat().st_mtime_ns >= last.stat().st_mtime_ns
        return DONE if fresh and _last_epoch(metrics) == 1 else NEW
    return DONE if _last_epoch(run_dir(root, name) / "metrics.csv") == 1 else NEW


def jobs_of(plan: StudyPlan) -> list[Job]:
    """Training runs first (each once, though several arms may share one), then evaluations and baselines."""
    names = list(dict.fromkeys([r.name for r in plan.runs if r.kind == "train"]
                               + [r.source for r in plan.runs if r.kind == "tencrop"]))
    jobs = [Job(n, "train", job_status(plan.root, n, "train")) for n in names]
    side = {r.name: r for r in plan.runs if r.kind != "train"}  # a baseline is one job for every seed
    for r in side.values():
        jobs.append(Job(r.name, r.kind, job_status(plan.root, r.name, r.kind, r.source), r.source))
    return jobs


def commands(plan: StudyPlan, program: str = "alexnet") -> list[tuple[Job, str]]:
    """One shell command per unfinished job, for any scheduler (a Slurm array, GNU parallel, torchrun per run):
    `alexnet train` for a training run (new: --config, partial: --resume), `alexnet ablate job` for the rest."""
    import shlex

    out = []
    for job in jobs_of(plan):
        if job.status == DONE:
            continue
        if job.kind == "train" and job.status == PARTIAL:
            cmd = f"{program} train --resume {shlex.quote(str(run_dir(plan.root, job.name)))} --no-progress"
        elif job.kind == "train":
            cmd = f"{program} train --config {shlex.quote(str(config_path(plan.root, job.name)))} --no-progress"
        else:
            cmd = (f"{program} ablate job {shlex.quote(str(plan.root))} {shlex.quote(plan.study.name)} "
                   f"{shlex.quote(job.name)}")
        out.append((job, cmd))
    return out


# --- running -------------------------------------------------------------------------------------------------------


def train_in_process(root: Path, job: Job) -> None:
    folder = run_dir(root, job.name)
    if job.status == PARTIAL:
        fit(resume_config(folder), resume=folder, progress=False)
    else:
        fit(resolve_config(config_path=config_path(root, job.name)), progress=False)


def train_argv(root: Path, job: Job) -> list[str]:
    if job.status == PARTIAL:
        return ["train", "--resume", str(run_dir(root, job.name)), "--no-progress"]
    return ["train", "--config", str(config_path(root, job.name)), "--no-progress"]


def run_side_job(plan: StudyPlan, job: Job) -> None:
    """A job that does not train: the 10-crop evaluation of a run, or a hand-crafted baseline."""
    if job.kind == "tencrop":
        baselines.ten_crop_eval(run_dir(plan.root, job.source or ""), eval_dir(plan.root, job.name))
    else:
        baselines.run_baseline(job.kind, plan.configs[job.name], run_dir(plan.root, job.name))


def run_plan(plan: StudyPlan, jobs: int = 1, say: Callable[[str], None] = print,
             tried: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Every unfinished job of the plan; returns the failures as (job name, message). A signal that stops a run
    in this process (SIGTERM, SIGINT) stops the study: it propagates after the run saved its checkpoint. `tried`:
    training runs that `train_pooled` already ran in this session (a failed one is not tried twice)."""
    todo = jobs_of(plan)
    done = [j for j in todo if j.status == DONE]
    pending = [j for j in todo if j.status != DONE]
    say(f"{plan.study.name}: {len(todo)} jobs, {len(done)} finished already, {len(pending)} to run "
        f"({sum(j.status == PARTIAL for j in pending)} to resume)")
    failures: list[tuple[str, str]] = []
    trains = [j for j in pending if j.kind == "train" and j.name not in tried]
    if jobs > 1 and len(trains) > 1:
        failures += _train_parallel(plan.root, trains, jobs, say)
    else:
        for i, job in enumerate(trains, 1):
            say(f"[{i}/{len(trains)}] {'resuming' if job.status == PARTIAL else 'training'} {job.name}")
            started = time.perf_counter()
            try:
                train_in_process(plan.root, job)
            except AlexNetError as e:
                if isinstance(e, RunInterrupted):
                    raise
                failures.append((job.name, str(e)))
                say(f"  failed: {e}")
                continue
            say(f"  finished in {time.perf_counter() - started:.0f} s")
    for job in (j for j in pending if j.kind != "train"):
        if job.kind == "tencrop" and job_status(plan.root, job.source or "", "train") != DONE:
            failures.append((job.name, f"its run {job.source} has not finished"))
            continue
        say(f"{job.kind}: {job.name}")
        try:
            run_side_job(plan, job)
        except AlexNetError as e:
            failures.append((job.name, str(e)))
            say(f"  failed: {e}")
    return failures


def train_pooled(plans: list[StudyPlan], jobs: int, say: Callable[[str], None] = print):
    """The unfinished training runs of several studies of one folder (`ablate all`) in one queue of `jobs`
    subprocesses, in the studies' order: a study's last run no longer leaves cores idle while the next study's runs
    wait. Returns (the runs tried, their failures); run_plan then does each study's evaluations and baselines."""
    queue: dict[str, Job] = {}
    for plan in plans:
        for job in jobs_of(plan):
            if job.kind == "train" and job.status != DONE:
                queue.setdefault(job.name, job)
    if not queue:
        return frozenset(), []
    say(f"{len(plans)} studies: {len(queue)} training runs to do, {jobs} at a time")
    return frozenset(queue), _train_parallel(plans[0].root, list(queue.values()), jobs, say)


def _train_parallel(root: Path, trains: list[Job], jobs: int, say: Callable[[str], None]):
    """`jobs` `alexnet train` subprocesses at a time in the ablate folder `root`, each with its share of the
    cores."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    waiting, running, failures = list(trains), [], []
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                job = waiting.pop(0)
                log = open(logs / f"{job.name}.log", "ab")  # noqa: SIM115 (closed when the process ends)
                proc = subprocess.Popen([sys.executable, "-m", "alexnet", *train_argv(root, job)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((job, proc, log))
                say(f"started {job.name} (pid {proc.pid}; log {logs / (job.name + '.log')})")
            time.sleep(0.5)
            for item in list(running):
                job, proc, log = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                log.close()
                if proc.returncode != 0:
                    failures.append((job.name, f"alexnet train exited with {proc.returncode}; see "
                                               f"{logs / (job.name + '.log')}"))
                    say(f"failed: {job.name} (exit {proc.returncode})")
                else:
                    say(f"finished {job.name}")
    finally:
        for _job, proc, _log in running:  # interrupted: each run saves its checkpoint on SIGTERM, then ends
            proc.terminate()
        for _job, proc, log in running:
            proc.wait()
            log.close()
    return failures
