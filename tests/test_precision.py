"""The precision probe decides where bf16/fp16 may run; its measurement is injected through its cache file here
(the real probe runs too, but no test judges a timing)."""

import json

import pytest

from alexnet import speed
from alexnet.runtime import precision
from alexnet.speed import BenchConfig
from alexnet.speed import plan as bench_plan
from alexnet.speed.plan import plan_work


def inject(slowdown_bf16: float, slowdown_fp16: float | None = None) -> None:
    """Write the probe's cache file as if this machine had measured these factors."""
    fp16 = slowdown_bf16 if slowdown_fp16 is None else slowdown_fp16
    path = precision.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": precision.PROBE_VERSION, "speeds": {
        "bf16": {"dtype": "bf16", "matmul_slowdown": slowdown_bf16, "conv_slowdown": slowdown_bf16 / 2},
        "fp16": {"dtype": "fp16", "matmul_slowdown": fp16, "conv_slowdown": fp16},
    }}))
    precision._warned.clear()


def test_the_real_probe_measures_both_precisions_and_caches_them():
    result = precision.probe(refresh=True)
    assert not result.cached and set(result.speeds) == {"bf16", "fp16"}
    for dtype_speed in result.speeds.values():
        assert dtype_speed.matmul_slowdown > 0 and dtype_speed.conv_slowdown > 0
    again = precision.probe()
    assert again.cached and again.speeds == result.speeds
    assert result.cpu.capability  # PyTorch's kernel level, e.g. AVX2 or AVX512


def test_a_crawling_bf16_warns_with_the_factor_and_is_never_chosen_automatically():
    inject(40.0)
    message = precision.amp_warning("bf16", "cpu")
    assert message is not None and "40.0x slower than fp32" in message and "--amp none" in message
    assert precision.probe().speed("bf16").crawls
    assert precision.auto_amp("cpu") == "none"


def test_a_fast_bf16_is_quiet_and_chosen_automatically():
    inject(0.5, 3.0)
    assert precision.amp_warning("bf16", "cpu") is None
    assert precision.amp_warning("none", "cpu") is None
    assert precision.auto_amp("cpu") == "bf16"
    assert "3.0x slower" in precision.amp_warning("fp16", "cpu")


def test_a_slightly_slower_bf16_warns_but_does_not_crawl():
    inject(1.7)  # AVX-512 with bf16 dot products and no AMX
    speed = precision.probe().speed("bf16")
    assert not speed.crawls and not speed.faster
    assert "1.7x slower" in precision.amp_warning("bf16", "cpu")
    assert precision.auto_amp("cpu") == "none"


def test_the_warning_is_given_once_per_process(capsys):
    inject(40.0)
    assert precision.warn_if_slow("bf16", "cpu") is not None
    assert precision.warn_if_slow("bf16", "cpu") is None
    assert capsys.readouterr().err.count("warning: --amp bf16") == 1


def test_accelerators_are_not_probed():
    inject(40.0)
    assert precision.amp_warning("bf16", "cuda") is None


@pytest.mark.parametrize("content", [
    "not json", json.dumps({"version": 999, "speeds": {}}), json.dumps({"version": 1, "speeds": {"bf16": {}}}),
    json.dumps({"version": 1, "speeds": {"bf16": {"matmul_slowdown": -1, "conv_slowdown": 1},
                                         "fp16": {"matmul_slowdown": 1, "conv_slowdown": 1}}}),
    '{"version": 1, "speeds": {"bf16": {"matmul_slowdown": NaN, "conv_slowdown": 1}}}',
    "x" * (precision.MAX_CACHE_BYTES + 1),
])
def test_a_damaged_cache_file_is_measured_again(content):
    path = precision.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    result = precision.probe()
    assert not result.cached
    assert precision.probe().cached  # and the file was rewritten whole


def test_inference_with_an_explicit_slow_amp_warns(capsys):
    import torch

    from alexnet.runtime.inference import InferenceOptions, Predictor

    inject(40.0)
    Predictor(torch.nn.Linear(3, 2), torch.device("cpu"), InferenceOptions(amp="bf16"))
    assert "warning: --amp bf16 measured 40.0x slower" in capsys.readouterr().err


def test_plan_sizes_the_work_from_one_measured_step():
    cfg = BenchConfig()
    slow = plan_work(cfg, step_s=8.0, bf16=False)  # alexnet-bn at 227, batch 64, on a 2-core AVX2 CPU
    assert slow.steps == 1 and slow.photos < bench_plan.MAX_PHOTOS and slow.photos >= cfg.batch_size
    assert "bf16 is not timed" in slow.note
    fast = plan_work(cfg, step_s=0.05, bf16=True)
    assert fast.steps == bench_plan.MAX_STEPS and fast.photos == bench_plan.MAX_PHOTOS
    given = plan_work(BenchConfig(steps=2, photos=12), step_s=8.0, bf16=True)
    assert (given.steps, given.photos) == (2, 12)


@pytest.mark.parametrize("slowdown, timed", [(40.0, False), (0.5, True)])
def test_bench_times_bf16_only_where_the_probe_allows(slowdown, timed):
    inject(slowdown)
    cfg = BenchConfig(image_size=67, batch_size=2, width_mult=0.125, repeats=1, steps=1, sections=("train",))
    results = speed.run(cfg, log=lambda _: None)
    step = results["train_step"]
    assert ("images_per_s" in step["ours-bf16"]) is timed
    assert ("skipped" in step["ours-bf16"]) is not timed
    if not timed:
        assert step["ours"] == "ours-fp32" and "crawls" not in speed.format_table(results)
        assert "bf16 skipped" in speed.format_table(results)
    assert results["precision"]["speeds"]["bf16"]["crawls"] is not timed


def test_training_with_an_explicit_slow_amp_warns_in_the_log(tmp_path):
    from alexnet.config import resolve_config
    from alexnet.train import fit
    from data_factories import write_mnist_folder

    inject(40.0)
    data = write_mnist_folder(tmp_path / "digits", n_train=8, n_test=4)
    cfg = resolve_config(overrides={"data.source": str(data), "model.name": "alexnet-d2l", "model.width_mult": 0.125,
                                    "data.image_size": 67, "run.batch_size": 4, "run.max_steps": 1, "run.amp": "bf16",
                                    "run.device": "cpu", "run.output_dir": str(tmp_path / "run")})
    fit(cfg, progress=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "warning: --amp bf16 measured 40.0x slower than fp32 on this CPU" in log
