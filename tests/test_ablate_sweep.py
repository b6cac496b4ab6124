"""A study's learning rate per arm from a sweep, the training curve behind epochs-to-threshold, and the paper's Figure 1
drawn from the runs (alexnet.ablate.sweep; the figure1 study of issue 24)."""

from __future__ import annotations

import json

import pytest
import yaml

from alexnet.ablate.catalog import get_study
from alexnet.ablate.cifar_studies import CIFAR_STUDIES
from alexnet.ablate.metrics import epochs_to
from alexnet.ablate.studies import STUDIES, Study, load_study_file
from alexnet.cli import main
from alexnet.errors import ConfigError
from data_factories import write_cifar10_folder


def test_epochs_to_the_threshold_reads_the_finer_curve_where_there_is_one():
    rows = [{"epoch": 1, "train_acc": 0.5}, {"epoch": 2, "train_acc": 0.8}]
    assert epochs_to(rows, 0.25, 2) == pytest.approx(1 + 0.25 / 0.3)  # from the epochs: 0.5 at 1, 0.2 at 2
    curve = [{"epoch": 0.5, "train_error": 0.4}, {"epoch": 1.0, "train_error": 0.3},
             {"epoch": 1.5, "train_error": 0.2}, {"epoch": 2.0, "train_error": 0.2}]
    assert epochs_to(rows, 0.25, 2, curve) == pytest.approx(1.25)  # between 0.3 at 1.0 and 0.2 at 1.5
    assert epochs_to(rows, 0.1, 2, curve) is None


def test_figure1_is_a_cifar_study_that_all_leaves_out():
    study = get_study("figure1")
    assert study in CIFAR_STUDIES and "figure1" not in STUDIES
    assert study.lr_sweep and study.sweep_epochs >= 1 and study.figure == "figure1"
    assert study.base["model.name"] == "cc-19pct" and study.base["optim.weight_decay"] == 0.0
    assert [a.overrides["model.activation"] for a in study.arms] == ["relu", "tanh"]
    lrn = get_study("lrn-cifar")
    assert lrn in CIFAR_STUDIES and lrn.base["model.name"] == "cc-conv-local-11pct" and lrn.lr_sweep
    assert [a.overrides["model.norm"] for a in lrn.arms] == ["none", "lrn"]
    assert "must not be read as a reproduction" in lrn.notes  # 10 epochs are not the file's ~520


def test_a_verdict_of_the_right_sign_but_not_the_papers_size_says_so():
    from alexnet.ablate import stats
    from alexnet.ablate.report import ClaimResult, verdict_text

    claim = get_study("figure1").claims[0]  # tanh / relu, the paper's 6x
    effect = stats.paired_effect({0: 7.1, 1: 7.0, 2: 7.2}, {0: 4.8, 1: 4.6, 2: 5.0}, "/")
    assert 1.3 < effect.low < effect.high < 1.7
    text = verdict_text(ClaimResult(claim, effect, stats.verdict(effect, claim.sign), None))
    assert text == "reproduced in direction only: the paper's 6x is outside the interval"
    near = stats.paired_effect({0: 29.0, 1: 31.0, 2: 30.0}, {0: 5.0, 1: 5.1, 2: 4.9}, "/")
    assert verdict_text(ClaimResult(claim, near, stats.verdict(near, claim.sign), None)) == "reproduced"


@pytest.mark.parametrize("fields, message", [
    ({"lr_sweep": (0.1, -1.0), "sweep_epochs": 1}, "lr_sweep"),
    ({"lr_sweep": (0.1,)}, "sweep_epochs"),
    ({"figure": "figure9"}, "figure"),
])
def test_a_bad_sweep_or_figure_is_refused_by_name(fields, message):
    with pytest.raises(ConfigError, match=message):
        Study("s", "s", get_study("figure1").arms, ("val_top1",), **fields)


def study_yaml(path):
    path.write_text(yaml.safe_dump({
        "name": "fig", "title": "relu vs tanh, rates swept", "figure": "figure1", "threshold_arm": "relu",
        "lr_sweep": [0.02, 0.2], "sweep_epochs": 1, "metrics": ["epochs_to_threshold", "train_acc"],
        "arms": [{"name": "relu", "overrides": {"model": {"activation": "relu"}}},
                 {"name": "tanh", "overrides": {"model": {"activation": "tanh"}}}],
        "claims": [{"arm": "tanh", "baseline": "relu", "metric": "epochs_to_threshold", "paper": 6.0, "op": "/"}],
        "base": {"model": {"name": "cc-19pct", "width_mult": 0.25, "init": "default"},
                 "data": {"image_size": 32, "preset": "seed"},
                 "optim": {"opt": "sgd", "lr_schedule": "none"},
                 "run": {"epochs": 2, "batch_size": 8, "curve_points": 2, "device": "cpu"}},
    }))
    return path


@pytest.mark.slow
def test_a_swept_study_trains_each_arm_at_its_best_rate_and_draws_figure1(tmp_path, capsys):
    data = write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=8)  # 40 train, 8 test images
    study = load_study_file(study_yaml(tmp_path / "fig.yaml"))
    assert study.lr_sweep == (0.02, 0.2) and study.figure == "figure1"
    out = tmp_path / "ablate"
    args = ["ablate", str(tmp_path / "fig.yaml"), "--data", str(data), "--seeds", "2", "--output-dir", str(out)]
    assert main(args) == 0
    sweep = json.loads((out / "fig-sweep" / "report.json").read_text())
    assert sorted(sweep["values"]) == ["relu-lr0.02", "relu-lr0.2", "tanh-lr0.02", "tanh-lr0.2"]
    chosen = json.loads((out / "fig" / "study.json").read_text())["study"]
    for arm in chosen["arms"]:  # the rate with the lowest training error in the sweep, per arm
        errors = {lr: 100 - sweep["values"][f"{arm['name']}-lr{lr:g}"]["train_acc"]["0"] for lr in (0.02, 0.2)}
        assert arm["overrides"]["optim.lr"] == min(errors, key=lambda lr: (errors[lr], lr))
    assert "Learning rates chosen by the sweep" in chosen["notes"]
    assert (out / "fig" / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "figure1.png" in (out / "fig" / "report.md").read_text()
    runs = [p for p in (out / "runs").iterdir() if (p / "train_curve.csv").is_file()]
    assert len(runs) == 4 + 4  # every sweep run and every study run wrote its curve
    capsys.readouterr()
    assert main(args) == 0  # a second call reads every finished run: nothing trains again
    assert "0 to run" in capsys.readouterr().out
