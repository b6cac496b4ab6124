"""A tiny study end to end through the CLI: killed once a run has finished and the next is half-way, run again
(the finished run is not redone, the half-way one resumes), then its report checked against the runs' own
metrics.csv; a damaged metrics.csv is named and left out. And the jobs that do not train: the hand-crafted
baselines on tiny data."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from alexnet.ablate.runner import DONE, PARTIAL, train_status
from alexnet.cli import main
from data_factories import make_folder
from tiny_runs import run_cli

STUDY = {
    "name": "act", "title": "ReLU or tanh, tiny", "metrics": ["val_top1", "gap", "epochs_to_converge"],
    "arms": [{"name": "relu", "overrides": {}}, {"name": "tanh", "overrides": {"model": {"activation": "tanh"}}}],
    "claims": [{"arm": "tanh", "baseline": "relu", "metric": "val_top1", "direction": -1, "paper_text": "a guess"}],
}
TINY_STUDY = ["--width-mult", "0.125", "--image-size", "67", "--batch-size", "8", "--epochs", "2", "--seeds", "2",
              "--device", "cpu"]


def states_now(out) -> dict:
    """Each run folder's state as the runner reads it."""
    runs = sorted((out / "runs").glob("*")) if (out / "runs").is_dir() else []
    return {r.name: train_status(r) for r in runs}


def final_top1(run_dir) -> float:
    with open(run_dir / "metrics.csv", newline="") as f:
        return 100 * float(list(csv.DictReader(f))[-1]["val_top1"])


