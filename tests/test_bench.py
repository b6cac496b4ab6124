"""`alexnet bench` runs every section end to end on a tiny model and reports consistent figures (no time asserted)."""

import json
import subprocess
import sys

import pytest
import torch

from alexnet.models import build_model
from alexnet.models.lrn import LocalResponseNorm
from alexnet.speed import OURS_FP32, PLAIN, SECTIONS, BenchConfig, prepare


def test_plain_mode_swaps_in_torchs_lrn_with_the_same_numbers():
    model = build_model("alexnet", num_classes=3, image_size=67, width_mult=0.125).eval()
    plain, ours = prepare(model, PLAIN), prepare(model, OURS_FP32)
    assert any(isinstance(m, torch.nn.LocalResponseNorm) for m in plain.modules())
    assert not any(isinstance(m, LocalResponseNorm) for m in plain.modules())
    assert any(isinstance(m, LocalResponseNorm) for m in ours.modules())
    x = torch.randn(2, 3, 67, 67)
    torch.testing.assert_close(plain(x), model(x))  # the same model, only the kernel differs


@pytest.mark.slow
def test_bench_command_writes_every_section(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--image-size", "67", "--batch-size", "4", "--width-mult", "0.125", "--steps", "1", "--repeats", "1",
            "--photos", "12", "--output", str(out)]
    result = subprocess.run([sys.executable, "-m", "alexnet", "bench", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "ours/plain" in result.stdout and "machine ceilings" in result.stdout
    results = json.loads(out.read_text())
    for section in SECTIONS:
        assert section in results
    step = results["train_step"]
    ours = step[step["ours"]]
    # ours is the faster of the precisions timed; bf16 is timed unless the precision probe says it crawls here
    crawls = results["precision"]["speeds"]["bf16"]["crawls"]
    timed = {m: step[m]["images_per_s"] for m in ("ours-fp32", "ours-bf16") if "images_per_s" in step[m]}
    assert len(timed) == (1 if crawls else 2) and step["ours"] == max(timed, key=timed.get)
    assert results["ours"] == step["ours"]
    assert ("skipped" in step["ours-bf16"]) is crawls
    assert "CPU: " in result.stdout and "capability" in result.stdout  # the CPU's kernel level heads the table
    assert set(results["section_seconds"]) == {"plan", *SECTIONS}  # each section named by its results' key
    assert "[7/7] inference" in result.stdout  # progress per section
    assert step["ours_over_plain"] == pytest.approx(ours["images_per_s"] / step["plain"]["images_per_s"], rel=0.02)
    # achieved FLOP/s is images/s times the model's training FLOPs per image
    assert step["plain"]["gflops"] == pytest.approx(step["plain"]["images_per_s"] * results["train_flop_per_image"] / 1e9, rel=0.05)
    assert all(v > 0 for v in results["ceilings"].values())
    # ONNX Runtime int8 is timed next to ours (the export extra is installed in the test environment)
    assert results["inference"]["int8_images_per_s"] > 0 and "ONNX Runtime int8" in result.stdout


def test_bad_bench_arguments_are_one_line_errors():
    result = subprocess.run([sys.executable, "-m", "alexnet", "bench", "--batch-size", "0"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "batch_size must be >= 1" in result.stderr and "Traceback" not in result.stderr


def test_ours_steps_with_the_fused_optimizer_and_plain_without():
    from alexnet.speed import OURS_BF16, OURS_FP32, PLAIN, optimizer_for

    net = torch.nn.Linear(3, 2)
    assert optimizer_for(net, OURS_FP32).defaults["fused"] and optimizer_for(net, OURS_BF16).defaults["fused"]
    assert not optimizer_for(net, PLAIN).defaults["fused"]


def test_ours_is_timed_through_the_trainer_itself(monkeypatch):
    """The train-step figure of ours runs alexnet.training's epoch function and optimizer, so a change to the trainer
    changes the benchmark (no hand copy of the step to fall behind)."""
    import alexnet.training.epoch as epoch
    import alexnet.training.optim as optim
    from alexnet.speed.steps import time_train_steps

    calls = {"epochs": 0, "optimizers": 0}
    real_epoch, real_optimizer = epoch.train_one_epoch, optim.build_optimizer

    def counted_epoch(*args, **kwargs):
        calls["epochs"] += 1
        return real_epoch(*args, **kwargs)

    def counted_optimizer(*args, **kwargs):
        calls["optimizers"] += 1
        return real_optimizer(*args, **kwargs)

    monkeypatch.setattr(epoch, "train_one_epoch", counted_epoch)
    monkeypatch.setattr(optim, "build_optimizer", counted_optimizer)
    model = build_model("alexnet-bn", num_classes=2, image_size=67, width_mult=0.0625)
    cfg = BenchConfig(image_size=67, batch_size=4, width_mult=0.0625, steps=2, repeats=2)
    assert time_train_steps(model, OURS_FP32, cfg) > 0
    assert calls == {"epochs": 3, "optimizers": 1}  # warm-up + 2 timed passes, one optimizer
    assert time_train_steps(model, PLAIN, cfg) > 0 and calls == {"epochs": 3, "optimizers": 1}  # plain: the notes' loop


def test_sections_are_named_by_their_results_and_the_old_name_still_works():
    from alexnet.speed.sections import REGISTRY

    assert tuple(REGISTRY) == SECTIONS
    assert BenchConfig(sections=("train", "lrn")).sections == ("train_step", "lrn")
    with pytest.raises(Exception, match="unknown bench section"):
        BenchConfig(sections=("warp",))


@pytest.mark.slow
def test_bench_json_is_a_switch_printing_json_alone_on_stdout(tmp_path):
    # as `--json` is in every command; the file goes to --output (the old `--json FILE` still works: test_cli_vocabulary)
    out = tmp_path / "bench.json"
    args = ["--image-size", "67", "--batch-size", "4", "--width-mult", "0.125", "--steps", "1", "--repeats", "1",
            "--only", "ceilings", "--json", "--output", str(out)]
    result = subprocess.run([sys.executable, "-m", "alexnet", "bench", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)  # nothing else on stdout: the sections' progress went to stderr
    assert printed == json.loads(out.read_text()) and "ceilings" in printed
    assert "[2/2] measuring the machine's ceilings" in result.stderr and f"results written to {out}" in result.stderr
