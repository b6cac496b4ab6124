"""Fuzzing the config loader: whatever the dicts, YAML text or flags, the answer is a valid TrainConfig or a
ConfigError, never another exception (a traceback from the CLI). A few seconds by default; ALEXNET_FUZZ_EXAMPLES=2000 searches
longer (run so before changing the loader)."""

import dataclasses
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet.cli import build_parser
from alexnet.cli.train import overrides_from
from alexnet.config import TrainConfig, load_yaml, resolve_config, train_flags
from alexnet.errors import ConfigError

# Derandomized by default (the same examples every run, so CI is reproducible); a deeper search is random.
FUZZ = settings(max_examples=int(os.environ.get("ALEXNET_FUZZ_EXAMPLES", 150)), deadline=None, database=None,
                derandomize="ALEXNET_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SECTIONS = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
FIELDS = {name: [f.name for f in dataclasses.fields(spec)] for name, spec in
          (("model", TrainConfig().model), ("data", TrainConfig().data), ("optim", TrainConfig().optim),
           ("run", TrainConfig().run))}

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["inf", "nan", "-1", "0", "1e-3", "1e999", "true", "no", "cuda:0", "adam", "lrn", "bf16"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3), max_leaves=6)
keys_of = {name: st.sampled_from(fields) | st.text(max_size=6) for name, fields in FIELDS.items()}
section = st.sampled_from(list(FIELDS)).flatmap(
    lambda name: st.tuples(st.just(name), st.dictionaries(keys_of[name], values, max_size=5) | values))
raw_configs = st.lists(section, max_size=4).map(dict) | st.dictionaries(scalars, values, max_size=3) | values


def accepted_or_config_error(build):
    try:
        cfg = build()
    except ConfigError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
        return None
    assert isinstance(cfg, TrainConfig)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # what is accepted round-trips (it is saved in checkpoints)
    return cfg


@FUZZ
@given(raw=raw_configs)
def test_random_dicts(raw):
    accepted_or_config_error(lambda: TrainConfig.from_dict(raw, origin="fuzz"))


@FUZZ
@given(raw=raw_configs)
def test_random_dicts_as_yaml_files(tmp_path, raw):
    path = tmp_path / "run.yaml"
    try:
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    except (yaml.YAMLError, UnicodeEncodeError):  # e.g. lone surrogates: not a YAML a user could write
        return
    accepted_or_config_error(lambda: resolve_config(config_path=path))


yaml_fragments = st.sampled_from(["optim:", "run:", "data:", "model:", "  lr: ", "  epochs: ", "  image_size: ",
                                  "recipe: ", "&a ", "*a ", "<<: ", "[", "]", "{", "}", ": ", "- ", "!!binary ",
                                  "!!python/object:os.system ", ".inf", ".nan", "0x10", "1e3", "~", "'", '"', "\n",
                                  "  ", "#", "\t", "2001-12-14", "!!set {a}", "? ", "|", ">"])


@FUZZ
@given(text=st.lists(yaml_fragments | st.text(max_size=8), max_size=30).map("".join))
def test_random_yaml_text(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    accepted_or_config_error(lambda: resolve_config(config_path=path))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes(tmp_path, raw):
    path = tmp_path / "run.yaml"
    path.write_bytes(raw)
    try:
        loaded = load_yaml(path)
    except ConfigError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
    else:
        assert isinstance(loaded, dict)


flag_keys = st.sampled_from([f"{s}.{f}" for s, fields in FIELDS.items() for f in fields] + ["recipe"])


@FUZZ
@given(flags=st.dictionaries(flag_keys, scalars, max_size=4))
def test_random_flags(flags):
    accepted_or_config_error(lambda: resolve_config(overrides=flags))


PARSER = build_parser()
SWITCHES = {w for s in train_flags() if s.type is bool for w in (s.flag, f"--no-{s.flag[2:]}")}  # take no value
flag_words = st.sampled_from(sorted({s.flag for s in train_flags()} | SWITCHES))
flag_values = st.sampled_from(["inf", "nan", "-1", "0", "3", "1e-3", "1e999", "cuda:0", "adam", "lrn", "bf16", "x"])


@FUZZ
@given(argv=st.lists(st.tuples(flag_words, flag_values | st.text(max_size=8)), max_size=4))
def test_random_command_lines(argv):
    # The generated parser's answer: a usage error (exit 2), or overrides that resolve or fail as a ConfigError.
    words = [w for flag, value in argv for w in ([flag] if flag in SWITCHES else [flag, value])]
    try:
        args = PARSER.parse_args(["train", *words])
    except SystemExit as e:
        assert e.code == 2
        return
    accepted_or_config_error(lambda: resolve_config(overrides=overrides_from(args)))


@pytest.mark.parametrize("text", ["!!python/object/apply:os.system ['touch /tmp/x']", "a: !!python/name:os.system"])
def test_python_tags_are_refused(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(path)
