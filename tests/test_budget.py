"""--time-budget (issue 14): durations, the plan's arithmetic, and a real run that follows its plan to the end."""

import math

import pytest
import yaml

from alexnet.config import parse_duration
from alexnet.errors import ConfigError
from alexnet.train import fit
from alexnet.training.budget import epoch_end_estimate, plan
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
    eval_s = epoch_end_estimate(val_images=64, batch_size=32, forward_s=0.5 / 3)
    assert eval_s == pytest.approx(2 * 0.5 / 3)  # two batches
    p = plan(budget_s=100, elapsed_s=10, step_s=0.5, steps_per_epoch=10, eval_s=eval_s, val_every=1)
    left = 100 * 0.97 - 10
    cost = lambda steps: steps * 0.5 + math.ceil(steps / 10) * p.eval_s  # noqa: E731
    assert cost(p.steps) <= left < cost(p.steps + 1)
    assert p.epochs == math.ceil(p.steps / 10)
    with pytest.raises(ConfigError, match="nothing is left to train"):
        plan(budget_s=10, elapsed_s=9.5, step_s=0.5, steps_per_epoch=10, eval_s=eval_s)


@pytest.mark.slow
def test_a_budget_too_small_for_the_run_names_the_recipe_that_fits(tmp_path):
    """`alexnet train --data PHOTOS --time-budget 60s` with no recipe: the full-size default never fits, and the
    refusal says which recipe does (a 1 s budget stands in for it on tiny data: nothing fits in it)."""
    from tiny_runs import run_cli

    data = make_folder(tmp_path / "data", train=4, val=2)
    common = ["--data", str(data), "--width-mult", "0.125", "--batch-size", "8", "--time-budget", "1s"]
    result = run_cli("train", *common, "--image-size", "67", "--output-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "--time-budget" in line]
    assert "nothing is left to train: give a larger budget, or a smaller run: --recipe fast (alexnet-bn x0.25 at " \
           "96 px, made for a time budget; this run is alexnet-bn x0.125 at 67 px)" in line, result.stderr
    # the fast recipe itself is not suggested to itself
    result = run_cli("train", "--recipe", "fast", *common, "--output-dir", str(tmp_path / "fast"))
    assert result.returncode == 2 and "give a larger budget" in result.stderr, result.stderr
    assert "--recipe fast" not in result.stderr


def test_a_budgeted_run_follows_its_plan_to_the_end(tmp_path, capsys):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    result = fit(tiny_config(data, run, **{"run.time_budget": "12s", "optim.lr_schedule": "none"}), progress=False)
    out = capsys.readouterr().out
    assert "time budget 12 s:" in out and "cosine schedule to their end" in out and "the run took" in out
    assert "estimated time" not in out  # a budget plans its own length: no first-run estimate
    planned = yaml.safe_load((run / "config.yaml").read_text())["run"]
    assert result.global_step == planned["max_steps"] > 2 and not result.reached_max_steps
    assert planned["epochs"] == math.ceil(planned["max_steps"] / 2)  # 16 images, batch 8: 2 steps per epoch
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["optim"]["lr_schedule"] == "cosine"
    # the cosine reaches its end at the last planned step: the last epoch's learning rate is about zero; unless a
    # slow machine (CI runs two tests at once) made the keeper stop at an epoch's end with the cosine short of its
    # end: then the run ended at once, with 0 steps left (it happened once in CI: lr 0.0202 x the peak)
    if ": 0 steps left instead" not in out:
        assert result.rows[-1]["lr"] < 0.02 * cfg["optim"]["lr"], out


def test_the_keeper_replans_when_the_steps_left_no_longer_fit_or_leave_much_unused():
    from alexnet.config import TrainConfig
    from alexnet.training.budget import BudgetKeeper, BudgetPlan

    budget = BudgetPlan(budget_s=100, before_s=10, step_s=0.24, eval_s=1.0, steps=400, epochs=4)
    keeper = BudgetKeeper(budget, started=0.0, steps_per_epoch=100)
    cfg = TrainConfig.from_dict({"run": {"max_steps": 400, "epochs": 4, "time_budget": "100s"}})
    left = 97 - 21  # the plan ends at 97% of the budget; 21 s have gone
    cost = lambda s, step: s * step + math.ceil(s / 100) * 1.0  # noqa: E731
    # on time: 300 steps at 0.24 s and 3 epoch ends take 75 s of the 76 left
    assert keeper.replan(cfg, global_step=100, step_in_epoch=0, now=21.0) is None
    for step_s in (0.3, 0.1):  # slower: 93 s would overrun; faster: 33 s would leave most of it unused
        new, message = keeper.replan(cfg, global_step=100, step_in_epoch=0, step_s=step_s, now=21.0)
        fit = new.run.max_steps - 100
        assert cost(fit, step_s) <= left < cost(fit + 1, step_s), step_s
        assert new.run.epochs == math.ceil(new.run.max_steps / 100)
        assert f"{step_s:.3f} s" in message and f"ends at step {new.run.max_steps}" in message
        assert (fit < 300) == (step_s > 0.24)
    # the budget already spent: stop at the step reached
    new, _ = keeper.replan(cfg, global_step=100, step_in_epoch=0, now=200.0)
    assert new.run.max_steps == 100


def test_a_respanned_cosine_goes_on_from_where_it_was_to_its_new_end():
    from alexnet.config import OptimSpec
    from alexnet.training.optim import LRSchedule

    schedule = LRSchedule(OptimSpec(lr=1.0, lr_schedule="cosine"), epochs=10, steps_per_epoch=10)
    before = schedule.lr_at(2, 9)  # after 3 epochs
    for new_end in (5, 20):  # shorter and longer
        schedule.anchor, schedule.epochs = None, 10
        schedule.respan(new_end, 3.0)
        assert schedule.lr_at(2, 9) == pytest.approx(before)  # no jump at the re-plan
        lrs = [schedule.lr_at(e, s) for e in range(3, new_end) for s in range(10)]
        assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] == pytest.approx(0, abs=1e-12)
        restored = LRSchedule(OptimSpec(lr=1.0, lr_schedule="cosine"), epochs=new_end, steps_per_epoch=10)
        restored.load_state_dict(schedule.state_dict())  # a resume follows the re-spanned schedule
        assert restored.lr_at(3, 4) == schedule.lr_at(3, 4)


