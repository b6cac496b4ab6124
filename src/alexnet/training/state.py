"""The training state: everything a run must carry from one step to the next, and what a checkpoint saves of it.

One object owns it, and `state_dict()` / `load_state_dict()` walk the same two lists (`POSITION` and the parts in
`_parts()`), so that saving and restoring cannot drift apart: a field added to one is in the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from alexnet.errors import CheckpointError
from alexnet.runtime.distributed import DistInfo
from alexnet.training.determinism import rng_state, set_rng_state
from alexnet.training.ema import WeightAverage
from alexnet.training.epoch import ChanceWatch, EpochTotals, gather_totals
from alexnet.training.finetune import Freezer
from alexnet.training.optim import LRSchedule

# Where the run is: the epoch in progress (0-based), the steps of it done, the steps done in all, the best
# validation top-1 so far (-inf before the first validation).
POSITION = ("epoch", "step_in_epoch", "global_step", "best_val_top1")
# Counters added after format 2 was first written: absent from older checkpoints, where they start at 0.
COUNTERS = ("epochs_without_improvement",)  # complete epochs since validation top-1 last improved (--early-stop)


@dataclass
class TrainState:
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler | None  # fp16 loss scaling, else None
    chance: ChanceWatch  # remembers whether the loss-at-chance warning was given
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_val_top1: float = -math.inf
    epochs_without_improvement: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)  # this rank's sums over the epoch so far
    freezer: Freezer | None = None  # --freeze: what is fixed now
    backbone_lr_mult: float = 1.0  # the rate multiplier of parameters released by the freezer
    param_names: dict[int, str] = field(default_factory=dict)  # id(parameter) -> its state_dict name
    ema: WeightAverage | None = None  # --ema-decay: the moving average of the weights
    # The global step of the checkpoint last written, or loaded on resume (None: none yet). Not saved: a checkpoint's
    # own global_step is this value, so loading one restores it.
    saved_step: int | None = None

    def optimizer_params(self) -> list[str]:
        """The names of the optimizer's parameters, in the order its state numbers them."""
        return [self.param_names.get(id(p), "?") for g in self.optimizer.param_groups for p in g["params"]]

    def train_mode(self, model: torch.nn.Module) -> None:
        """Training mode for `model`, but for the --freeze part while it is fixed (kept in eval mode)."""
        if self.freezer is not None:
            self.freezer.train_mode(model)
        else:
            model.train()

    def release(self) -> list[torch.nn.Parameter]:
        """Unfreeze the --freeze part; its parameters join the optimizer as a group of their own."""
        params = self.freezer.release()
        self.optimizer.add_param_group({"params": params, "lr_mult": self.backbone_lr_mult})
        return params

    def _parts(self) -> dict[str, Any]:
        """The stateful objects, by the name their state is saved under."""
        return {"optimizer": self.optimizer, "scheduler": self.schedule, "scaler": self.scaler}

    def state_dict(self, info: DistInfo) -> dict[str, Any]:
        """Plain types and tensors (a weights_only checkpoint). Collective under torchrun: every rank's epoch totals
        are gathered, so that a resume restores each rank's sums."""
        totals = gather_totals(self.totals, info)
        state: dict[str, Any] = {name: getattr(self, name) for name in POSITION + COUNTERS}
        state.update({name: part.state_dict() if part is not None else None for name, part in self._parts().items()})
        state.update({"epoch_totals": totals, "world_size": len(totals), "chance_warned": self.chance.warned,
                      "rng": rng_state(), "optimizer_params": self.optimizer_params(),
                      "frozen": bool(self.freezer is not None and self.freezer.frozen),
                      "ema": self.ema.state_dict() if self.ema is not None else None})
        return state

    def load_state_dict(self, state: dict[str, Any], info: DistInfo) -> None:
        """Continue exactly where `state` left off. Epoch totals are restored on the same number of ranks only (a
        resume on another number starts the epoch's sums afresh); the scaler's state only when fp16 scaling is on."""
        for name in POSITION:
            setattr(self, name, state[name])
        self.saved_step = self.global_step  # the checkpoint's own step
        for name in COUNTERS:
            setattr(self, name, int(state.get(name, 0)))
        if self.freezer is not None and self.freezer.frozen and state.get("frozen") is False:
            self.release()  # released before this checkpoint: the optimizer had gained that group
        saved = state.get("optimizer_params")
        if saved is not None and list(saved) != self.optimizer_params():
            raise CheckpointError(
                f"the checkpoint's optimizer trains {len(saved)} parameters, this run's {len(self.optimizer_params())} "
                "(or in another order): resume with the run's own --freeze / --freeze-epochs / --backbone-lr-mult")
        for name, part in self._parts().items():
            if part is not None and state.get(name):
                part.load_state_dict(state[name])
        totals = state["epoch_totals"]
        self.totals = EpochTotals(**totals[info.rank]) if len(totals) == info.world_size else EpochTotals()
        self.chance.warned = bool(state.get("chance_warned", False))
        if self.ema is not None and state.get("ema") is not None:  # else the average starts from these weights
            self.ema.load_state_dict(state["ema"], self.global_step)
        set_rng_state(state["rng"])

    def advance(self, next_position: tuple[int, int]) -> None:
        """Move to (epoch, step in epoch); a new epoch starts its sums afresh."""
        if next_position[0] != self.epoch:
            self.totals = EpochTotals()
        self.epoch, self.step_in_epoch = next_position
