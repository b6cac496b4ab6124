"""Run configuration: layering (defaults <- recipe <- YAML <- flags), validation that names the field, shipped recipes."""

import pytest
import yaml

from alexnet.config import (
    TrainConfig,
    list_recipes,
    load_yaml,
    overrides_to_dict,
    recipe_path,
    resolve_config,
    save_yaml,
)
from alexnet.errors import ConfigError


def test_no_data_and_no_recipe_is_the_demo_run():
    cfg = resolve_config()
    assert cfg.recipe == "demo"
    assert cfg.data.source is None  # the built-in dataset


@pytest.mark.parametrize("name", ["demo", "paper", "seed", "d2l"])
def test_every_shipped_recipe_parses(name):
    assert name in list_recipes()
    cfg = resolve_config(recipe=name)
    assert cfg.recipe == name
    TrainConfig.from_dict(load_yaml(recipe_path(name)), origin=name)


def test_recipes_say_what_their_sources_say():
    paper = resolve_config(recipe="paper")
    assert (paper.optim.opt, paper.optim.lr, paper.optim.momentum, paper.optim.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
    assert (paper.run.batch_size, paper.optim.lr_schedule, paper.optim.gamma, paper.optim.max_drops) == (
        128, "plateau", 0.1, 3)
    seed = resolve_config(recipe="seed")
    assert (seed.model.name, seed.data.image_size, seed.data.preset, seed.optim.opt, seed.run.batch_size) == (
        "alexnet-bn", 227, "seed", "adam", 256)
    d2l = resolve_config(recipe="d2l")
    assert (d2l.model.name, d2l.model.in_channels, d2l.data.image_size, d2l.optim.lr, d2l.run.batch_size,
            d2l.run.epochs, d2l.data.preset) == ("alexnet-d2l", 1, 224, 0.001, 128, 5, "d2l")


def test_flags_override_yaml_which_overrides_the_recipe(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("recipe: paper\noptim:\n  lr: 1e-3\nrun:\n  epochs: 7\n")
    cfg = resolve_config(config_path=run_yaml, overrides={"run.epochs": 3, "optim.momentum": None})
    assert cfg.recipe == "paper"
    assert cfg.optim.opt == "sgd"  # from the recipe
    assert cfg.optim.lr == pytest.approx(1e-3)  # YAML 1.1 reads "1e-3" as a string; it is accepted as a float
    assert cfg.run.epochs == 3  # the flag wins
    assert cfg.optim.momentum == 0.9  # a flag left unset (None) changes nothing


def test_explicit_recipe_flag_beats_the_yaml_base(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("recipe: paper\n")
    assert resolve_config(recipe="seed", config_path=run_yaml).recipe == "seed"


def test_data_given_without_recipe_uses_plain_defaults():
    cfg = resolve_config(overrides={"data.source": "some/folder"})
    assert cfg.recipe is None and cfg.data.source == "some/folder"


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = resolve_config(recipe="paper", overrides={"run.seed": 5, "model.width_mult": 0.5})
    save_yaml(cfg, tmp_path / "config.yaml")
    again = TrainConfig.from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert again == cfg


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"optim.opt": "rmsprop"}, "optim.opt"),
        ({"optim.lr": -1.0}, "optim.lr"),
        ({"run.amp": "fp8"}, "run.amp"),
        ({"run.device": "gpu"}, "run.device"),
        ({"run.batch_size": 0}, "run.batch_size"),
        ({"model.dropout": 1.5}, "model.dropout"),
        ({"data.preset": "imagenet"}, "data.preset"),
        ({"data.loader": "fast"}, "data.loader"),
        ({"optim.lr_schedule": "linear"}, "optim.lr_schedule"),
        ({"run.epochs": "ten"}, "run.epochs"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        resolve_config(overrides=overrides)


def test_unknown_yaml_field_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim\.lrr"):
        resolve_config(config_path=bad)


def test_bad_value_in_yaml_is_blamed_on_the_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*run\.epochs"):
        resolve_config(config_path=bad)


def test_unreadable_yaml_is_a_config_error(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        resolve_config(config_path=bad)
    with pytest.raises(ConfigError, match="not found"):
        resolve_config(config_path=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        resolve_config(recipe="nope")


def test_overrides_to_dict_nests_and_drops_unset():
    assert overrides_to_dict({"optim.lr": 0.1, "run.seed": None, "recipe": "x"}) == {"optim": {"lr": 0.1}, "recipe": "x"}
