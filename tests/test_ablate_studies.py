"""alexnet ablate without training: the built-in studies, study YAML files, the plan and its commands, the new
switches as train flags, and bad input (unknown study, bad YAML, a folder of other settings, a damaged
metrics.csv) answered in one line, never a traceback."""

import json

import pytest
import yaml

from alexnet.ablate import plan as planning
from alexnet.ablate.catalog import get_study
from alexnet.ablate.studies import STUDIES, load_study_file
from alexnet.cli import main
from alexnet.config import ModelSpec, resolve_config
from alexnet.errors import ConfigError


def open_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_every_built_in_study_names_its_arms_metrics_and_the_paper():
    assert list(STUDIES) == ["relu", "lrn", "overlap", "dropout", "augment", "towers", "tencrop", "init", "features"]
    for study in STUDIES.values():
        assert study.paper and study.claims
        assert any(c.sign != 0 for c in study.claims), study.name  # each checks at least one claim


def test_study_switches_are_train_flags_that_reach_the_model():
    spec = resolve_config(overrides={"model.activation": "tanh", "model.channels": "48,128,192,192,256",
                                     "model.groups": 1, "model.init": "paper-bias0", "model.pooling": "plain"}).model
    arch = spec.architecture()
    assert arch["channels"] == (48, 128, 192, 192, 256) and arch["groups"] == 1
    assert arch["activation"] == "tanh" and arch["init"] == "paper-bias0" and arch["pooling"] == "plain"
    with pytest.raises(ConfigError, match="model.channels"):
        ModelSpec(channels="48,128")
    with pytest.raises(ConfigError, match="model.init"):
        ModelSpec(init="bias1")
    with pytest.raises(ConfigError, match="pca_sigma.*cache loader"):
        resolve_config(overrides={"data.pca_sigma": 0.0, "data.loader": "pil"})


def test_pca_sigma_reaches_the_batch_augmentation(tmp_path):
    import torch

    from alexnet.data import build_datasets
    from alexnet.runtime.distributed import env_info
    from alexnet.training.batches import build_batches
    from data_factories import make_folder
    from tiny_runs import tiny_config

    cfg = tiny_config(make_folder(tmp_path / "d", train=2, val=1), tmp_path / "r",
                      **{"data.pca_sigma": 0.0, "data.preset": "paper"})
    bundle = build_datasets(source=cfg.data.source, image_size=67, preset="paper")
    source, _ = build_batches(cfg, bundle, 67, 3, env_info(), torch.device("cpu"))
    assert source.augment.sigma == 0.0


def test_plan_shares_one_run_between_arms_that_build_the_same_model(tmp_path):
    settings = planning.Settings("quick", None, {})
    lrn = planning.make_plan(get_study("lrn"), tmp_path, settings, 2)
    overlap = planning.make_plan(get_study("overlap"), tmp_path, settings, 2)
    # lrn's "lrn" arm and overlap's "overlap" arm are both the profile's base model
    lrn_arm = {r.name for r in lrn.runs_of("lrn")}
    assert lrn_arm == {r.name for r in overlap.runs_of("overlap")} and len(lrn_arm) == 2
    assert all(name.startswith("base-") for name in lrn_arm)
    assert len({r.name for r in lrn.runs}) == 6  # 3 arms x 2 seeds
    cfg = lrn.configs[next(r.name for r in lrn.runs_of("bn"))]
    assert cfg["model"]["norm"] == "bn" and cfg["model"]["width_mult"] == 0.25 and cfg["run"]["seed"] in (0, 1)


def test_a_baseline_is_fitted_once_and_read_by_every_seed(tmp_path, capsys):
    from alexnet.ablate.runner import jobs_of

    plan = planning.make_plan(get_study("features"), tmp_path, planning.Settings("quick", None, {}), 3)
    for kind in ("pixels", "hog"):
        runs = plan.runs_of(kind)
        assert [r.seed for r in runs] == [0, 1, 2] and len({r.name for r in runs}) == 1  # one fit, three seeds
    side = [j for j in jobs_of(plan) if j.kind != "train"]
    assert sorted(j.kind for j in side) == ["hog", "pixels"]
    assert len([j for j in jobs_of(plan) if j.kind == "train"]) == 3  # AlexNet still trains once per seed
    assert main(["ablate", "plan", "features", "--seeds", "3", "--output-dir", str(tmp_path / "abl")]) == 0
    assert capsys.readouterr().out.count(" ablate job ") == 2


