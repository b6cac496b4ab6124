"""`alexnet ablate`: the paper's claims, measured. Parses and calls alexnet.ablate; holds no logic."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from alexnet.ablate.studies import PROFILES
from alexnet.config import train_flags

ACTIONS = ("plan", "report", "job", "list")
# train flags that the study sets itself: each run's folder and seed
NOT_OVERRIDABLE = ("run.output_dir", "run.seed")

USAGE_WORDS = """
  alexnet ablate STUDY|all|FILE.yaml [options]   run a study (finished runs reused, partial ones resumed), report
  alexnet ablate plan STUDY|all [options]        print one command per unfinished run, for any scheduler
  alexnet ablate report DIR                      build the reports from whatever has finished in DIR
  alexnet ablate list                            the built-in studies and what they measure
studies: relu, lrn, overlap, dropout, augment, towers, tencrop, init, features (all: every one, and a summary);
  on CIFAR-10 (--data CIFAR): figure1 (the paper's Figure 1) and lrn-cifar (13% vs 11%), each with a learning-rate
  sweep per arm first
every `alexnet train` flag (--epochs, --width-mult, --lr, --data, ...) applies to every arm, except the arm's switch
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "ablate", help="the paper's claims, measured: one study per claim, with seeds, intervals and the paper's "
        "effect beside ours", description="Each study trains a few arms that differ in one switch, over several "
        "seeds, and writes report.md / report.html with the paper's effect beside the measured one.",
        usage="%(prog)s [plan|report|list] STUDY|all|DIR [options]", epilog=USAGE_WORDS,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("words", nargs="+", metavar="STUDY", help="a study, all, a study YAML file; or plan STUDY, "
                   "report DIR, list")
    p.add_argument("--profile", choices=PROFILES, default="quick", help="quick: a 2-core CPU, 2-4 "
                   "minutes per study on the built-in dataset (default; README); paper: the paper's setting, for GPUs")
    p.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds per arm (default 3)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained at once (default 1: in this "
                   "process)")
    p.add_argument("--output-dir", metavar="DIR", help="where the runs and reports go (default: "
                   "runs/ablate-PROFILE[-DATA])")
    p.add_argument("--config", metavar="YAML", help="a run YAML (sections model, data, optim, run) applied to "
                   "every arm: any switch of the model and the trainer, except the one each arm sets")
    group = p.add_argument_group("training overrides for every arm (as `alexnet train` takes them)")
    for spec in train_flags():
        if spec.key in NOT_OVERRIDABLE:
            continue
        if spec.type is bool:
            group.add_argument(spec.flag, dest=f"o_{spec.dest}", action=argparse.BooleanOptionalAction,
                               default=None, help=argparse.SUPPRESS)
        else:
            group.add_argument(spec.flag, dest=f"o_{spec.dest}", type=None if spec.type is str else spec.type,
                               default=None, choices=spec.choices, metavar=spec.metavar,
                               help=spec.help if spec.key == "data.source" else argparse.SUPPRESS)
    p.set_defaults(run=run)


def overrides_from(args: argparse.Namespace) -> dict:
    given = {spec.key: getattr(args, f"o_{spec.dest}", None) for spec in train_flags()
             if spec.key not in NOT_OVERRIDABLE}
    return {k: v for k, v in given.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from alexnet.ablate import api
    from alexnet.errors import AlexNetError, ConfigError

    words = args.words
    if words[0] == "list":
        print(api.describe_studies())
        return 0
    if words[0] == "report":
        if len(words) != 2:
            raise ConfigError("usage: alexnet ablate report DIR")
        for path in api.report(Path(words[1])):
            print(path)
        return 0
    if words[0] == "job":
        if len(words) != 4:
            raise ConfigError("usage: alexnet ablate job DIR STUDY NAME")
        api.run_job(Path(words[1]), words[2], words[3])
        return 0
    action = "plan" if words[0] == "plan" else "run"
    names = words[1:] if action == "plan" else words
    if len(names) != 1:
        raise ConfigError(f"name one study (or all), got {len(names)}: {' '.join(names) or 'none'}")
    overrides = overrides_from(args)
    data = overrides.pop("data.source", None)
    session = api.Session.make(names[0], profile=args.profile, data=data, overrides=overrides,
                               config=args.config, seeds=args.seeds, output_dir=args.output_dir)
    if action == "plan":
        print(session.plan_text())
        return 0
    started = time.perf_counter()
    try:
        failures = session.run(jobs=args.jobs)
    except AlexNetError as e:
        signum = getattr(e, "signum", None)  # training.signals.RunInterrupted: the run saved its checkpoint
        if signum is None:
            raise
        print(f"alexnet ablate: {e}\nalexnet ablate: interrupted; the same command continues the study", file=sys.stderr)
        return 128 + signum
    for line in session.report_paths():
        print(line)
    print(f"alexnet ablate {names[0]}: {time.perf_counter() - started:.0f} s")
    if failures:
        for name, message in failures:
            print(f"failed: {name}: {message}")
        return 1
    return 0
