"""The inference fast path: every option stays within tolerance of plain fp32 eager; eval/predict take the flags."""

import json
import subprocess
import sys

import pytest
import torch

from alexnet.errors import ConfigError
from alexnet.runtime.inference import InferenceOptions, Predictor
from tiny_runs import trained_like


@pytest.mark.parametrize("name", ["alexnet", "alexnet-bn"])
@pytest.mark.parametrize(
    ("options", "atol"),
    [
        (InferenceOptions(channels_last=False), 0.0),
        (InferenceOptions(channels_last=True), 1e-4),
        (InferenceOptions(amp="bf16", channels_last=True), 5e-2),
    ],
)
def test_fast_path_matches_fp32_eager(name, options, atol):
    model = trained_like(name)
    x = torch.randn(6, 3, 67, 67, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    got = Predictor(trained_like(name), torch.device("cpu"), options)(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    scale = expected.abs().max().item()
    assert (got - expected).abs().max().item() <= atol * max(scale, 1.0)
    if options.amp == "bf16":  # half-precision logits still rank the classes the same way on clear inputs
        assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 5 / 6


def test_predictor_runs_without_autograd():
    out = Predictor(trained_like("alexnet-bn"), torch.device("cpu"))(torch.randn(2, 3, 67, 67))
    assert not out.requires_grad and out.is_inference()


def test_bad_amp_is_a_config_error():
    with pytest.raises(ConfigError, match="amp must be one of"):
        InferenceOptions(amp="int8")


@pytest.mark.slow
def test_eval_and_predict_accept_the_inference_flags(tmp_path):
    from alexnet.train import fit
    from data_factories import make_folder
    from tiny_runs import tiny_config

    data = make_folder(tmp_path / "data", train=6, val=3)
    fit(tiny_config(data, tmp_path / "run", **{"run.epochs": 1}), progress=False)
    outs = {}
    for flags in ([], ["--no-channels-last"], ["--amp", "bf16"]):
        result = subprocess.run([sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(tmp_path / "run"),
                                 "--json", *flags], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        outs[tuple(flags)] = json.loads(result.stdout)
    assert outs[()]["total"] == outs[("--no-channels-last",)]["total"] == 6
    assert outs[()]["correct"] == outs[("--no-channels-last",)]["correct"]  # fp32 either way
    image = next((data / "val" / "cat").iterdir())
    result = subprocess.run([sys.executable, "-m", "alexnet", "predict", "--checkpoint", str(tmp_path / "run"),
                             str(image), "--json", "--amp", "bf16"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)[0]["top"]
    assert abs(sum(t["prob"] for t in top) - 1.0) < 1e-3  # 2 classes: top-2 is everything
    # bf16 autocast answers what fp32 answers, within bf16's precision (8 bits of mantissa)
    from alexnet.predict import predict_files
    from alexnet.store.checkpoint import load_checkpoint

    fp32 = dict(predict_files(load_checkpoint(tmp_path / "run"), [str(image)])[0].top)
    assert {t["label"]: t["prob"] for t in top} == pytest.approx(fp32, abs=0.02)


def test_autocast_is_a_no_op_without_a_dtype():
    from alexnet.runtime.amp import AMP_DTYPES, autocast

    a = torch.randn(4, 4)
    with autocast("cpu", None):
        assert (a @ a).dtype == torch.float32
    with autocast("cpu", AMP_DTYPES["bf16"]):
        assert (a @ a).dtype == torch.bfloat16
