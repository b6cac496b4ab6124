"""A new user's first run says how long it will take (issue 23): the estimate's arithmetic and its threshold without
training, when it is due, and a real run with no recipe that logs it once (not again on resume)."""

import math
import re

import pytest
import torch

from alexnet.config import resolve_config
from alexnet.runtime.distributed import DistInfo
from alexnet.train import fit, resume_config
from alexnet.training.budget import EVAL_FRACTION
from alexnet.training.estimate import LONG_FIRST_RUN_S, about, describe_estimate, estimate_due, estimate_run
from data_factories import make_folder
from tiny_runs import tiny_config

LINE = re.compile(r"^estimated time: (\d+) epochs? x (\d+) steps? at (\d+\.\d{3}) s per step measured, plus "
                  r"validation: (about \d+ (s|min)|under 1 s) on this machine$", re.MULTILINE)


def test_the_estimate_counts_the_steps_and_the_validation_passes_as_the_budget_does():
    e = estimate_run(step_s=0.2, steps_per_epoch=47, epochs=3, val_images=1000, batch_size=128)
    assert e.seconds == pytest.approx(3 * 47 * 0.2 + 3 * math.ceil(1000 / 128) * 0.2 * EVAL_FRACTION)
    cut = estimate_run(step_s=0.2, steps_per_epoch=47, epochs=3, val_images=1000, batch_size=128, max_steps=50)
    assert (cut.steps, cut.epochs) == (50, 2)
    assert describe_estimate(cut, "x")[0].startswith("estimated time: 50 steps over 2 epochs (run.max_steps) at 0.200")


def test_a_long_plan_suggests_the_fast_recipe_with_the_user_s_data_and_a_short_one_does_not():
    # the default run on 4,000 photos on a 2-core CPU: 10 epochs x 25 steps of batch 128 at about 5 s a step
    long = estimate_run(step_s=5.0, steps_per_epoch=25, epochs=10, val_images=800, batch_size=128)
    assert long.seconds > LONG_FIRST_RUN_S
    line, suggestion = describe_estimate(long, "my photos/cats_and_dogs")
    assert LINE.match(line) and "10 epochs x 25 steps at 5.000 s per step" in line and "about 23 min" in line
    assert suggestion.endswith("run instead: alexnet train --recipe fast --data 'my photos/cats_and_dogs' "
                               "--time-budget 5m (a smaller model at a smaller input size, made for a time budget)")
    short = estimate_run(step_s=0.21, steps_per_epoch=47, epochs=3, val_images=1000, batch_size=128)
    (only,) = describe_estimate(short, "photos")
    assert only == ("estimated time: 3 epochs x 47 steps at 0.210 s per step measured, plus validation: about 31 s "
                    "on this machine")
    just_under = estimate_run(step_s=8.9, steps_per_epoch=100, epochs=1, val_images=1, batch_size=1)  # 893 s
    assert just_under.seconds < LONG_FIRST_RUN_S and len(describe_estimate(just_under, "photos")) == 1


def test_durations_read_as_a_person_says_them():
    assert [about(s) for s in (0.2, 31.4, 2820, 7800)] == ["under 1 s", "about 31 s", "about 47 min", "about 2 h 10 min"]


@pytest.mark.parametrize(("overrides", "device", "world_size", "resumed", "due"), [
    ({}, "cpu", 1, False, True),
    ({"recipe": "fast"}, "cpu", 1, False, False),
    ({"run.time_budget": "5m"}, "cpu", 1, False, False),
    ({"run.lr_find": True}, "cpu", 1, False, False),
    ({}, "cuda", 1, False, False),
    ({}, "cpu", 2, False, False),
    ({}, "cpu", 1, True, False),
])
def test_the_estimate_is_due_on_a_new_user_s_first_run_only(overrides, device, world_size, resumed, due):
    recipe = overrides.pop("recipe", None)
    cfg = resolve_config(recipe=recipe, overrides={"data.source": "photos", **overrides})
    assert estimate_due(cfg, torch.device(device), DistInfo(world_size=world_size), resumed) is due


def test_a_first_run_with_no_recipe_logs_its_estimate_once(tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    cfg = tiny_config(data, run, **{"run.epochs": 1})
    assert cfg.recipe is None
    fit(cfg, progress=False)
    (match,) = LINE.finditer((run / "log.txt").read_text())
    assert match.group(1, 2) == ("1", "2") and float(match.group(3)) > 0  # 16 images, batch 8
    fit(resume_config(run, overrides={"run.epochs": 2}), resume=run, progress=False)
    log = (run / "log.txt").read_text()
    assert len(LINE.findall(log)) == 1 and "run instead" not in log  # a resume says nothing new
