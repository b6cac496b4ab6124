"""Training conveniences of issue 11: --early-stop, --tensorboard, --lr-find."""

import math
import random
import re
import shutil

import pytest
from PIL import Image

from alexnet.store.checkpoint import load_checkpoint
from alexnet.train import fit, resume_config
from alexnet.training.lr_find import END_LR, START_LR, STEPS, RangeTest, diverged, smooth, suggest
from data_factories import make_folder
from tiny_runs import tiny_config


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("conv") / "data", train=8, val=2)


def test_early_stop_after_patience_epochs_without_improvement_and_across_a_resume(data, tmp_path, capsys):
    # lr 0: the weights never change, so validation top-1 improves once (from nothing) and never again
    common = {"optim.lr": 0.0, "run.epochs": 6, "run.early_stop": 2}
    whole = fit(tiny_config(data, tmp_path / "whole", **common), progress=False)
    assert whole.early_stopped and [r["epoch"] for r in whole.rows] == [1, 2, 3]
    assert "early stop: validation top-1 has not improved for 2 epochs" in capsys.readouterr().out
    # The count of epochs without improvement is part of the train state: a resume stops at the same epoch.
    fit(tiny_config(data, tmp_path / "parts", **common, **{"run.max_steps": 4}), progress=False)
    assert load_checkpoint(tmp_path / "parts", prefer="last").train_state["epochs_without_improvement"] == 1
    again = fit(resume_config(tmp_path / "parts", overrides={"run.max_steps": 100}), resume=tmp_path / "parts",
                progress=False)
    assert again.early_stopped and [r["epoch"] for r in again.rows] == [1, 2, 3]
    never = fit(tiny_config(data, tmp_path / "never", **{"optim.lr": 0.0, "run.epochs": 3}), progress=False)
    assert not never.early_stopped and len(never.rows) == 3


def test_tensorboard_logs_scalars_images_and_hyperparameters(data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"run.epochs": 2, "run.tensorboard": True}), progress=False)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert [e.step for e in events.Scalars("epoch/val_top1")] == [1, 2]
    assert len(events.Scalars("train/loss_step")) == 4  # 2 steps per epoch, each read on the CPU
    assert {"conv1_filters", "confusion_matrix"} <= set(tags["images"])
    image = events.Images("confusion_matrix")[-1]
    assert image.width > 100 and image.height > 100
    hparams = events.PluginTagToContent("hparams")  # the HPARAMS tab: every config field, and the best top-1
    assert b"optim.lr" in hparams["_hparams_/experiment"] and b"hparam/best_val_top1" in hparams["_hparams_/experiment"]
    assert [e.value for e in events.Scalars("hparam/best_val_top1")] == [pytest.approx(load_checkpoint(
        run, prefer="best").train_state["best_val_top1"])]


def test_lr_find_writes_the_plot_and_a_suggestion_that_trains_and_no_weights(data, tmp_path, capsys):
    run = tmp_path / "run"
    result = fit(tiny_config(data, run, **{"run.lr_find": True, "run.epochs": 3}), progress=False)
    out = capsys.readouterr().out
    steps = int(re.search(r"lr range test over (\d+) steps", out).group(1))
    assert 15 <= steps <= STEPS  # bounded: it stopped where the loss diverged, or at STEPS
    # The stripes are learnt within the test's steps: the suggestion is a rate Adam trains this network at (issue 26:
    # it used to be able to say 1.2e-7). The run is deterministic; the bounds leave a decade either side of it.
    lr = float(re.search(r"suggested --lr (\S+) ", out).group(1))
    assert 1e-5 <= lr <= 1e-1
    with Image.open(run / "lr_find.png") as img:
        assert img.format == "PNG"
    assert not (run / "checkpoints" / "last.pt").exists() and result.global_step == 0
    # the run folder is still one a real run may go into
    fit(tiny_config(data, run, **{"run.max_steps": 1}), progress=False)
    assert (run / "checkpoints" / "last.pt").is_file()


def test_lr_find_refuses_to_suggest_from_a_real_flat_curve(tmp_path, capsys):
    # Each image is in both classes: no rate can take the loss below ln 2, where it starts, so the curve is flat.
    same = make_folder(tmp_path / "same", train=8, val=2)
    for split in ("train", "val"):
        for cat in sorted((same / split / "cat").iterdir()):
            shutil.copyfile(cat, same / split / "dog" / cat.name.replace("cat", "dog"))
    fit(tiny_config(same, tmp_path / "run", **{"run.lr_find": True}), progress=False)
    out = capsys.readouterr().out
    assert "no rate suggested: the curve is flat" in out and "suggested --lr" not in out
    assert "keep the recipe's --lr" in out  # what to try instead
    assert (tmp_path / "run" / "lr_find.png").is_file()


def _range_test_of(loss_at, noise=0.05, seed=0):
    """(lrs, smoothed, raw) of a range test whose loss at each rate is loss_at(log10(lr)) times noise, cut where
    the smoothed loss diverges, as lr_range_test cuts it."""
    rng = random.Random(seed)
    lrs = [START_LR * (END_LR / START_LR) ** (k / (STEPS - 1)) for k in range(STEPS)]
    raw = [loss_at(math.log10(lr)) * (1 + noise * rng.gauss(0, 1)) for lr in lrs]
    n = next((k for k in range(1, STEPS + 1) if diverged(smooth(raw[:k]))), STEPS)
    return lrs[:n], smooth(raw[:n]), raw[:n]


def test_a_curve_with_a_steep_fall_suggests_a_rate_between_the_fall_and_the_minimum():
    # falls fastest at 1e-3 (a logistic step in log10(lr)), bottoms out near 3e-2, then climbs and diverges
    def loss_at(x):
        return 2 - 1.5 / (1 + math.exp(-4 * (x + 3))) + 20 * max(0.0, x + 1.5) ** 2

    for seed in range(5):  # the rule reads the smoothed minimum, which batch noise moves by little
        lrs, smoothed, raw = _range_test_of(loss_at, seed=seed)
        assert lrs[-1] < 2  # it stopped at the divergence
        lr, note = suggest(lrs, smoothed, raw)
        assert lr is not None and 1e-3 <= lr <= 1e-2, (seed, lr)
        assert "where the smoothed loss reached its minimum" in note


def test_a_flat_curve_gets_no_suggestion_and_says_why():
    # chance level until the rate is so large that it diverges: the old steepest-fall rule picked noise here
    lrs, smoothed, raw = _range_test_of(lambda x: 1.79 + (50 if x > -0.3 else 0))
    lr, note = suggest(lrs, smoothed, raw)
    assert lr is None and note.startswith("the curve is flat: the smoothed loss never fell 10% below its start")
    text = RangeTest(lrs, smoothed, raw, lr, note).describe()
    assert "no rate suggested" in text and "suggested --lr" not in text
    # a loss that falls, but by less than a tenth, is noise too; and a curve cut before it says anything
    assert suggest(*_range_test_of(lambda x: 1.79 - 0.1 / (1 + math.exp(-4 * (x + 3))) + (50 if x > 0 else 0)))[0] is None
    assert suggest(lrs[:8], smoothed[:8], raw[:8])[0] is None
