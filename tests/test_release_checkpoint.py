"""Checkpoints written by earlier releases still load and mean what they meant: the same preprocessing, train state
and predictions. fixtures/tiny-v1.pt is format 1, committed before the checkpoint record of issue 10; tiny-v2.pt is
format 2, written at b3084c3, before the new layout of issue 22.

The expectations (fixtures/tiny-v*.expected.json) were read from the same bytes by the release that wrote them.
"""

import json
from pathlib import Path

import pytest
import torch

from alexnet.store.checkpoint import load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
RELEASES = ("tiny-v1", "tiny-v2")


@pytest.fixture(scope="module", params=RELEASES)
def release(request):
    return load_checkpoint(FIXTURES / f"{request.param}.pt")


@pytest.fixture(scope="module")
def expected(release):
    return json.loads(Path(release.path).with_suffix(".expected.json").read_text())


def test_preprocessing_reads_as_written(release, expected):
    assert release.model_name == expected["model_name"] and release.class_names == expected["class_names"]
    for field in ("image_size", "in_channels", "preset"):
        assert getattr(release.preprocessing, field) == expected[field], field
    assert list(release.preprocessing.mean) == expected["mean"] and list(release.preprocessing.std) == expected["std"]
    assert release.config["optim"]["opt"] == expected["optimizer_class"]


def test_train_state_reads_as_written(release, expected):
    for field in ("epoch", "step_in_epoch", "global_step", "best_val_top1", "scheduler"):
        assert release.train_state[field] == expected[field], field
    assert release.data["kind"] == expected["data_kind"]


def test_train_state_restores_into_a_trainer(release, expected):
    """The release's optimizer, schedule and position load into today's TrainState."""
    from alexnet.config import TrainConfig
    from alexnet.runtime.distributed import DistInfo
    from alexnet.training.epoch import ChanceWatch
    from alexnet.training.optim import LRSchedule, build_optimizer
    from alexnet.training.state import TrainState

    cfg = TrainConfig.from_dict(release.config)
    model = release.build_model()
    state = TrainState(build_optimizer(cfg.optim, model), LRSchedule(cfg.optim, cfg.run.epochs, 1), None,
                       ChanceWatch(len(release.class_names), cfg.run.chance_warn_steps),
                       param_names={id(p): name for name, p in model.named_parameters()})
    state.load_state_dict(release.train_state, DistInfo())
    assert (state.epoch, state.step_in_epoch, state.global_step) == (expected["epoch"], expected["step_in_epoch"],
                                                                     expected["global_step"])
    assert state.schedule.state_dict() == expected["scheduler"]
    assert len(state.optimizer.state) == len(list(model.parameters()))  # Adam's moments, one entry per parameter


def test_model_predicts_as_written(release, expected):
    model = release.build_model()
    x = torch.randn(2, expected["in_channels"], expected["image_size"], expected["image_size"],
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, torch.tensor(expected["logits"]), rtol=1e-5, atol=1e-6)
