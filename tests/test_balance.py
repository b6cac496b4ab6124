"""Unbalanced classes: --class-weights (auto, explicit, refused), the weighted loss, --balanced-sampler's order
(a function of (seed, epoch), classes drawn equally) through both loaders, the warning, and tiny runs with each."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

import data_factories as f
from alexnet.config import OptimSpec, TrainConfig
from alexnet.errors import ConfigError
from alexnet.runtime.distributed import DistInfo
from alexnet.training.balance import (
    balanced_permutation,
    class_weights,
    epoch_order,
    imbalance_warning,
    prepare,
)
from alexnet.training.determinism import epoch_permutation
from alexnet.training.epoch import EpochSettings, EpochTotals, WeightUpdate, train_one_epoch
from alexnet.training.optim import LRSchedule
from tiny_runs import TINY, run_cli, tiny_config, untimed_rows


def unbalanced(root, counts=(("cat", 12), ("dog", 3))):
    for c, (name, n) in enumerate(counts):
        for i in range(n):
            f.write_jpeg(root / name / f"{name}_{i}.jpg", f.noise(seed=1000 * c + i))
    return root


def test_auto_weights_are_inverse_frequency_with_mean_one():
    w = class_weights("auto", [10, 2, 5], ["a", "b", "c"])
    inverse = torch.tensor([1 / 10, 1 / 2, 1 / 5])
    torch.testing.assert_close(w, inverse / inverse.mean())
    assert w.mean().item() == pytest.approx(1.0)
    assert class_weights("none", [10, 2, 5], ["a", "b", "c"]) is None
    torch.testing.assert_close(class_weights("1,2.5,0.5", [1, 1, 1], ["a", "b", "c"]), torch.tensor([1.0, 2.5, 0.5]))


@pytest.mark.parametrize("bad", ["1,-2", "0,1", "1,nan", "1,inf", "x", "1,,2", ""])
def test_bad_weights_are_refused_naming_the_field(bad):
    with pytest.raises(ConfigError, match=r"^field 'optim.class_weights' must be "):
        OptimSpec(class_weights=bad)


def test_a_weight_count_that_is_not_the_class_count_is_refused_naming_the_classes():
    with pytest.raises(ConfigError, match=r"field 'optim.class_weights' gives 3 weights but the data has 2 classes "
                                          r"\(cat, dog\): give one per class, in that order"):
        class_weights("1,2,3", [5, 5], ["cat", "dog"])


def test_bad_weights_on_the_command_line_are_one_line_exit_2(tmp_path):
    result = run_cli("train", "--data", str(tmp_path), "--class-weights", "1,-1", *TINY)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("alexnet train: error: ") and "optim.class_weights" in result.stderr
    assert "\n" not in result.stderr.strip() and "Traceback" not in result.stderr


def test_the_warning_names_the_counts_and_both_flags():
    line = imbalance_warning([40, 12, 10], ["cat", "dog", "owl"])
    assert line == ("warning: unbalanced classes: 'cat' has 40 training images, 'owl' 10 (4.0x): --class-weights auto "
                    "weights the loss by inverse class frequency, --balanced-sampler draws every class equally often")
    assert imbalance_warning([30, 10], ["a", "b"]) is None  # 3x exactly is not over 3x
    cfg = TrainConfig.from_dict({"optim": {"class_weights": "auto"}})
    assert prepare(cfg, [0] * 40 + [1] * 10, ["a", "b"], torch.device("cpu"))[1] is None  # chosen: no warning


class OneBatch:
    """A batch source of one fixed batch (train_one_epoch's contract: len() steps, batches(epoch, start))."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return 1

    def batches(self, epoch, start):
        yield 0, self.x, self.y, len(self.y)


def test_the_training_loss_is_cross_entropy_weighted_by_class():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 2, 2), torch.tensor([0, 0, 0, 0, 0, 1, 2, 2])
    weights = torch.tensor([0.5, 2.0, 1.5])

    def one_step(w):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        torch.manual_seed(1)
        model[1].reset_parameters()
        expected = F.cross_entropy(model(x), y, weight=w, reduction="sum").item()
        totals = EpochTotals()
        train_one_epoch(model, WeightUpdate(torch.optim.SGD(model.parameters(), lr=0.1), LRSchedule(OptimSpec(), 1, 1)),
                        OneBatch(x, y), 0, 0, totals,
                        EpochSettings(seed=0, info=DistInfo(), device=torch.device("cpu"), class_weights=w))
        return totals.loss_sum, expected

    got, expected = one_step(weights)
    assert got == pytest.approx(expected, rel=1e-6)
    plain, _ = one_step(None)
    assert plain != pytest.approx(got, rel=1e-3)  # the weights changed the loss