@pytest.mark.slow
def test_tiny_study_survives_a_kill_reuses_finished_runs_and_reports_their_numbers(tmp_path, capsys):
    data = make_folder(tmp_path / "data", classes=("a", "b", "c"), train=8, val=4)
    study = tmp_path / "act.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "abl"
    args = ["ablate", str(study), "--data", str(data), "--output-dir", str(out), *TINY_STUDY]
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alexnet", *args], stdout=log, stderr=subprocess.STDOUT)
        states: dict = {}
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:  # kill once a run is done, the next half-way
            if {DONE, PARTIAL} <= set(states_now(out).values()):
                os.kill(proc.pid, signal.SIGSTOP)  # frozen: what is on disk now is what the kill leaves
                states = states_now(out)
                if {DONE, PARTIAL} <= set(states.values()):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                os.kill(proc.pid, signal.SIGCONT)  # it moved on between the two looks: watch the next run
            time.sleep(0.005)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-2000:]
    done = [n for n, s in states.items() if s == DONE]
    partial = [n for n, s in states.items() if s == PARTIAL]
    before = {n: ((out / "runs" / n / "checkpoints" / "last.pt").stat().st_mtime_ns,
                  (out / "runs" / n / "metrics.csv").read_bytes()) for n in done}

    again = run_cli(*args, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"4 jobs, {len(done)} finished already, {4 - len(done)} to run (1 to resume)" in again.stdout
    for n, (mtime, rows) in before.items():  # not redone
        assert (out / "runs" / n / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime
        assert (out / "runs" / n / "metrics.csv").read_bytes() == rows
    assert "resuming from" in (out / "runs" / partial[0] / "log.txt").read_text()
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 4 and all(train_status(r) == DONE for r in runs)

    # the switch reached the model: the tanh arm's checkpoints hold a tanh AlexNet
    from alexnet.store.checkpoint import load_checkpoint

    plan = json.loads((out / "act" / "study.json").read_text())
    by_arm = {arm: [r for r in plan["runs"] if r["arm"] == arm] for arm in ("relu", "tanh")}
    tanh_run = out / "runs" / by_arm["tanh"][0]["name"]
    assert load_checkpoint(tanh_run, prefer="last").model_args["activation"] == "tanh"
    assert load_checkpoint(out / "runs" / by_arm["relu"][0]["name"], prefer="last").model_args["activation"] == "relu"

    # the report's numbers, recomputed here from metrics.csv
    report = json.loads((out / "act" / "report.json").read_text())
    top1 = {arm: {r["seed"]: final_top1(out / "runs" / r["name"]) for r in runs_} for arm, runs_ in by_arm.items()}
    for arm in top1:
        assert report["values"][arm]["val_top1"] == pytest.approx({str(s): v for s, v in top1[arm].items()})
    diffs = [top1["tanh"][s] - top1["relu"][s] for s in (0, 1)]
    mean = sum(diffs) / 2
    half = 12.706 * abs(diffs[0] - diffs[1]) / math.sqrt(2) / math.sqrt(2)  # s of two values = |a - b| / sqrt 2
    effect = report["claims"][0]["effect"]
    assert effect["n"] == 2 and effect["estimate"] == pytest.approx(mean)
    assert effect["low"] == pytest.approx(mean - half) and effect["high"] == pytest.approx(mean + half)
    md = (out / "act" / "report.md").read_text()
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]" in md
    relu = list(top1["relu"].values())
    assert f"{sum(relu) / 2:.2f} +- {abs(relu[0] - relu[1]) / math.sqrt(2):.2f} (n=2)" in md
    assert "structured conv1 filters (%)" in md  # every trained run's conv1 is measured (issue 25)
    assert all(0 <= v <= 100 for arm in top1 for v in report["values"][arm]["filter_structure"].values())
    html = (out / "act" / "report.html").read_text()
    assert "data:image/png;base64," in html and "src='http" not in html

    # a damaged metrics.csv: named, left out, listed; the rest still reported
    bad = out / "runs" / by_arm["tanh"][1]["name"] / "metrics.csv"
    bad.write_text("epoch,val_top1\n1,zero\n")
    assert main(["ablate", "report", str(out)]) == 0  # in this process: the CLI's own runs were above
    assert "Traceback" not in capsys.readouterr().err
    md = (out / "act" / "report.md").read_text()
    assert "## Skipped" in md and f"{bad}: line 2 is damaged" in md
    assert json.loads((out / "act" / "report.json").read_text())["values"]["tanh"]["val_top1"].keys() == {"0"}

    assert main(["ablate", "plan", str(study), "--data", str(data), "--output-dir", str(out), *TINY_STUDY]) == 0
    assert [line for line in capsys.readouterr().out.splitlines() if line.startswith("alexnet ")] == [
        f"alexnet train --resume {bad.parent} --no-progress"]  # the run whose metrics no longer say it finished


def test_hand_crafted_baselines_on_tiny_data(tmp_path):
    from alexnet.ablate.baselines import run_baseline
    from alexnet.ablate.metrics import read_rows
    from tiny_runs import tiny_config

    data = make_folder(tmp_path / "data", classes=("a", "b", "c"), train=6, val=3)
    cfg = tiny_config(data, tmp_path / "unused", **{"data.preset": "paper"}).to_dict()
    for kind in ("pixels", "hog"):
        row = run_baseline(kind, cfg, tmp_path / kind)
        (stored,) = read_rows(tmp_path / kind / "metrics.csv")
        assert stored["val_top1"] == pytest.approx(row["val_top1"], abs=1e-5)
        assert 0 <= row["val_top1"] <= 1 and row["val_top5"] == 1.0  # 3 classes: top-3 holds every label
        meta = json.loads((tmp_path / kind / "baseline.json").read_text())
        assert meta["train_images"] == 18 and meta["val_images"] == 9
    # the stripes differ in direction: gradients (HOG) separate them on the training set
    assert read_rows(tmp_path / "hog" / "metrics.csv")[0]["train_acc"] == 1.0
    assert json.loads((tmp_path / "pixels" / "baseline.json").read_text())["features"] == 3 * 24 * 24


def test_jobs_run_as_subprocesses_at_most_n_at_a_time_and_failures_are_listed(tmp_path, monkeypatch):
    """The scheduling of --jobs N, with `alexnet --version` standing in for `alexnet train` (no torch to load)."""
    from alexnet.ablate import runner
    from alexnet.ablate.runner import Job, _train_parallel

    monkeypatch.setattr(runner, "train_argv", lambda root, job: ["--version"] if job.name != "bad" else ["nope"])
    started = []
    jobs = [Job(name, "train", "new") for name in ("a", "b", "c", "bad")]
    failures = _train_parallel(tmp_path, jobs, 2, say=started.append)
    assert [name for name, _ in failures] == ["bad"] and "exited with 2" in failures[0][1]
    assert "alexnet" in (tmp_path / "logs" / "a.log").read_text()  # each subprocess's output in its log
    assert "invalid choice: 'nope'" in (tmp_path / "logs" / "bad.log").read_text()
    # never more than 2 running: the third starts only after one of the first two finished
    events = [line.split()[0] + " " + line.split()[1] for line in started if line.split()[0] in ("started", "finished",
                                                                                                  "failed:")]
    running = peak = 0
    for event in events:
        running += 1 if event.startswith("started") else -1
        peak = max(peak, running)
    assert peak == 2 and len([e for e in events if e.startswith("started")]) == 4


def test_every_studys_runs_share_one_queue_and_none_is_started_twice(tmp_path, monkeypatch, capsys):
    """`ablate all --jobs 2`: the runs of every study in one queue (the base run they share once), then each
    study's reports; `alexnet --version` stands in for `alexnet train`, so every run stays unfinished."""
    from alexnet.ablate import runner
    from alexnet.ablate.api import Session

    monkeypatch.setattr(runner, "train_argv", lambda root, job: ["--version"])
    session = Session.make("all", seeds=1, output_dir=tmp_path / "abl")
    session.plans = [p for p in session.plans if p.study.name in ("overlap", "dropout")]
    names = {r.name for p in session.plans for r in p.runs if r.kind == "train"}
    assert len(names) == 3  # max-pool 2/2, no dropout, and the base run that both studies contain
    assert session.run(jobs=2) == []
    out = capsys.readouterr().out
    assert "2 studies: 3 training runs to do, 2 at a time" in out
    started = [line.split()[1] for line in out.splitlines() if line.startswith("started ")]
    assert sorted(started) == sorted(names)  # each once: the studies' own passes do not start them again
    report = (tmp_path / "abl" / "overlap" / "report.md").read_text()
    assert (tmp_path / "abl" / "summary.md").is_file() and "## Pending" in report
