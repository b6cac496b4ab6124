"""--time-budget (issue 14): durations, the plan's arithmetic, and a real run that follows its plan to the end."""

import math

import pytest
import yaml

from alexnet.config import parse_duration
from alexnet.errors import ConfigError
from alexnet.train import fit
from alexnet.training.budget import plan
from data_factories import make_folder
from tiny_runs import TINY, tiny_config


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


def test_the_keeper_shortens_a_plan_that_no_longer_fits_and_leaves_one_that_does():
    from alexnet.config import TrainConfig
    from alexnet.training.budget import BudgetKeeper, BudgetPlan

    budget = BudgetPlan(budget_s=100, before_s=10, step_s=0.1, eval_s=1.0, steps=400, epochs=4)
    keeper = BudgetKeeper(budget, started=0.0, steps_per_epoch=100)
    cfg = TrainConfig.from_dict({"run": {"max_steps": 400, "epochs": 4, "time_budget": "100s"}})
    # on time: 100 steps done at t = 21 s, 300 steps (30 s) and 3 epoch ends (3 s) left in 97 - 21 s
    assert keeper.replan(cfg, global_step=100, step_in_epoch=0, now=21.0) is None
    # three times slower: 300 steps at 0.3 s no longer fit in 76 s; the most that do (and their epoch ends) are kept
    new, message = keeper.replan(cfg, global_step=100, step_in_epoch=0, step_s=0.3, now=21.0)
    left = 97 - 21
    fit = new.run.max_steps - 100
    cost = lambda s: s * 0.3 + math.ceil(s / 100) * 1.0  # noqa: E731
    assert cost(fit) <= left < cost(fit + 1) and new.run.epochs == math.ceil(new.run.max_steps / 100)
    assert "0.300 s" in message and f"ends at step {new.run.max_steps}" in message
    # the budget already spent: stop at the step reached
    new, _ = keeper.replan(cfg, global_step=100, step_in_epoch=0, now=200.0)
    assert new.run.max_steps == 100


def test_a_run_paused_midway_is_replanned_to_end_within_its_budget(tmp_path):
    """A real slowdown: the training process is stopped (SIGSTOP) for a few seconds after its first epoch, as a
    laptop busy elsewhere would. The run plans again, fewer steps, and its checkpoint records the shorter plan."""
    import signal
    import subprocess
    import sys
    import time

    from alexnet.checkpoint import load_checkpoint

    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "alexnet", "train", "--data", str(data), "--output-dir", str(run), *TINY,
               "--time-budget", "10s", "--device", "cpu"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("epoch 1,"):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(5)
            proc.send_signal(signal.SIGCONT)
            break
    lines += proc.stdout.readlines()
    assert proc.wait() == 0, "".join(lines)
    out = "".join(lines)
    first = int(out.split(" steps over ")[0].rsplit(": ", 1)[1])  # "...: 22 steps over 11 epoch(s)"
    assert "time budget: steps take" in out, out
    recorded = load_checkpoint(run, prefer="last")
    planned = recorded.config["run"]["max_steps"]
    assert planned < first and recorded.train_state["global_step"] == planned, out
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["max_steps"] == planned
