"""alexnet.ablate's numbers: the paired interval, the verdict rule, the seeds an effect needs, and the metrics
read from metrics.csv, each against numbers worked out by hand."""

import math

import pytest

from alexnet.ablate import metrics, stats
from alexnet.ablate.studies import Claim


def test_t_quantiles_match_the_table_and_the_tail():
    assert stats.t975(1) == 12.706 and stats.t975(2) == 4.303 and stats.t975(30) == 2.042
    assert stats.t975(31) == pytest.approx(2.0395, abs=5e-4)  # tabulated: 2.0395
    assert stats.t975(120) == pytest.approx(1.9799, abs=5e-4)  # tabulated: 1.9799
    with pytest.raises(ValueError):
        stats.t975(0)


def test_paired_difference_and_its_interval_by_hand():
    # differences 2, 3, 1: mean 2, s 1, half-width 4.303 / sqrt(3) = 2.4843
    effect = stats.paired_effect({0: 3.0, 1: 5.0, 2: 4.0, 7: 9.0}, {0: 1.0, 1: 2.0, 2: 3.0})  # seed 7 unpaired
    assert effect.n == 3 and effect.estimate == pytest.approx(2.0)
    assert effect.low == pytest.approx(2 - 2.48428, abs=1e-4) and effect.high == pytest.approx(2 + 2.48428, abs=1e-4)
    assert not effect.excludes_zero
    assert stats.verdict(effect, +1) == "inconclusive"
    # n=4: 3.182 * 1 / 2 = 1.591 < 2 (n=3 gives 2.484 > 2)
    assert stats.seeds_needed(effect.centre, effect.spread) == 4


def test_ratio_effect_is_a_geometric_mean_with_a_log_scale_interval():
    # log ratios ln 2 and ln 4: mean 1.5 ln 2 (ratio 2^1.5 = 2.828), s = ln 2 / sqrt(2)
    effect = stats.paired_effect({0: 2.0, 1: 8.0}, {0: 1.0, 1: 2.0}, op="/")
    assert effect.estimate == pytest.approx(2 ** 1.5)
    half = 12.706 * (math.log(2) / math.sqrt(2)) / math.sqrt(2)
    assert effect.low == pytest.approx(math.exp(1.5 * math.log(2) - half))
    assert effect.high == pytest.approx(math.exp(1.5 * math.log(2) + half))
    assert not effect.excludes_zero  # the interval holds ratio 1


@pytest.mark.parametrize(("arm", "sign", "expected"), [
    ({0: 3.0, 1: 3.1, 2: 2.9}, +1, "reproduced"),  # +2 +- small: excludes 0, the paper's sign
    ({0: 3.0, 1: 3.1, 2: 2.9}, -1, "contradicted"),
    ({0: 1.0, 1: 1.0, 2: 1.0}, +1, "inconclusive"),  # no difference at all
    ({0: 3.0, 1: 3.1, 2: 2.9}, 0, "no claim"),
])
def test_verdict_rule(arm, sign, expected):
    effect = stats.paired_effect(arm, {0: 1.0, 1: 1.0, 2: 1.0})
    assert stats.verdict(effect, sign) == expected


def test_one_seed_has_no_interval_and_is_inconclusive():
    effect = stats.paired_effect({0: 5.0}, {0: 1.0})
    assert effect.low is None and not effect.excludes_zero
    assert stats.verdict(effect, +1) == "inconclusive"
    assert stats.verdict(None, +1) == "no data"
    assert stats.seeds_needed(0.0, 1.0) is None and stats.seeds_needed(1.0, 0.0) == 2


def test_claim_sign_comes_from_the_paper_number_or_its_direction():
    assert Claim("a", "b", "val_top1", 1.4).sign == 1
    assert Claim("a", "b", "epochs_to_threshold", 6.0, op="/").sign == 1
    assert Claim("a", "b", "epochs_to_threshold", 0.5, op="/").sign == -1
    assert Claim("a", "b", "gap", direction=-1).sign == -1
    assert Claim("a", "b", "gap").sign == 0


def test_epochs_to_threshold_interpolates_from_chance_at_epoch_0():
    rows = [{"epoch": 1, "train_acc": 0.5}, {"epoch": 2, "train_acc": 0.7}, {"epoch": 3, "train_acc": 0.8}]
    # 4 classes: chance error 0.75 at epoch 0; errors 0.5, 0.3, 0.2; 0.25 is crossed half-way through epoch 3
    assert metrics.epochs_to(rows, 0.25, 4) == pytest.approx(2.5)
    assert metrics.epochs_to(rows, 0.6, 4) == pytest.approx(0.6)  # (0.75 - 0.6) / (0.75 - 0.5)
    assert metrics.epochs_to(rows, 0.1, 4) is None


def test_threshold_is_25_percent_where_every_run_reaches_it_else_the_grid_above():
    good = [{"epoch": 1, "train_acc": 0.8}]
    poor = [{"epoch": 1, "train_acc": 0.62}]
    assert metrics.choose_threshold([good, good], 4)[0] == 0.25
    threshold, why = metrics.choose_threshold([good, poor], 4)
    assert threshold == pytest.approx(0.40) and "38.0%" in why
    assert metrics.choose_threshold([[{"epoch": 1, "train_acc": 0.2}]], 4)[0] is None  # never below chance


def test_run_values_by_hand():
    rows = [{"epoch": 1, "train_acc": 0.5, "val_top1": 0.4, "val_top5": 0.9, "images_per_s": 100.0},
            {"epoch": 2, "train_acc": 0.9, "val_top1": 0.695, "val_top5": 0.95, "images_per_s": 200.0},
            {"epoch": 3, "train_acc": 0.95, "val_top1": 0.70, "val_top5": 0.97, "images_per_s": 300.0}]
    v = metrics.run_values(rows, {"classes": 10, "params": 1234}, 0.25)
    assert v["val_top1"] == pytest.approx(70.0) and v["val_top5"] == pytest.approx(97.0)
    assert v["gap"] == pytest.approx(25.0)
    assert v["epochs_to_converge"] == 2.0  # 69.5 is within 1 point of the best, 70
    assert v["images_per_s"] == pytest.approx(250.0)  # epochs after the first
    assert v["stuck"] == 0.0 and v["params"] == 1234.0
    # 2 classes: top-5 is 100% by definition and is left out
    assert metrics.run_values(rows, {"classes": 2, "params": 1}, None)["val_top5"] is None


def test_damaged_metrics_file_is_named_with_its_line(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,train_acc,val_top1\n1,0.5,0.4\n2,abc,0.5\n")
    with pytest.raises(metrics.MetricsError, match=r"metrics.csv: line 3 is damaged"):
        metrics.read_rows(path)
    path.write_text("epoch,val_top1\n2,0.5\n")
    with pytest.raises(metrics.MetricsError, match="not 1, 2, 3"):
        metrics.read_rows(path)


def test_a_claim_that_cannot_apply_shows_no_effect_rather_than_pending_seeds():
    from alexnet.ablate.report import NOT_APPLICABLE, ClaimResult, effect_text

    claim = Claim("lrn", "none", "val_top5", 1.2)
    assert effect_text(ClaimResult(claim, None, NOT_APPLICABLE, None)) == "n/a"  # 2 classes: top-5 is always 100%
    assert effect_text(ClaimResult(claim, None, "inconclusive", None)) == "no paired seeds yet"  # runs unfinished
    measured = stats.paired_effect({0: 3.0, 1: 5.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert effect_text(ClaimResult(claim, measured, "inconclusive", 4)) == "+2.00 [-0.48, +4.48]"
