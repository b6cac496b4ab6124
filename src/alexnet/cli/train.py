"""`alexnet train`: flags -> TrainConfig -> alexnet.train.fit()."""

from __future__ import annotations

import argparse
import sys

from alexnet.cli.vocabulary import add_progress_flag
from alexnet.config import list_recipes, resolve_config, train_flags
from alexnet.errors import plural
from alexnet.models.registry import list_models  # no torch: the names only

# The argument groups of the generated flags, in the order `--help` lists them (the sections' own order in
# TrainConfig is the saved config's, which checkpoints hold).
SECTION_TITLES = {"data": "what to train on", "model": "model", "optim": "optimisation", "run": "run"}


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags `train` and `demo` share: one per config option declared with config.flag(), then --progress.

    Every default is None, so a flag that is not given keeps the recipe's or the YAML's value (overrides_from)."""
    groups = {section: p.add_argument_group(title) for section, title in SECTION_TITLES.items()}
    specs = train_flags()
    for section, group in groups.items():  # group by group: usage lists the flags in the same order as the groups
        for spec in (s for s in specs if s.key.split(".")[0] == section):
            if spec.type is bool:
                group.add_argument(spec.flag, dest=spec.dest, action=argparse.BooleanOptionalAction, default=None,
                                   help=spec.help)
            else:
                help = f"{spec.help}: {' | '.join(list_models())}" if spec.key == "model.name" else spec.help
                group.add_argument(spec.flag, dest=spec.dest, type=None if spec.type is str else spec.type,
                                   default=None, choices=spec.choices, metavar=spec.metavar, help=help)
    # not a config option: how this process reports, not what the run is
    add_progress_flag(groups["run"], "over each epoch")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (no --data: the built-in dataset, as `make demo`)",
        description="Train AlexNet. Layers, each overriding the one before: the recipe (--recipe, default demo "
        "when no --data), --config YAML, then flags. The resolved config is saved in the run folder.",
    )
    p.add_argument("--config", metavar="YAML", help="run config (sections model, data, optim, run)")
    p.add_argument("--recipe", metavar="NAME", help=f"named recipe from configs/: {' | '.join(list_recipes())}")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    add_training_flags(p)
    p.set_defaults(run=run)


def overrides_from(args: argparse.Namespace) -> dict:
    """The flags given, as dotted config keys: {"optim.lr": 0.5, "data.augment": False}."""
    given = {spec.key: getattr(args, spec.dest, None) for spec in train_flags()}
    return {key: value for key, value in given.items() if value is not None}


def run(args: argparse.Namespace) -> int:
    from alexnet.train import RunInterrupted, fit, resume_config  # torch: imported when the command runs
    from alexnet.training.budget import launch_clock

    overrides = overrides_from(args)
    if args.resume:
        cfg = resume_config(args.resume, config_path=args.config, overrides=overrides)
    else:
        cfg = resolve_config(recipe=args.recipe, config_path=args.config, overrides=overrides)
    try:
        # a --time-budget counts from the command's launch, imports included, as a stopwatch would
        result = fit(cfg, resume=args.resume, progress=args.progress, started=launch_clock())
    except RunInterrupted as e:
        print(f"alexnet train: {e}", file=sys.stderr)
        return 128 + e.signum
    if result.reached_max_steps:
        print(f"stopped after {plural(result.global_step, 'step')} (--max-steps); continue with: "
              f"alexnet train --resume {result.run_dir} --max-steps N")
    return 0