def test_plan_prints_one_train_command_per_run_and_writes_their_configs(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablate", "plan", "tencrop", "--seeds", "2", "--output-dir", str(out), "--epochs", "3"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    train = [line for line in lines if " train --config " in line]
    jobs = [line for line in lines if " ablate job " in line]
    assert len(train) == 2 and len(jobs) == 2  # the base run per seed, then its 10-crop evaluation
    config = yaml.safe_load(open_text(train[0].split("--config ")[1].split()[0]))
    assert config["run"]["epochs"] == 3 and config["run"]["output_dir"].startswith(str(out.resolve()))
    assert json.loads((out / "tencrop" / "study.json").read_text())["seeds"] == 2


def test_study_yaml_file_makes_a_study(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text(yaml.safe_dump({
        "name": "lr", "metrics": ["val_top1"],
        "arms": [{"name": "fast", "overrides": {"optim": {"lr": 0.01}}}, {"name": "slow", "overrides": {}}],
        "claims": [{"arm": "fast", "baseline": "slow", "metric": "val_top1", "paper": 1.0}],
    }))
    study = load_study_file(path)
    assert study.arm("fast").overrides == {"optim.lr": 0.01} and study.claims[0].sign == 1


@pytest.mark.parametrize(("content", "message"), [
    ("arms: [\n", "not valid YAML"),
    ("arms: []\n", "'arms' must be a list"),
    ("arms: [{name: a}]\nclaims: [{arm: b, baseline: a}]\n", "names arm 'b'"),
    ("arms: [{name: a, overrides: {run: {seed: 3}}}]\n", "sets run.seed"),
    ("arms: [{name: a}]\nmetrics: [accuracy]\n", "unknown metric 'accuracy'"),
    ("arms: [{name: a}]\ncolour: red\n", "unknown key 'colour'"),
])
def test_bad_study_file_is_one_line_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "mine.yaml"
    path.write_text(content)
    assert main(["ablate", "plan", str(path), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err and "mine.yaml" in err


def test_bad_arm_override_names_the_field(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("arms: [{name: a, overrides: {model: {norm: layer}}}]\n")
    assert main(["ablate", "plan", str(path), "--output-dir", str(tmp_path / "o")]) == 2
    assert "model.norm" in capsys.readouterr().err


def test_unknown_study_lists_the_known_ones(capsys):
    assert main(["ablate", "colour"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'colour'" in err and "relu" in err and "features" in err


def test_missing_data_folder_is_refused_before_anything_trains(tmp_path, capsys):
    assert main(["ablate", "relu", "--data", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_output_dir_of_other_settings_or_not_an_ablate_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "abl"
    assert main(["ablate", "plan", "relu", "--output-dir", str(out), "--seeds", "1"]) == 0
    capsys.readouterr()
    assert main(["ablate", "plan", "lrn", "--output-dir", str(out), "--epochs", "2"]) == 2
    assert "holds the studies of other settings" in capsys.readouterr().err
    assert main(["ablate", "plan", "lrn", "--output-dir", str(out), "--seeds", "2"]) == 0  # same settings: fine
    capsys.readouterr()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert main(["ablate", "plan", "relu", "--output-dir", str(run)]) == 2
    assert "an alexnet run folder and not an `alexnet ablate` folder" in capsys.readouterr().err
    assert main(["ablate", "report", str(tmp_path)]) == 2
    assert "not an `alexnet ablate` folder" in capsys.readouterr().err


def test_runner_keys_cannot_be_overridden(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("run: {max_steps: 5}\n")
    assert main(["ablate", "plan", "relu", "--config", str(cfg), "--output-dir", str(tmp_path / "o")]) == 2
    assert "run.max_steps cannot be set for a study" in capsys.readouterr().err


def test_list_names_every_study(capsys):
    assert main(["ablate", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES)


def test_a_signal_that_stopped_a_run_stops_the_study_with_its_exit_code(tmp_path, monkeypatch, capsys):
    import signal

    from alexnet.ablate import api
    from alexnet.errors import AlexNetError

    class Stopped(AlexNetError):  # what training.signals.RunInterrupted carries
        signum = signal.SIGTERM

    def stopped(self, jobs=1):
        raise Stopped("SIGTERM: finished step 3 of epoch 1 and saved last.pt")

    monkeypatch.setattr(api.Session, "run", stopped)
    assert main(["ablate", "relu", "--seeds", "1", "--output-dir", str(tmp_path / "o")]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "saved last.pt" in err and "the same command continues the study" in err


def test_run_names_depend_on_what_differs_from_the_defaults_only():
    settings = planning.Settings("quick", None, {})
    study, arm = get_study("lrn"), get_study("lrn").arm("bn")
    cfg = planning.resolve_train_config(study, arm, settings)
    ref = planning.resolve_train_config(study, get_study("lrn").arm("lrn"), settings)
    stem = planning.run_stem(cfg, ref)
    assert stem.startswith("norm-bn-")
    older = json.loads(json.dumps(cfg))
    del older["optim"]["label_smoothing"]  # a run made before that option existed (it is at its default here)
    assert planning.run_stem(older, ref) == stem
    changed = json.loads(json.dumps(cfg))
    changed["optim"]["lr"] = 0.5
    assert planning.run_stem(changed, ref) != stem


def test_report_lists_the_studies_in_the_papers_order_then_a_teachers_own(tmp_path):
    (tmp_path / planning.MARKER).write_text("{}")
    for name in ("zeta", "towers", "my-lr", "relu", "features"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.json").write_text("{}")
    (tmp_path / "runs").mkdir()  # not a study: no study.json
    assert [p.name for p in planning.study_folders(tmp_path)] == ["relu", "towers", "features", "my-lr", "zeta"]
