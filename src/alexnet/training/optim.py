"""The optimizer and the learning-rate schedule of `alexnet train`: SGD (the paper's recipe), Adam (the notes'), AdamW;
warm-up, step, cosine, and the paper's divide-by-10-on-plateau."""

from __future__ import annotations

import math
from typing import Any

import torch

from alexnet.config import OptimSpec


class LRSchedule:
    """lr for (epoch, step): linear warm-up, then constant (none), step, cosine, or the paper's plateau rule.

    Plateau (section 5 of the paper): "divide the learning rate by 10 when the validation error rate stopped
    improving with the current learning rate", at most `max_drops` times (3 in the paper). Its only state is a few
    numbers (`state_dict()`), saved in every checkpoint.
    """

    def __init__(self, spec: OptimSpec, epochs: int, steps_per_epoch: int):
        self.spec = spec
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.drops = 0
        self.best = -math.inf
        self.bad_epochs = 0
        # (epoch time t0, progress p0): the cosine was re-spanned at t0 (a time budget planned again) and goes on
        # from the progress it had then to its end at `epochs`, so the learning rate never jumps
        self.anchor: tuple[float, float] | None = None

    def progress(self, t: float) -> float:
        """How far along the cosine is after `t` epochs: 0 at the end of warm-up, 1 at the end."""
        warmup = self.spec.warmup_epochs
        if self.anchor is not None and t >= self.anchor[0]:
            t0, p0 = self.anchor
            return min(max(p0 + (t - t0) / max(self.epochs - t0, 1e-9) * (1.0 - p0), 0.0), 1.0)
        return min(max((t - warmup) / max(self.epochs - warmup, 1e-9), 0.0), 1.0)

    def respan(self, epochs: float, t: float) -> None:
        """End the schedule at `epochs` instead, going on from where it is after `t` epochs."""
        self.anchor = (t, self.progress(t))
        self.epochs = epochs

    def lr_at(self, epoch: int, step: int) -> float:
        s = self.spec
        t = epoch + (step + 1) / self.steps_per_epoch  # epochs completed after this step
        factor = 1.0
        if s.warmup_epochs > 0 and t < s.warmup_epochs:
            factor = t / s.warmup_epochs
        if s.lr_schedule == "step":
            factor *= s.gamma ** (epoch // s.step_size)
        elif s.lr_schedule == "cosine":
            factor *= 0.5 * (1.0 + math.cos(math.pi * self.progress(t)))
        elif s.lr_schedule == "plateau":
            factor *= s.gamma**self.drops
        return s.lr * factor

    def end_epoch(self, val_top1: float) -> bool:
        """Record an epoch's validation accuracy; True when the plateau rule divides the lr."""
        if self.spec.lr_schedule != "plateau":
            return False
        if val_top1 > self.best:
            self.best, self.bad_epochs = val_top1, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.spec.patience and self.drops < self.spec.max_drops:
            self.drops += 1
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        state = {"drops": self.drops, "best": self.best, "bad_epochs": self.bad_epochs}
        if self.anchor is not None:
            state["anchor"] = [float(self.anchor[0]), float(self.anchor[1])]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drops, self.best, self.bad_epochs = int(state["drops"]), float(state["best"]), int(state["bad_epochs"])
        anchor = state.get("anchor")
        self.anchor = (float(anchor[0]), float(anchor[1])) if anchor is not None else None


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def build_optimizer(spec: OptimSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW with PyTorch's fused kernels where the parameters live on a device that has them: one
    kernel for the whole update instead of a dozen small ops per parameter tensor (measured in benchmarks/README.md).
    Same update rule, rounded differently in the last bits. Only parameters that require a gradient are optimised."""
    groups = optimizer_groups(model, spec.backbone_lr_mult)
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.device.type in FUSED_OPTIMIZER_DEVICES and p.is_floating_point() for p in params)
    options = {"lr": spec.lr, "weight_decay": spec.weight_decay, "fused": fused or None}
    if spec.opt == "sgd":
        return torch.optim.SGD(groups, momentum=spec.momentum, **options)
    if spec.opt == "adam":
        return torch.optim.Adam(groups, **options)
    return torch.optim.AdamW(groups, **options)


def optimizer_groups(model: torch.nn.Module, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: what trains now, in model order. One group (as without fine-tuning) unless
    the backbone's rate differs, then fc8 first at the base rate and the rest at `lr_mult` times it."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr_mult == 1.0:
        return [{"params": trainable}]
    head = {id(p) for p in model.layer(model.head_name).parameters()}
    groups = [{"params": [p for p in trainable if id(p) in head], "lr_mult": 1.0},
              {"params": [p for p in trainable if id(p) not in head], "lr_mult": backbone_lr_mult}]
    return [g for g in groups if g["params"]]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate on every group, times the group's own multiplier (--backbone-lr-mult)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)

