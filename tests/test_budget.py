"""--time-budget (issue 14): durations, the plan's arithmetic, and a real run that follows its plan to the end."""

import math

import pytest
import yaml

from alexnet.config import parse_duration
from alexnet.errors import ConfigError
from alexnet.train import fit
from alexnet.training.budget import plan
from data_factories import make_folder
from tiny_runs import tiny_config


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2.5m", 150), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "m", "0s", "-1m", "5m 3", "31d"])
def test_bad_durations_name_the_field(text):
    with pytest.raises(ConfigError, match="field 'run.time_budget'"):
        parse_duration(text)


def test_the_plan_fills_what_is_left_and_no_more():
    p = plan(budget_s=100, elapsed_s=10, step_s=0.5, steps_per_epoch=10, val_images=64, batch_size=32)
    left = 100 * 0.97 - 10
    cost = lambda steps: steps * 0.5 + math.ceil(steps / 10) * p.eval_s  # noqa: E731
    assert cost(p.steps) <= left < cost(p.steps + 1)
    assert p.epochs == math.ceil(p.steps / 10) and p.eval_s == pytest.approx(2 * 0.5 / 3)
    with pytest.raises(ConfigError, match="nothing is left to train"):
        plan(budget_s=10, elapsed_s=9.5, step_s=0.5, steps_per_epoch=10, val_images=64, batch_size=32)


def test_a_budgeted_run_follows_its_plan_to_the_end(tmp_path, capsys):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    result = fit(tiny_config(data, run, **{"run.time_budget": "12s", "optim.lr_schedule": "none"}), progress=False)
    out = capsys.readouterr().out
    assert "time budget 12 s:" in out and "cosine schedule to their end" in out and "the run took" in out
    planned = yaml.safe_load((run / "config.yaml").read_text())["run"]
    assert result.global_step == planned["max_steps"] > 2 and not result.stopped_early
    assert planned["epochs"] == math.ceil(planned["max_steps"] / 2)  # 16 images, batch 8: 2 steps per epoch
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["optim"]["lr_schedule"] == "cosine"
    # the cosine reaches its end at the last planned step: the last epoch's learning rate is about zero
    assert result.rows[-1]["lr"] < 0.02 * cfg["optim"]["lr"]
