"""The chance warning (issue 23): it speaks only when the loss has not moved away from ln(C) and the training
accuracy is at chance, never while a slow run is learning. Synthetic step sequences for the rule, then real runs:
one that learns slowly (the old loss-only rule warned on such a run) and one on labels it cannot learn."""

import math
import random
from pathlib import Path

import numpy as np
from PIL import Image

from alexnet.train import fit
from alexnet.training.epoch import CHANCE_WINDOW, ChanceWatch, StepStats
from tiny_runs import tiny_config, untimed_rows

LN2 = math.log(2)


def steps(n, loss_at, acc_at, batch, seed=0, loss_noise=0.02):
    """n steps of `batch` images: the loss at step t is loss_at(t) plus noise, the correct count a binomial draw at
    accuracy acc_at(t), as a real run's steps are."""
    rng = random.Random(seed)
    for t in range(n):
        correct = sum(rng.random() < acc_at(t) for _ in range(batch))
        yield StepStats(loss_at(t) + rng.gauss(0, loss_noise), correct, batch)


def warnings_of(watch, sequence):
    """(global step, message) of every warning the watch gives over `sequence`."""
    fired = [(number, watch.check(number, stats)) for number, stats in enumerate(sequence, start=1)]
    return [(number, message) for number, message in fired if message]


def test_a_slowly_learning_two_class_run_does_not_warn():
    # the run: loss 0.69 -> 0.62 (within 10% of ln 2 all along) while training accuracy climbs 0.5 -> 0.68
    ramp = lambda start, end: lambda t: start + (end - start) * t / 200  # noqa: E731
    run = steps(300, ramp(0.69, 0.62), ramp(0.5, 0.68), batch=64)
    assert warnings_of(ChanceWatch(num_classes=2, after_steps=100), run) == []


def test_a_flat_run_at_chance_warns_once_saying_what_it_saw():
    watch = ChanceWatch(num_classes=2, after_steps=100)
    fired = warnings_of(watch, steps(300, lambda t: LN2, lambda t: 0.5, batch=64))
    assert len(fired) == 1 and watch.warned
    number, message = fired[0]
    assert number == 100  # at the first step it may: nothing moved
    assert "not learning" in message and "ln(2) = 0.693" in message and "1/2 = 0.500" in message
    assert f"over the last {CHANCE_WINDOW} steps" in message and f"on {CHANCE_WINDOW * 64} images" in message
    assert "learning rate" in message and "normalisation" in message and "labels" in message


def test_noisy_accuracy_near_chance_with_a_flat_loss_warns():
    # batches of 8: a window's accuracy strays far from 0.5, yet within its standard error
    watch = ChanceWatch(num_classes=2, after_steps=100)
    fired = warnings_of(watch, steps(300, lambda t: LN2, lambda t: 0.5, batch=8, seed=3, loss_noise=0.08))
    assert len(fired) == 1 and fired[0][0] <= 110


def test_a_loss_coming_down_onto_ln_c_from_a_fresh_init_is_not_learning():
    # a random init's loss starts above ln(C) and falls onto it: that fall is towards chance, not away from it
    watch = ChanceWatch(num_classes=10, after_steps=100)
    settle = lambda t: math.log(10) + 1.5 * math.exp(-t / 20)  # noqa: E731
    fired = warnings_of(watch, steps(300, settle, lambda t: 0.1, batch=32))
    assert len(fired) == 1 and "ln(10) = 2.303" in fired[0][1] and "1/10 = 0.100" in fired[0][1]


def test_accuracy_above_chance_or_rising_or_a_falling_loss_keeps_it_silent():
    flat = lambda t: LN2  # noqa: E731
    above = steps(300, flat, lambda t: 0.56, batch=64)  # a loss at ln 2, but the net is right more often than chance
    assert warnings_of(ChanceWatch(2, after_steps=100), above) == []
    rising = steps(300, flat, lambda t: 0.5 + 0.1 * min(t, 120) / 120, batch=64, seed=1)  # still near 0.5 at step 100
    assert all(number > 120 for number, _ in warnings_of(ChanceWatch(2, after_steps=100), rising))
    falling = steps(300, lambda t: LN2 - 0.0008 * t, lambda t: 0.5, batch=64, seed=2)  # learning the loss first
    assert warnings_of(ChanceWatch(2, after_steps=100), falling) == []


def test_zero_steps_disables_it_and_a_warned_run_stays_quiet():
    flat_run = list(steps(200, lambda t: LN2, lambda t: 0.5, batch=64))
    assert warnings_of(ChanceWatch(2, after_steps=0), flat_run) == []
    assert warnings_of(ChanceWatch(2, after_steps=100, warned=True), flat_run) == []  # chance_warned, from last.pt
    # a resumed run judges only steps it saw itself: it waits for a full window again
    resumed = ChanceWatch(2, after_steps=100)
    fired = [(n, resumed.check(n, s)) for n, s in enumerate(flat_run, start=500)]
    assert [n for n, m in fired if m] == [599]


# --- real runs ------------------------------------------------------------------------------------------------------


def noise_folder(root: Path, shift: float = 0.0, train: int = 80, val: int = 4, seed: int = 0) -> Path:
    """Two classes of Gaussian-noise images, the second `shift` grey levels brighter than the first (0: the classes
    are the same noise, so the labels are random and no net can learn them beyond memorising)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for c, name in enumerate(("a", "b")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.normal(128 - shift + 2 * shift * c, 50, (40, 40, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{name}.{i}.png")
    return root


def test_a_real_run_that_learns_slowly_does_not_warn(tmp_path):
    # Classes 6 grey levels apart under noise of 50, Adam 1e-4: the loss stays near ln 2 for epochs (the old rule,
    # loss within 10% of ln 2, warned here) while the training accuracy climbs. 20 steps an epoch, judged from 50 on.
    data = noise_folder(tmp_path / "data", shift=3.0)
    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"run.epochs": 3, "optim.lr": 1e-4, "run.chance_warn_steps": 50}), progress=False)
    rows = untimed_rows(run)
    assert abs(float(rows[1]["train_loss"]) - LN2) < 0.1 * LN2  # a loss that alone reads as chance ...
    assert float(rows[-1]["train_acc"]) > 0.6  # ... on a net that learns
    assert "not learning" not in (run / "log.txt").read_text()


def test_a_real_run_on_random_labels_warns(tmp_path):
    # the same noise in both classes: the labels are random, and 40 steps are far too few to memorise 160 images
    data = noise_folder(tmp_path / "data")
    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"run.epochs": 2, "run.chance_warn_steps": 40}), progress=False)
    log = (run / "log.txt").read_text()
    assert log.count("not learning") == 1 and "after 40 steps" in log and "1/2 = 0.500" in log, log
