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


@pytest.mark.parametrize("name", ["demo", "paper", "seed", "d2l", "fast"])
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
    pi = resolve_config(recipe="paper-imagenette")  # the paper's switches and SGD; its stated changes only
    from alexnet.models import model_config

    arch = model_config(pi.model.name, **pi.model.architecture())
    assert (pi.model.name, arch.norm, arch.groups, arch.pooling, arch.dropout, pi.data.preset) == (
        "alexnet", "lrn", 2, "overlap", 0.5, "paper")
    assert (pi.optim.opt, pi.optim.lr, pi.optim.momentum, pi.optim.weight_decay, pi.optim.lr_schedule) == (
        "sgd", 0.01, 0.9, 5e-4, "plateau")
    assert (pi.run.batch_size, pi.optim.gamma, pi.optim.max_drops) == (128, 0.1, 3)
    assert (pi.model.init, pi.model.width_mult, pi.data.image_size) == ("paper-he", 0.5, 131)
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


# --- untrusted input: non-finite numbers, bounds, hostile YAML (issue 9) ------------------------------------------

FLOAT_FIELDS = ["model.width_mult", "model.dropout", "data.val_split", "optim.lr", "optim.momentum",
                "optim.weight_decay", "optim.warmup_epochs", "optim.gamma", "optim.label_smoothing"]


@pytest.mark.parametrize("key", FLOAT_FIELDS)
@pytest.mark.parametrize("text", [".inf", "-.inf", ".nan", "1e999"])
def test_non_finite_yaml_float_is_refused(tmp_path, key, text):
    section, field = key.split(".")
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(f"{section}:\n  {field}: {text}\n")
    with pytest.raises(ConfigError, match=rf"run\.yaml: field '{key}' must be a finite number, got"):
        resolve_config(config_path=run_yaml)


@pytest.mark.parametrize("key", FLOAT_FIELDS)
@pytest.mark.parametrize("value", ["inf", "nan", "-inf", float("inf"), float("nan")])
def test_non_finite_flag_is_refused(key, value):
    with pytest.raises(ConfigError, match=rf"command line: field '{key}' must be a finite number"):
        resolve_config(overrides={key: value})


@pytest.mark.parametrize(
    ("key", "value", "bound"),
    [
        ("data.image_size", 10**7, r"\[1, 4096\]"),
        ("run.epochs", 10**9, r"\[1, 1000000\]"),
        ("run.batch_size", 10**7, r"\[1, 65536\]"),
        ("data.workers", 10**6, r"\[0, 256\]"),
        ("run.max_steps", 2**50, r"\[1, 1099511627776\]"),
        ("run.seed", 2**70, r"\[-9223372036854775808, 9223372036854775807\]"),
        ("model.width_mult", 1e6, r"\(0, 64\]"),
        ("optim.step_size", 10**9, r"\[1, 1000000\]"),
    ],
)
def test_sizes_have_upper_bounds(key, value, bound):
    with pytest.raises(ConfigError, match=rf"field '{key}' must be .*{bound}, got"):
        resolve_config(overrides={key: value})


def test_sections_validate_types_when_built_directly():
    from alexnet.config import DataSpec, ModelSpec, RunSpec

    with pytest.raises(ConfigError, match="model.width_mult"):
        ModelSpec(width_mult="wide")
    with pytest.raises(ConfigError, match="data.workers"):
        DataSpec(workers=None)
    with pytest.raises(ConfigError, match="run.device"):
        RunSpec(device=3)
    with pytest.raises(ConfigError, match="run.compile"):
        RunSpec(compile="yes")


