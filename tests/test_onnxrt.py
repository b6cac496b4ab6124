"""ONNX Runtime as an inference runtime: fp32 reproduces PyTorch, int8 keeps the decisions of a trained model;
eval, predict and export take it; bad input gets one line."""

import json
import subprocess
import sys

import pytest
import torch

from alexnet.errors import ConfigError
from alexnet.runtime.inference import InferenceOptions, Predictor
from alexnet.runtime.onnxrt import OnnxRuntimeError, OnnxRuntimeModel, compare_top1, export_onnx, quantize_int8
from alexnet.train import fit
from data_factories import make_folder
from tiny_runs import tiny_config, trained_like

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A model trained until it separates its two classes: int8 agreement is only meaningful on a real decision."""
    root = tmp_path_factory.mktemp("onnxrt")
    data = make_folder(root / "data", train=12, val=6)
    fit(tiny_config(data, root / "run", **{"run.epochs": 3}), progress=False)
    return root / "run"


def test_onnxruntime_fp32_matches_pytorch_at_any_batch():
    x = torch.randn(5, 3, 67, 67, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trained_like("alexnet")(x)  # the paper model: its LRN goes through the exported formula
    predictor = Predictor(trained_like("alexnet"), torch.device("cpu"), InferenceOptions(runtime="onnxruntime"))
    assert isinstance(predictor.model, OnnxRuntimeModel)
    torch.testing.assert_close(predictor(x), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(predictor(x[:1]), expected[:1], atol=1e-4, rtol=1e-4)


def test_int8_is_really_quantized_and_close(tmp_path):
    import onnx

    model = trained_like("alexnet-bn")
    gen = torch.Generator().manual_seed(2)
    calibration = [torch.randn(8, 3, 67, 67, generator=gen) for _ in range(4)]
    predictor = Predictor(model, torch.device("cpu"), InferenceOptions(runtime="onnxruntime-int8"),
                          calibration=lambda: calibration)
    x = torch.randn(16, 3, 67, 67, generator=gen)
    with torch.no_grad():
        expected = trained_like("alexnet-bn")(x)
    got = predictor(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    # int8 is not fp32: the logits move, but by a few percent of their range, not by noise
    scale = expected.abs().max().item()
    assert 0 < (got - expected).abs().max().item() < 0.1 * scale
    # the file holds integer weights (QuantizeLinear/DequantizeLinear pairs), not fp32 ones
    fp32 = tmp_path / "m.onnx"
    export_onnx(trained_like("alexnet-bn"), fp32)
    int8 = quantize_int8(fp32, tmp_path / "m.int8.onnx", calibration)
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size


def test_int8_export_reports_parity_on_the_validation_split(run_dir, tmp_path):
    from alexnet.export import export_checkpoint

    report = export_checkpoint(run_dir, tmp_path, ["onnx-int8"])
    v = report["onnx_int8"]["validation"]
    assert v["images"] == 12  # 6 per class, both classes of the fixture's val split
    assert v["top1_agreement"] >= 11 / 12
    assert abs(v["candidate_top1"] - v["reference_top1"]) <= 1 / 12
    assert (tmp_path / "model.int8.onnx").is_file() and (tmp_path / "model.onnx").is_file()


def test_compare_top1_counts_agreement_and_accuracy():
    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x):
            return self.logits[: len(x)]

    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 1])
    out = compare_top1(Fixed(a), Fixed(b), [(torch.zeros(4, 1), labels)])
    assert out == {"images": 4, "top1_agreement": 0.75, "reference_top1": 0.5, "candidate_top1": 0.75,
                   "max_abs_logit_diff": 1.0}


def test_runtime_refusals(tmp_path):
    with pytest.raises(ConfigError, match="runtime must be one of"):
        InferenceOptions(runtime="tensorrt")
    with pytest.raises(ConfigError, match="PyTorch switches"):
        InferenceOptions(runtime="onnxruntime-int8", amp="bf16")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(OnnxRuntimeError, match="model.onnx: ONNX Runtime cannot load it"):
        OnnxRuntimeModel(bad)


@pytest.mark.slow
def test_eval_and_predict_run_in_onnxruntime(run_dir):
    outs = {}
    for runtime in ("torch", "onnxruntime", "onnxruntime-int8"):
        result = subprocess.run([sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(run_dir), "--json",
                                 "--runtime", runtime], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        outs[runtime] = json.loads(result.stdout)
    assert outs["torch"]["correct"] == outs["onnxruntime"]["correct"]
    assert abs(outs["torch"]["correct"] - outs["onnxruntime-int8"]["correct"]) <= 1
    image = next(p for p in (run_dir.parent / "data" / "val" / "cat").iterdir())
    result = subprocess.run([sys.executable, "-m", "alexnet", "predict", "--checkpoint", str(run_dir), str(image),
                             "--json", "--runtime", "onnxruntime-int8"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    # int8 answers close to what fp32 PyTorch answers for the same image (static int8: a few percent of probability)
    from alexnet.predict import predict_files
    from alexnet.store.checkpoint import load_checkpoint

    fp32 = dict(predict_files(load_checkpoint(run_dir), [str(image)])[0].top)
    int8 = {t["label"]: t["prob"] for t in json.loads(result.stdout)[0]["top"]}
    assert int8 == pytest.approx(fp32, abs=0.1)
