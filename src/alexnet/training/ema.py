"""`--ema-decay D`: an exponential moving average of the weights (Polyak averaging; timm's ModelEmaV3, airbench).

After every optimizer step, ema <- d * ema + (1 - d) * weights, for every floating-point parameter and buffer
(BatchNorm's running statistics included, so the averaged model is evaluated with statistics that match it; integer
buffers such as num_batches_tracked are copied). The decay warms up as d = min(D, (1 + n) / (10 + n)) after n
updates, as in timm: early on, the average would otherwise be held back by the random initial weights.

The average is validated beside the weights at every epoch's end; best.pt keeps whichever scored higher, and last.pt
holds both (train_state's "ema"), so that a resume continues the same average.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.current_decay()
        floats, sources = [], []
        mine_all, theirs_all = self.module.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        for mine, theirs in zip(mine_all.values(), theirs_all.values(), strict=True):
            if mine.is_floating_point():
                floats.append(mine)
                sources.append(theirs.detach())
            else:
                mine.copy_(theirs)
        if floats:
            torch._foreach_lerp_(floats, sources, 1.0 - d)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights, under the model's own state_dict keys (checked like the model's on load)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """`updates`: the run's global step (one update per optimizer step since the run began)."""
        self.module.load_state_dict(state)
        self.updates = updates