def test_the_balanced_order_is_a_function_of_seed_and_epoch_and_draws_classes_equally():
    labels = torch.tensor([0] * 20 + [1] * 5 + [2] * 3)  # 28 images: 10, 9, 9 places
    a = balanced_permutation(labels, seed=3, epoch=0)
    assert torch.equal(a, balanced_permutation(labels.clone(), seed=3, epoch=0))  # a resumed process draws the same
    assert not torch.equal(a, balanced_permutation(labels, seed=3, epoch=1))
    assert not torch.equal(a, balanced_permutation(labels, seed=4, epoch=0))
    for epoch in range(5):
        order = balanced_permutation(labels, seed=3, epoch=epoch)
        counts = Counter(labels[order].tolist())
        assert len(order) == 28 and sorted(counts.values()) == [9, 9, 10], counts
        uses = Counter(order.tolist())
        assert set(uses) >= set(range(20, 28))  # every small-class image is used...
        assert max(uses[i] for i in range(25, 28)) - min(uses[i] for i in range(25, 28)) <= 1  # ...evenly
        assert max(uses.values()) <= 4 and all(uses[i] <= 1 for i in range(20))  # 10 places over 3 images; 20 cut
    # Off, the order is the plain permutation of (seed, epoch), as before.
    assert torch.equal(epoch_order(28, 3, 2), epoch_permutation(28, 3, 2))


@pytest.mark.parametrize("loader", ["cache", "pil"])
def test_balanced_sampler_reaches_the_batches_of_both_loaders(tmp_path, loader):
    from alexnet.data import build_datasets
    from alexnet.training.batches import build_batches

    data = unbalanced(tmp_path / "d")  # 12 cats, 3 dogs; validation takes 2 + 1
    cfg = tiny_config(data, tmp_path / "run", **{"data.loader": loader, "run.batch_size": 4,
                                                 "data.balanced_sampler": True})
    bundle = build_datasets(str(data), image_size=67, val_split=0.2)
    labels = torch.tensor(bundle.train.targets)
    assert Counter(labels.tolist()) == {0: 10, 1: 2}
    source, _ = build_batches(cfg, bundle, 67, 3, DistInfo(), torch.device("cpu"))
    for epoch in (0, 1):
        seen = Counter(y for _, _, ys, _ in source.batches(epoch, 0) for y in ys.tolist())
        assert seen == {0: 6, 1: 6}, seen  # 3 full batches of 4 = all 12 places, half each
    plain, _ = build_batches(tiny_config(data, tmp_path / "run", **{"data.loader": loader, "run.batch_size": 4}),
                             bundle, 67, 3, DistInfo(), torch.device("cpu"))
    assert Counter(y for _, _, ys, _ in plain.batches(0, 0) for y in ys.tolist()) == {0: 10, 1: 2}


@pytest.mark.slow
def test_tiny_unbalanced_runs_train_with_each_option(tmp_path):
    from alexnet.train import fit

    data = unbalanced(tmp_path / "d")
    common = {"run.epochs": 2, "data.val_split": 0.2, "run.deterministic": True, "run.batch_size": 4}
    losses = {}
    for name, extra in {"plain": {}, "ones": {"optim.class_weights": "1,1"}, "auto": {"optim.class_weights": "auto"},
                        "explicit": {"optim.class_weights": "1,3"}, "balanced": {"data.balanced_sampler": True}}.items():
        run = tmp_path / name
        result = fit(tiny_config(data, run, **common, **extra), progress=False)
        assert result.epochs_done == 2
        rows = untimed_rows(run)
        losses[name] = [float(r["train_loss"]) for r in rows]
        warned = "warning: unbalanced classes: 'cat' has 10 training images, 'dog' 2 (5.0x)" in (
            run / "log.txt").read_text()
        assert warned == (name == "plain"), name
    assert losses["ones"] == losses["plain"]  # weights of 1 are the plain loss, bit for bit
    for name in ("auto", "explicit", "balanced"):
        assert losses[name] != losses["plain"], name
    with pytest.raises(ConfigError, match=r"gives 3 weights but the data has 2 classes \(cat, dog\)"):
        fit(tiny_config(data, tmp_path / "three", **common, **{"optim.class_weights": "1,2,3"}), progress=False)
