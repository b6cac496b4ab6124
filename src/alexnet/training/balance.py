"""Unbalanced classes: the loss's weight per class (`optim.class_weights`), an epoch order that draws every class
equally (`data.balanced_sampler`), and the warning that points to them.

Both are functions of the training labels and the config alone; the balanced order, like
`determinism.epoch_permutation`, also of (seed, epoch) alone, so a resumed run draws exactly the batches the
uninterrupted run drew, on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from alexnet.config import TrainConfig, parse_class_weights
from alexnet.errors import ConfigError
from alexnet.training.determinism import PURPOSE_ORDER, derive_seed, epoch_permutation

IMBALANCE_RATIO = 3.0  # warn when the largest class has more than this many times the smallest one's images
BALANCED = 1  # derive_seed(seed, epoch, PURPOSE_ORDER, BALANCED): a stream apart from the plain order's


def class_counts(targets: Sequence[int], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for label in targets:
        counts[int(label)] += 1
    return counts


def class_weights(spec: str, counts: Sequence[int], class_names: Sequence[str]) -> torch.Tensor | None:
    """The loss's weight per class, in class_names order: None ("none"); inverse class frequency normalised to mean
    1 over the classes that have training images ("auto"; a class without any gets 1, it is never a target); or the
    user's "w1,w2,...", one per class."""
    if spec == "none":
        return None
    if spec == "auto":
        inverse = [1.0 / n if n else 0.0 for n in counts]
        present = [w for w in inverse if w > 0]
        scale = len(present) / sum(present)
        return torch.tensor([w * scale if w > 0 else 1.0 for w in inverse], dtype=torch.float32)
    weights = parse_class_weights(spec)
    if len(weights) != len(class_names):
        shown = ", ".join(class_names) if len(class_names) <= 8 else ", ".join(class_names[:8]) + ", ..."
        raise ConfigError(f"field 'optim.class_weights' gives {len(weights)} weights but the data has "
                          f"{len(class_names)} classes ({shown}): give one per class, in that order")
    return torch.tensor(weights, dtype=torch.float32)


def imbalance_warning(counts: Sequence[int], class_names: Sequence[str]) -> str | None:
    """One line when the largest class has over IMBALANCE_RATIO times the images of the smallest (None: balanced)."""
    present = [(n, name) for n, name in zip(counts, class_names, strict=True) if n > 0]
    if len(present) < 2:
        return None
    (small, small_name), (large, large_name) = min(present), max(present)
    if large <= IMBALANCE_RATIO * small:
        return None
    return (f"warning: unbalanced classes: {large_name!r} has {large} training images, {small_name!r} {small} "
            f"({large / small:.1f}x): --class-weights auto weights the loss by inverse class frequency, "
            "--balanced-sampler draws every class equally often")


def balanced_permutation(labels: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """An epoch's order of len(labels) indices in which every class present appears equally often (within one).

    A class smaller than its share is repeated (all of its images before any twice), a larger one is cut (each epoch
    a different part); which classes take the remainder's extra places is drawn too. A function of (labels, seed,
    epoch) alone."""
    n = len(labels)
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, PURPOSE_ORDER, BALANCED))
    classes = torch.unique(labels).tolist()  # sorted
    share, extra = divmod(n, len(classes))
    lucky = set(torch.randperm(len(classes), generator=g)[:extra].tolist())
    parts = []
    for i, c in enumerate(classes):
        members = torch.nonzero(labels == c).flatten()
        quota = share + (i in lucky)
        rounds = math.ceil(quota / len(members))
        parts.append(torch.cat([members[torch.randperm(len(members), generator=g)] for _ in range(rounds)])[:quota])
    order = torch.cat(parts)
    return order[torch.randperm(n, generator=g)]


def epoch_order(n: int, seed: int, epoch: int, balance_labels: torch.Tensor | None = None) -> torch.Tensor:
    """The training order of `epoch`: determinism.epoch_permutation, or balanced over `balance_labels`."""
    if balance_labels is None:
        return epoch_permutation(n, seed, epoch)
    return balanced_permutation(balance_labels, seed, epoch)


def prepare(cfg: TrainConfig, targets: Sequence[int], class_names: Sequence[str],
            device: torch.device) -> tuple[torch.Tensor | None, str | None]:
    """(the loss's class weights on `device` or None, the imbalance warning or None) for a run. The warning is
    given only when neither option is on."""
    counts = class_counts(targets, len(class_names))
    weights = class_weights(cfg.optim.class_weights, counts, class_names)
    chosen = weights is not None or cfg.data.balanced_sampler
    warning = None if chosen else imbalance_warning(counts, class_names)
    return (None if weights is None else weights.to(device)), warning
