"""A checkpoint written by an earlier release (fixtures/tiny-v1.pt, format 1, committed before the checkpoint record
of issue 10) still loads and means what it meant: the same preprocessing, train state and predictions.

The expectations (fixtures/tiny-v1.expected.json) were read from the same bytes by the release that wrote them.
"""

import json
from pathlib import Path

import pytest
import torch

from alexnet.checkpoint import load_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "tiny-v1.expected.json").read_text())


@pytest.fixture(scope="module")
def release():
    return load_checkpoint(FIXTURES / "tiny-v1.pt")


def test_preprocessing_reads_as_written(release):
    assert release.model_name == EXPECTED["model_name"] and release.class_names == EXPECTED["class_names"]
    for field in ("image_size", "in_channels", "preset"):
        assert getattr(release.preprocessing, field) == EXPECTED[field], field
    assert list(release.preprocessing.mean) == EXPECTED["mean"] and list(release.preprocessing.std) == EXPECTED["std"]
    assert release.config["optim"]["opt"] == EXPECTED["optimizer_class"]


def test_train_state_reads_as_written(release):
    for field in ("epoch", "step_in_epoch", "global_step", "best_val_top1", "scheduler"):
        assert release.train_state[field] == EXPECTED[field], field
    assert release.data["kind"] == EXPECTED["data_kind"]


def test_train_state_restores_into_a_trainer(release):
    """The release's optimizer, schedule and position load into today's TrainState."""
    from alexnet.config import TrainConfig
    from alexnet.distributed import DistInfo
    from alexnet.training.epoch import ChanceWatch
    from alexnet.training.optim import LRSchedule, build_optimizer
    from alexnet.training.state import TrainState

    cfg = TrainConfig.from_dict(release.config)
    model = release.build_model()
    state = TrainState(build_optimizer(cfg.optim, model), LRSchedule(cfg.optim, cfg.run.epochs, 1), None,
                       ChanceWatch(len(release.class_names), cfg.run.chance_warn_steps))
    state.load_state_dict(release.train_state, DistInfo())
    assert (state.epoch, state.step_in_epoch, state.global_step) == (EXPECTED["epoch"], EXPECTED["step_in_epoch"],
                                                                     EXPECTED["global_step"])
    assert state.schedule.state_dict() == EXPECTED["scheduler"]
    assert len(state.optimizer.state) == len(list(model.parameters()))  # Adam's moments, one entry per parameter


def test_model_predicts_as_written(release):
    model = release.build_model()
    x = torch.randn(2, EXPECTED["in_channels"], EXPECTED["image_size"], EXPECTED["image_size"],
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, torch.tensor(EXPECTED["logits"]), rtol=1e-5, atol=1e-6)
