"""`alexnet models` and `alexnet summary` as a user runs them."""

import json
import subprocess
import sys

import pytest

from alexnet.cli import main
from alexnet.models import list_models


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=300)


def test_models_lists_every_variant_with_its_count(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, count in [
        ("alexnet", "60,965,224"), ("alexnet-1gpu", "62,378,344"), ("alexnet-bn", "58,292,290"),
        ("alexnet-d2l", "46,764,746"), ("alexnet-owt", "61,100,840"),
    ]:
        assert any(line.startswith(f"{name} ") and count in line for line in out.splitlines()), name
    n = len(list_models())  # every registered variant, however many there are
    assert out.count("source:") == n and out.count("deviations:") == n


def test_models_json_and_filter(capsys):
    assert main(["models", "alexnet-d2l", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["alexnet-d2l"] and rows[0]["input"] == [1, 224, 224]


def test_summary_table(capsys):
    assert main(["summary", "alexnet", "--image-size", "227"]) == 0
    out = capsys.readouterr().out
    assert "floor((227 + 2*0 - 11) / 4) + 1 = 55" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "60,965,224" in total and "724,406,816" in total
    assert "warning" not in out and "224 vs 227" in out


def test_summary_json_schema(capsys):
    assert main(["summary", "alexnet-d2l", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"model", "input", "params", "macs", "layers"}
    assert d["input"] == [1, 224, 224] and d["params"] == 46_764_746
    assert {"name", "type", "out_shape", "params", "macs", "formula"} == set(d["layers"][0])
    assert next(layer for layer in d["layers"] if layer["name"] == "fc6")["formula"] == "6400 -> 4096"


def test_summary_overrides_and_ceil(capsys):
    assert main(["summary", "alexnet", "--image-size", "224", "--ceil", "--num-classes", "10", "--in-channels", "1"]) == 0
    out = capsys.readouterr().out
    assert "ceil((224 + 2*0 - 11) / 4) + 1 = 55" in out and "input 1x224x224" in out
    assert "4096 -> 10" in out


def test_summary_warns_when_a_size_truncates(capsys):
    assert main(["summary", "alexnet", "--image-size", "224"]) == 0
    out = capsys.readouterr().out
    assert "warning: conv1:" in out and "227" in out


def test_target_map(capsys):
    assert main(["summary", "alexnet", "--target-map", "55"]) == 0
    out = capsys.readouterr().out
    assert "after conv1: 227..230; dropping no pixel: 227" in out
    assert main(["summary", "alexnet", "--target-map", "6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pool5"]["sizes"] == [227, 258]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "alexnet-v9"], "unknown model 'alexnet-v9'; valid names: alexnet, alexnet-1gpu"),
        (["summary", "alexnet", "--image-size", "-5"], "input size must be a positive int, got -5"),
        (["summary", "alexnet", "--image-size", "40"], "smallest valid input is 67x67"),
        (["summary", "alexnet-owt", "--image-size", "40"], "smallest valid input is 63x63"),
        (["summary", "alexnet", "--in-channels", "0"], "field 'in_channels' must be an integer in [1, 64], got 0"),
        (["summary", "alexnet", "--target-map", "0"], "target map size must be a positive int"),
        (["models", "resnet"], "unknown model 'resnet'"),
    ],
)
def test_bad_arguments_fail_with_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_summary_as_a_subprocess():
    ok = run_cli("summary", "alexnet", "--image-size", "227")
    assert ok.returncode == 0 and "floor((227 + 2*0 - 11) / 4) + 1 = 55" in ok.stdout
    bad = run_cli("summary", "alexnet", "--image-size", "-5")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "alexnet summary: error: input size must be a positive int, got -5"
    assert "Traceback" not in bad.stderr
