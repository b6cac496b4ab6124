"""`alexnet train`: flags -> TrainConfig -> alexnet.train.fit()."""

from __future__ import annotations

import argparse
import sys

# flag -> dotted config key; a flag left unset (None) keeps the value from the recipe or the YAML.
FLAG_KEYS = {
    "data": "data.source", "image_size": "data.image_size", "preset": "data.preset", "val_split": "data.val_split",
    "augment": "data.augment", "loader": "data.loader", "workers": "data.workers", "strict": "data.strict",
    "download": "data.download", "data_root": "data.root", "prefetch": "data.prefetch",
    "model": "model.name", "width_mult": "model.width_mult", "dropout": "model.dropout", "norm": "model.norm",
    "in_channels": "model.in_channels",
    "opt": "optim.opt", "lr": "optim.lr", "momentum": "optim.momentum", "weight_decay": "optim.weight_decay",
    "lr_schedule": "optim.lr_schedule", "warmup_epochs": "optim.warmup_epochs", "label_smoothing":
    "optim.label_smoothing",
    "epochs": "run.epochs", "batch_size": "run.batch_size", "max_steps": "run.max_steps", "amp": "run.amp",
    "channels_last": "run.channels_last", "compile": "run.compile", "device": "run.device", "seed": "run.seed",
    "deterministic": "run.deterministic", "output_dir": "run.output_dir", "save_every_steps": "run.save_every_steps",
    "chance_warn_steps": "run.chance_warn_steps", "sync_every": "run.sync_every",
}


def add_training_flags(p: argparse.ArgumentParser) -> None:
    """The flags `train` and `demo` share."""
    on_off = argparse.BooleanOptionalAction
    g = p.add_argument_group("what to train on")
    g.add_argument("--data", metavar="SRC", help="folder (train/ + val/ class folders, class folders, or a flat "
                   "Kaggle folder), IDX folder, mnist | fashion-mnist | cifar10; default: the built-in dataset")
    g.add_argument("--image-size", type=int, metavar="N", help="side of the model's input (default: the variant's)")
    g.add_argument("--preset", choices=["seed", "d2l", "paper"], help="transform preset")
    g.add_argument("--val-split", type=float, metavar="F", help="fraction held out when the data has no val/ split")
    g.add_argument("--augment", action=on_off, default=None, help="training augmentation (default: the preset's)")
    g.add_argument("--loader", choices=["cache", "pil"], help="cache: uint8 tensor + batch augmentation (default); "
                   "pil: a DataLoader decoding every image every epoch, as the notes do")
    g.add_argument("--workers", type=int, metavar="N", help="decoding threads / DataLoader workers")
    g.add_argument("--prefetch", action=on_off, default=None, help="cache loader: make the next batch in a "
                   "background thread during the step (default: on for CUDA, off on the CPU where it measured slower)")
    g.add_argument("--strict", action=on_off, default=None, help="unreadable images are errors, not skipped")
    g.add_argument("--download", action=on_off, default=None, help="let torchvision download mnist/fashion-mnist/cifar10")
    g.add_argument("--data-root", metavar="DIR", help="where downloaded datasets live")
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="NAME", help="alexnet | alexnet-1gpu | alexnet-bn | alexnet-d2l | alexnet-owt")
    g.add_argument("--width-mult", type=float, metavar="X", help="scale every layer's width (e.g. 0.25 on a CPU)")
    g.add_argument("--dropout", type=float, metavar="P", help="dropout probability of fc6/fc7")
    g.add_argument("--norm", choices=["lrn", "bn", "none"], help="normalisation layers")
    g.add_argument("--in-channels", type=int, choices=[1, 3], help="1 (grayscale) or 3 (RGB)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--opt", choices=["sgd", "adam", "adamw"])
    g.add_argument("--lr", type=float, metavar="X")
    g.add_argument("--momentum", type=float, metavar="X")
    g.add_argument("--weight-decay", type=float, metavar="X")
    g.add_argument("--lr-schedule", choices=["plateau", "step", "cosine", "none"])
    g.add_argument("--warmup-epochs", type=float, metavar="N")
    g.add_argument("--label-smoothing", type=float, metavar="X")
    g = p.add_argument_group("run")
    g.add_argument("--epochs", type=int, metavar="N")
    g.add_argument("--batch-size", type=int, metavar="N", help="global batch (split over torchrun ranks)")
    g.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps in total")
    g.add_argument("--amp", choices=["bf16", "fp16", "none"], help="autocast dtype")
    g.add_argument("--channels-last", action=on_off, default=None, help="NHWC memory format")
    g.add_argument("--compile", action=on_off, default=None, help="torch.compile the model")
    g.add_argument("--device", metavar="DEV", help="auto | cpu | cuda | cuda:N | mps")
    g.add_argument("--seed", type=int, metavar="N")
    g.add_argument("--deterministic", action=on_off, default=None, help="deterministic kernels (exact resume)")
    g.add_argument("--output-dir", metavar="DIR", help="run folder (default: runs/<recipe>-<time>)")
    g.add_argument("--save-every-steps", type=int, metavar="N", help="also checkpoint every N steps")
    g.add_argument("--chance-warn-steps", type=int, metavar="N", help="warn if the loss is still ln(C) after N steps")
    g.add_argument("--sync-every", type=int, metavar="N", help="read the loss back from the device every N steps "
                   "(progress, non-finite check; default: every step on the CPU, every 50 on GPUs)")
    g.add_argument("--progress", action=on_off, default=None, help="progress bar (default: when stderr is a terminal)")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model (no --data: the built-in dataset, as `make demo`)",
        description="Train AlexNet. Layers, each overriding the one before: the recipe (--recipe, default demo "
        "when no --data), --config YAML, then flags. The resolved config is saved in the run folder.",
    )
    p.add_argument("--config", metavar="YAML", help="run config (sections model, data, optim, run)")
    p.add_argument("--recipe", metavar="NAME", help="named recipe from configs/: demo | paper | seed | d2l")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR exactly where it stopped")
    add_training_flags(p)
    p.set_defaults(run=run)


def overrides_from(args: argparse.Namespace) -> dict:
    return {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None) is not None}


def run(args: argparse.Namespace) -> int:
    from alexnet.config import resolve_config
    from alexnet.train import RunInterrupted, fit, resume_config

    overrides = overrides_from(args)
    if args.resume:
        cfg = resume_config(args.resume, config_path=args.config, overrides=overrides)
    else:
        cfg = resolve_config(recipe=args.recipe, config_path=args.config, overrides=overrides)
    try:
        result = fit(cfg, resume=args.resume, progress=args.progress)
    except RunInterrupted as e:
        print(f"alexnet train: {e}", file=sys.stderr)
        return 128 + e.signum
    if result.stopped_early:
        print(f"stopped after {result.global_step} steps (--max-steps); continue with: "
              f"alexnet train --resume {result.run_dir} --max-steps N")
    return 0
