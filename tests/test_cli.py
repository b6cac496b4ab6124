"""The command line itself: instant help, clean errors, and `alexnet train`'s flags generated from the config."""

import argparse
import dataclasses
import re
import subprocess
import sys

import pytest

from alexnet import config
from alexnet.cli import COMMANDS, build_parser
from alexnet.cli.train import SECTION_TITLES, overrides_from
from alexnet.config import NORMS, TrainConfig, resolve_config, train_flags
from alexnet.models.registry import list_models

# Flags of `alexnet train` that are not config options: declared by the command itself.
COMMAND_FLAGS = {"-h", "--help", "--config", "--recipe", "--resume", "--progress", "--no-progress"}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=timeout)


def test_help_is_instant_and_imports_no_torch():
    # "Instant" is checked by what is imported, not by a time: the machine is shared and noisy.
    code = "import sys; from alexnet.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: alexnet")
    listed = set(re.findall(r"^    (\S+)\s", result.stdout, re.MULTILINE))  # "    train    train a model ..."
    assert set(COMMANDS) <= listed, f"not in `alexnet --help`: {sorted(set(COMMANDS) - listed)}"


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("alexnet ")


def test_unknown_command_fails():
    result = run_cli("no-such-command")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr


def test_closed_pipe_exits_quietly():
    # `alexnet summary alexnet | head`: the reader leaves early (here `true` leaves before a byte is written, as
    # head does on long outputs); no BrokenPipeError traceback.
    result = subprocess.run(
        f"'{sys.executable}' -m alexnet summary alexnet | true", shell=True, capture_output=True, text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr


def subcommand(name: str) -> argparse.ArgumentParser:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def config_fields() -> set[str]:
    cfg = TrainConfig()
    return {f"{s.name}.{f.name}" for s in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, s.name))
            for f in dataclasses.fields(getattr(cfg, s.name))}


def test_every_config_field_declares_its_flag_or_that_it_has_none():
    cfg = TrainConfig()
    for section in SECTION_TITLES:
        for f in dataclasses.fields(getattr(cfg, section)):
            assert "flag" in f.metadata, f"{section}.{f.name}: declare it with config.flag() or config.yaml_only()"
    keys = [spec.key for spec in train_flags()]
    assert len(keys) == len(set(keys)) and set(keys) <= config_fields()
    yaml_only = config_fields() - set(keys)
    assert yaml_only == {"data.split_seed", "optim.step_size", "optim.gamma", "optim.patience", "optim.max_drops",
                         "run.adapt"}


def test_a_field_without_flag_metadata_is_an_error(monkeypatch):
    @dataclasses.dataclass
    class Undeclared(config.ModelSpec):
        depth: int = 8

    monkeypatch.setattr(config.specs, "ModelSpec", Undeclared)  # what TrainConfig's "model: ModelSpec" resolves to
    with pytest.raises(TypeError, match=r"model\.depth is declared without flag\(\) or yaml_only\(\)"):
        train_flags()


def test_train_has_one_generated_flag_per_option_with_the_metadata_s_help_and_choices():
    actions = {a.dest: a for a in subcommand("train")._actions}
    generated = {s for a in actions.values() for s in a.option_strings} - COMMAND_FLAGS
    specs = train_flags()
    assert generated == {s.flag for s in specs} | {"--no-" + s.flag[2:] for s in specs if s.type is bool}
    for spec in specs:
        action = actions[spec.dest]
        assert action.option_strings[0] == spec.flag and action.default is None  # None: keep the recipe's value
        names = f": {' | '.join(list_models())}" if spec.key == "model.name" else ""  # the registry's, at parse time
        assert (action.help, action.metavar) == ((spec.help + names) if names else spec.help, spec.metavar)
        if spec.type is bool:
            assert isinstance(action, argparse.BooleanOptionalAction)
        else:
            assert action.choices == spec.choices and action.type == (None if spec.type is str else spec.type)
    assert actions["norm"].choices == NORMS and actions["opt"].choices == config.OPTIMIZERS
    assert actions["data"].help.endswith("default: the built-in dataset") and actions["model"].metavar == "NAME"
    assert set(SECTION_TITLES) == {s.key.split(".")[0] for s in specs}


def test_demo_shares_the_training_flags():
    def flags(name):
        return {s for a in subcommand(name)._actions for s in a.option_strings}

    assert flags("demo") == flags("train") - {"--config", "--recipe", "--resume"}


def test_flag_values_reach_the_resolved_config():
    args = build_parser().parse_args(["train", "--lr", "0.5", "--no-augment", "--data-root", "dl", "--model",
                                      "alexnet", "--in-channels", "1"])
    assert overrides_from(args) == {"optim.lr": 0.5, "data.augment": False, "data.root": "dl",
                                    "model.name": "alexnet", "model.in_channels": 1}
    cfg = resolve_config(recipe=args.recipe, config_path=args.config, overrides=overrides_from(args))
    assert (cfg.optim.lr, cfg.data.augment, cfg.data.root, cfg.model.name, cfg.model.in_channels) == (
        0.5, False, "dl", "alexnet", 1)
    assert cfg.run.epochs == resolve_config().run.epochs  # a flag not given keeps the recipe's value


@pytest.mark.parametrize("spec", train_flags(), ids=lambda s: s.flag)
def test_each_flag_goes_to_its_own_key(spec):
    value = {bool: None, int: "3", float: "0.5", str: "x"}[spec.type]
    if spec.choices:
        value = str(spec.choices[-1])
    argv = ["train", spec.flag] if value is None else ["train", spec.flag, value]
    expected = True if value is None else spec.type(value)
    assert overrides_from(build_parser().parse_args(argv)) == {spec.key: expected}