def test_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]  # 10**10 strings if expanded
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: not valid YAML \(line 2: anchors and aliases .* are not allowed"):
        resolve_config(config_path=bomb)


def test_merge_key_alias_is_refused(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("base: &base {lr: 0.1}\noptim:\n  <<: *base\n")
    with pytest.raises(ConfigError, match=r"line 3: anchors and aliases"):
        load_yaml(run_yaml)


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml: not valid YAML \(line 1: nested deeper than 16 levels\)"):
        load_yaml(deep)


def test_huge_file_is_refused_by_size_unparsed(tmp_path):
    huge = tmp_path / "huge.yaml"
    huge.write_text("optim: [unclosed\n" + "# padding\n" * 200_000)  # 2 MB, and not valid YAML either
    with pytest.raises(ConfigError, match=r"huge\.yaml: config file larger than 1024 KiB.*refused unparsed"):
        load_yaml(huge)


def test_endless_special_file_is_refused_by_size():
    with pytest.raises(ConfigError, match=r"/dev/zero: config file larger than 1024 KiB"):
        load_yaml("/dev/zero")  # a plain read_text() would never return


def test_huge_int_in_yaml_is_a_config_error(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("run:\n  epochs: " + "9" * 5000 + "\n")  # past Python's 4300-digit int parsing limit
    with pytest.raises(ConfigError, match=r"run\.yaml: not valid YAML \(ValueError: Exceeds the limit"):
        load_yaml(run_yaml)


def test_echoed_values_are_truncated(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("optim:\n  opt: " + "x" * 500_000 + "\n")
    with pytest.raises(ConfigError, match="optim.opt") as err:
        resolve_config(config_path=run_yaml)
    assert len(str(err.value)) < 300 and "xxx...xxx" in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown field 'optim\.yyyy.*\.\.\.") as err:
        TrainConfig.from_dict({"optim": {"y" * 100_000: 1}})
    assert len(str(err.value)) < 300


def test_malformed_sections_are_named_not_a_crash(tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("data: [1, 2]\n")  # resolve_config looks for data.source before validating
    with pytest.raises(ConfigError, match=r"section 'data' must be a mapping, got \[1, 2\]"):
        resolve_config(config_path=run_yaml)
    with pytest.raises(ConfigError, match=r"unknown section 1 "):
        TrainConfig.from_dict({1: {}, "model": {}})  # mixed key types: sorting them was a TypeError


def test_recipe_name_cannot_reach_other_files(tmp_path):
    (tmp_path / "evil.yaml").write_text("run:\n  epochs: 3\n")
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(f"recipe: ../../../../../../../..{tmp_path}/evil\n")
    with pytest.raises(ConfigError, match=r"unknown recipe '\.\./\.\./"):
        resolve_config(config_path=run_yaml)
    with pytest.raises(ConfigError, match=r"unknown recipe \['demo'\]"):
        recipe_path(["demo"])


def test_save_yaml_replaces_the_file_whole(tmp_path):
    path = tmp_path / "config.yaml"
    save_yaml(resolve_config(recipe="paper"), path)
    with open(path, encoding="utf-8") as reader:  # a reader that opened the old file (resume reading config.yaml)
        save_yaml(resolve_config(recipe="d2l"), path)
        old = yaml.safe_load(reader.read())  # write_text would have truncated it under the reader
    assert old["recipe"] == "paper"
    assert yaml.safe_load(path.read_text())["recipe"] == "d2l"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no temporary left behind


def test_train_help_lists_the_registry_s_models_and_the_shipped_recipes(monkeypatch):
    """The names come from the registry and from configs/, not from a copy (`fast` was once missing from a copy)."""
    from alexnet.cli import build_parser

    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at hyphens: keep each list on one line
    from alexnet.models import list_models

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())
    assert " | ".join(list_models()) in text
    assert " | ".join(list_recipes()) in text and "fast" in list_recipes()


def test_library_modules_take_the_config_s_choice_lists():
    from alexnet import config, models
    from alexnet.data import transforms
    from alexnet.runtime import onnxrt
    from alexnet.speed import BenchConfig

    assert models.architecture.NORMS is config.NORMS and transforms.PRESETS is config.PRESETS
    assert onnxrt.RUNTIMES is config.RUNTIMES and BenchConfig().sections is config.BENCH_SECTIONS


def test_choice_fields_are_validated_against_the_config_s_lists():
    from alexnet.config import AMP_MODES, LOADERS, LR_SCHEDULES, NORMS, OPTIMIZERS, PRESETS

    for key, choices in [("model.norm", NORMS), ("data.preset", PRESETS), ("data.loader", LOADERS),
                         ("optim.opt", OPTIMIZERS), ("optim.lr_schedule", LR_SCHEDULES), ("run.amp", AMP_MODES)]:
        for choice in choices:
            assert resolve_config(overrides={key: choice}) is not None
        with pytest.raises(ConfigError, match=", ".join(choices)):
            resolve_config(overrides={key: "not-a-choice"})
