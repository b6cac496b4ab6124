"""A checkpoint written by an earlier release (fixtures/tiny-v1.pt, format 1, committed before the checkpoint record
of issue 10) still loads and means what it meant: the same preprocessing, train state and predictions.

The expectations (fixtures/tiny-v1.expected.json) were read from the same bytes by the release that wrote them.
"""

import json
from pathlib import Path

import pytest
import torch

from alexnet.checkpoint import load_checkpoint, model_from_checkpoint

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "tiny-v1.expected.json").read_text())


@pytest.fixture(scope="module")
def release():
    return load_checkpoint(FIXTURES / "tiny-v1.pt")


def test_preprocessing_reads_as_written(release):
    for field in ("model_name", "class_names", "image_size", "in_channels", "preset", "mean", "std"):
        assert release[field] == EXPECTED[field], field


def test_train_state_reads_as_written(release):
    for field in ("epoch", "step_in_epoch", "global_step", "best_val_top1", "scheduler"):
        assert release[field] == EXPECTED[field], field
    assert release["data"]["kind"] == EXPECTED["data_kind"]


def test_model_predicts_as_written(release):
    model = model_from_checkpoint(release)
    x = torch.randn(2, EXPECTED["in_channels"], EXPECTED["image_size"], EXPECTED["image_size"],
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(logits, torch.tensor(EXPECTED["logits"]), rtol=1e-5, atol=1e-6)