def test_a_run_paused_midway_is_replanned_to_end_within_its_budget(tmp_path):
    """A real slowdown: the training process is stopped (SIGSTOP) for a few seconds after its first epoch, as a
    laptop busy elsewhere would. The run plans again, fewer steps, and its checkpoint records the shorter plan."""
    import signal
    import subprocess
    import sys
    import time

    from alexnet.store.checkpoint import load_checkpoint

    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "alexnet", "train", "--data", str(data), "--output-dir", str(run), *TINY,
               "--time-budget", "20s", "--device", "cpu"]  # the clock counts the imports: 10 s was tight on a busy CI
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
    first = int(out.split(" steps over ")[0].rsplit(": ", 1)[1])  # "...: 22 steps over 11 epochs"
    assert "time budget: steps take" in out, out
    recorded = load_checkpoint(run, prefer="last")
    planned = recorded.config["run"]["max_steps"]
    assert planned < first and recorded.train_state["global_step"] == planned, out
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["max_steps"] == planned


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the launch time is read from /proc")
def test_the_launch_clock_counts_from_the_process_launch_not_from_the_call():
    """`alexnet train --time-budget` counts the interpreter's start and the imports, as a stopwatch does."""
    import subprocess
    import sys

    code = ("import time; time.sleep(1.5); t = time.perf_counter()\n"
            "from alexnet.training.budget import launch_clock\n"
            "print(t - launch_clock())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 1.5 <= float(out.stdout) < 60, out.stdout


def test_a_plan_validates_every_few_epochs_when_each_epoch_would_cost_more_than_its_share():
    """CIFAR-10 at 80 s on a 2-core CPU: a validation of 10,000 images costs about a tenth of an epoch; after
    every epoch it took 14% of the budget. The plan keeps it to VAL_SHARE and spends the rest on steps."""
    from alexnet.training.budget import VAL_SHARE, validations

    eval_s = epoch_end_estimate(val_images=10000, batch_size=256, forward_s=0.16 / 3, eval_passes=2, save_s=0.5)
    cifar = {"budget_s": 80, "elapsed_s": 8, "step_s": 0.16, "steps_per_epoch": 195, "eval_s": eval_s}
    every_epoch = plan(**cifar, val_every=1)
    chosen = plan(**cifar)
    assert every_epoch.epochs * every_epoch.eval_s > VAL_SHARE * 80  # what the choice is for
    assert chosen.val_every > 1 and chosen.steps > every_epoch.steps
    # one validation (the last epoch's) is the least: here it alone is over the share
    assert chosen.val_every == chosen.epochs and validations(chosen.epochs, chosen.val_every) == 1
    longer = plan(**{**cifar, "budget_s": 600})
    count = validations(longer.epochs, longer.val_every)
    assert count > 1 and count * longer.eval_s <= VAL_SHARE * 600
    assert validations(longer.epochs, longer.val_every - 1) * longer.eval_s > VAL_SHARE * 600  # the least that fits
    left = 80 * 0.97 - 8
    cost = lambda steps: steps * 0.16 + validations(math.ceil(steps / 195), chosen.val_every) * chosen.eval_s  # noqa: E731
    assert cost(chosen.steps) <= left < cost(chosen.steps + 1)
    # a small validation set is validated every epoch; so is any whose user said so
    small = epoch_end_estimate(val_images=1000, batch_size=256, forward_s=0.16 / 3, eval_passes=2, save_s=0.5)
    assert plan(**{**cifar, "budget_s": 3600, "eval_s": small}).val_every == 1
    assert plan(**cifar, val_every=1).val_every == 1
    assert "validated every" in chosen.describe() and "at most 5% of the budget" in chosen.describe()


def test_val_every_validates_every_nth_epoch_and_the_last(tmp_path, capsys):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    result = fit(tiny_config(data, run, **{"run.epochs": 5, "run.val_every": 2}), progress=False)
    out = capsys.readouterr().out
    assert [row["epoch"] for row in result.rows] == [2, 4, 5]
    assert "epoch 1, loss" in out and "(validated every 2 epochs and after the last: run.val_every)" in out
    with open(run / "metrics.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["2", "4", "5"]
    assert (run / "checkpoints" / "best.pt").exists() and result.epochs_done == 5


def test_val_every_is_refused_where_every_epoch_is_judged():
    from alexnet.config import resolve_config

    for extra in ({"optim.lr_schedule": "plateau"}, {"run.early_stop": 3}):
        with pytest.raises(ConfigError, match="field 'run.val_every' is 2, but .* judges every epoch"):
            resolve_config(overrides={"run.val_every": 2, **extra})
    with pytest.raises(ConfigError, match="run.val_every"):
        resolve_config(overrides={"run.val_every": 0})


def test_a_keeper_out_of_time_after_an_epoch_that_did_not_validate_takes_one_step_more():
    """The run must end in an epoch that validates: its best.pt and the last row of metrics.csv depend on it."""
    from alexnet.config import resolve_config
    from alexnet.training.budget import BudgetKeeper, BudgetPlan

    cfg = resolve_config(overrides={"run.time_budget": "100s", "run.max_steps": 400, "run.epochs": 4,
                                    "run.val_every": 3})
    keeper = BudgetKeeper(BudgetPlan(100, 0, 0.2, 1.0, 400, 4, 3), started=0.0, steps_per_epoch=100)
    new, _ = keeper.replan(cfg, global_step=100, step_in_epoch=0, now=200.0)  # epoch 1 ended, not validated
    assert new.run.max_steps == 101
    new, _ = keeper.replan(cfg, global_step=300, step_in_epoch=0, now=200.0)  # epoch 3 ended, validated
    assert new.run.max_steps == 300


def test_before_any_validation_the_keeper_scales_its_estimate_with_the_step_it_measures():
    """The probe's steps are a run's slowest: a validation estimated from them, and never corrected before the
    run's only validation, left seconds of an 80 s budget unused."""
    from alexnet.training.budget import BudgetKeeper, BudgetPlan

    budget = BudgetPlan(budget_s=80, before_s=8, step_s=0.26, eval_s=7.5, steps=230, epochs=2, val_every=2,
                        save_s=0.5)
    keeper = BudgetKeeper(budget, started=0.0, steps_per_epoch=195)
    assert keeper.eval_s == pytest.approx(7.5)
    keeper.train_s, keeper.steps = 17.5, 100  # 0.175 s a step, measured
    assert keeper.eval_s == pytest.approx(0.5 + 7.0 * 0.175 / 0.26)
    keeper.epoch_end(4.0)  # a validation measured: it is the estimate from now on
    assert keeper.eval_s == pytest.approx(4.0)


def test_the_forward_probe_times_a_copy_and_leaves_the_model_as_it_was():
    import torch

    from alexnet.models import build_model
    from alexnet.training.budget import probe_forward_seconds
    from alexnet.training.epoch import EpochSettings

    model = build_model("cc-80sec", num_classes=10, norm="bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    settings = EpochSettings(seed=0, info=None, device=torch.device("cpu"), amp_dtype=None, channels_last=True)
    assert 0 < probe_forward_seconds(model, 32, settings) < 10
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_run_resumed_before_epochs_that_do_not_validate_ends_as_the_uninterrupted_one(tmp_path):
    import torch

    from alexnet.store.checkpoint import load_checkpoint
    from alexnet.train import resume_config

    data = make_folder(tmp_path / "data", train=8, val=2)  # 16 images, batch 8: 2 steps an epoch
    extra = {"run.epochs": 5, "run.val_every": 2, "run.deterministic": True}
    whole = fit(tiny_config(data, tmp_path / "whole", **extra), progress=False)
    fit(tiny_config(data, tmp_path / "parts", **extra, **{"run.max_steps": 4}), progress=False)  # epochs 1-2
    parts = fit(resume_config(tmp_path / "parts", overrides={"run.max_steps": 10}), resume=tmp_path / "parts",
                progress=False)
    assert [r["epoch"] for r in whole.rows] == [r["epoch"] for r in parts.rows] == [2, 4, 5]
    assert [r["val_top1"] for r in whole.rows] == [r["val_top1"] for r in parts.rows]
    a, b = (load_checkpoint(p / "checkpoints" / "last.pt").weights for p in (tmp_path / "whole", tmp_path / "parts"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_validations_count_the_run_s_own_multiples_from_where_it_is():
    from alexnet.training.budget import validations

    assert [validations(e, 2) for e in (1, 2, 3, 4)] == [1, 1, 2, 2]  # every 2nd and the last
    assert validations(2, 2, done=1) == 2  # epochs 2 (a multiple) and 3 (the last)
    assert validations(2, 2, done=2) == 1  # epochs 3 and 4: 4 only
    assert validations(0, 3, done=5) == 0 and validations(1, 3, done=2) == 1


def test_a_replan_into_another_epoch_chooses_its_validation_cadence_again_unless_the_user_set_it():
    """At 80 s on an AVX2 CPU the probe measured 0.099 s a step and the run 0.079: the replan grew the run from 2
    epochs into a third, keeping the plan's 'every 2': a validation at epoch 2 and one at the end, 4.7 s each, where
    one at the end keeps validation within VAL_SHARE and buys ~65 steps."""
    from alexnet.config import resolve_config
    from alexnet.training.budget import BudgetKeeper, BudgetPlan

    left, step_s, eval_s = 80 * 0.97 - 20.0, 0.07, 4.7
    cfg = resolve_config(overrides={"run.time_budget": "80s", "run.max_steps": 635, "run.epochs": 2,
                                    "run.val_every": 2})
    results = {}
    for chosen in (True, False):
        plan = BudgetPlan(80, 8, 0.099, eval_s, 635, 2, 2, cadence_chosen=chosen)
        keeper = BudgetKeeper(plan, started=0.0, steps_per_epoch=390)
        results[chosen], message = keeper.replan(cfg, global_step=100, step_in_epoch=100, step_s=step_s,
                                                 eval_s=eval_s, now=20.0)
        assert ("validated every 3 epochs" in message) == chosen
    mine = results[False].run
    assert (mine.val_every, mine.epochs) == (2, 3)  # the user's cadence: epochs 2 and 3 validate
    assert (mine.max_steps - 100) * step_s + 2 * eval_s <= left < (mine.max_steps - 99) * step_s + 2 * eval_s
    planned = results[True].run
    assert (planned.val_every, planned.epochs) == (3, 3)  # one validation, at the end
    fit = planned.max_steps - 100
    assert fit * step_s + eval_s <= left < (fit + 1) * step_s + eval_s and fit > mine.max_steps - 100 + 60


def test_a_replan_late_in_a_long_run_never_validates_more_often_than_planned():
    """20 minutes on CIFAR-10: a first version compared the validations left with the whole run's share and, past
    epoch 22, validated after every epoch (18 validations where the plan had 7)."""
    from alexnet.config import resolve_config
    from alexnet.training.budget import BudgetKeeper, BudgetPlan

    cfg = resolve_config(overrides={"run.time_budget": "1200s", "run.max_steps": 26 * 390 + 1000, "run.epochs": 29,
                                    "run.val_every": 5})
    keeper = BudgetKeeper(BudgetPlan(1200, 9, 0.082, 7.46, 13497, 35, 5, cadence_chosen=True), started=0.0,
                          steps_per_epoch=390)
    keeper.ends_s, keeper.ends = 5 * 7.46, 5  # epochs 5, 10, ..., 25 validated
    new, _ = keeper.replan(cfg, global_step=26 * 390, step_in_epoch=0, step_s=0.06, eval_s=7.46, now=1000.0)
    assert new.run.max_steps > cfg.run.max_steps and new.run.val_every == 5
