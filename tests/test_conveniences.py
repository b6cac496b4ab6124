"""Training conveniences of issue 11: --early-stop, --tensorboard, --lr-find."""

import math

import pytest
from PIL import Image

from alexnet.store.checkpoint import load_checkpoint
from alexnet.train import fit, resume_config
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


def test_lr_find_writes_the_plot_and_a_suggestion_and_no_weights(data, tmp_path, capsys):
    run = tmp_path / "run"
    result = fit(tiny_config(data, run, **{"run.lr_find": True, "run.epochs": 3}), progress=False)
    out = capsys.readouterr().out
    assert "lr range test over" in out and "suggested --lr" in out
    with Image.open(run / "lr_find.png") as img:
        assert img.format == "PNG"
    assert not (run / "checkpoints" / "last.pt").exists() and result.global_step == 0
    # the run folder is still one a real run may go into
    fit(tiny_config(data, run, **{"run.max_steps": 1}), progress=False)
    assert (run / "checkpoints" / "last.pt").is_file()


def test_the_suggestion_is_the_steepest_fall():
    from alexnet.training.lr_find import suggest

    lrs = [10 ** (-7 + 0.1 * i) for i in range(80)]
    # a loss that falls fastest at lr = 1e-3 (a logistic step in log10(lr)) and explodes past 1e-1
    losses = [2 - 1.5 / (1 + math.exp(-3 * (math.log10(lr) + 3))) + (5 if lr > 0.1 else 0) for lr in lrs]
    assert suggest(lrs, losses) == pytest.approx(1e-3, rel=0.3)
    assert suggest(lrs[:3], losses[:3]) is None
