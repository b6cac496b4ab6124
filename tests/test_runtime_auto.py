"""`--runtime auto` (issue 14): every runtime timed on this machine for this checkpoint, int8 only where its decisions
hold, the choice cached and re-measured when the cache is not one we wrote."""

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch

from alexnet.runtime.auto import (
    CANDIDATES,
    RuntimeChoice,
    cache_path,
    choose_runtime,
    kept_model_stem,
    pick,
    read_cached,
    write_cached,
)
from alexnet.runtime.inference import InferenceOptions, prepare_model
from alexnet.runtime.onnxrt import calibration_batches, kept_paths
from alexnet.store.checkpoint import load_checkpoint
from tiny_runs import run_cli


def test_auto_times_the_runtimes_picks_the_fastest_and_remembers(trained):
    _, run = trained
    ckpt = load_checkpoint(run, prefer="best")
    said = []
    first = choose_runtime(ckpt.path, ckpt, "cpu", 16, log=said.append)
    assert first.cached_at is None and first.name in first.images_per_s and "torch fp32" in first.images_per_s
    assert set(first.images_per_s) | set(first.skipped) == set(CANDIDATES)
    eligible = {n: v for n, v in first.images_per_s.items() if n not in first.skipped}
    assert first.name == max(eligible, key=eligible.get)
    int8 = first.images_per_s.get("onnxruntime int8", 0.0)
    if int8 >= first.images_per_s[first.name]:  # int8 was at least as fast as the choice: its decisions were checked
        assert first.int8_check is not None and first.int8_check["images"] > 0
    assert said[-1].startswith(f"runtime auto: {first.name}")
    second = choose_runtime(ckpt.path, ckpt, "cpu", 16, log=said.append)
    assert second.cached_at == str(cache_path(ckpt.path, 16, "cpu")) and second.name == first.name
    assert "cached in" in said[-1]
    # a cache file that is not one we wrote is measured again and replaced
    path = cache_path(ckpt.path, 16, "cpu")
    path.write_text(json.dumps({"version": 1, "name": "rm -rf /", "images_per_s": {}, "skipped": {}}))
    assert read_cached(path) is None
    again = choose_runtime(ckpt.path, ckpt, "cpu", 16, log=said.append)
    assert again.cached_at is None and read_cached(path).name == again.name


def test_int8_is_chosen_only_when_it_keeps_fp32_top1():
    def timed():
        return RuntimeChoice("torch fp32", images_per_s={"torch fp32": 100.0, "onnxruntime fp32": 150.0,
                                                         "onnxruntime int8": 400.0}, batch_size=64)

    def check(candidate):
        return lambda: {"images": 500, "reference_top1": 0.80, "candidate_top1": candidate, "top1_agreement": 0.9}

    assert pick(timed(), check(0.795)).name == "onnxruntime int8"
    lossy = pick(timed(), check(0.78))
    assert lossy.name == "onnxruntime fp32" and "loses 2.0 points" in lossy.skipped["onnxruntime int8"]


def test_cli_says_which_runtime_runs_and_refuses_amp_with_auto(trained):
    _, run = trained
    done = run_cli("eval", "--checkpoint", str(run), "--runtime", "auto", "--device", "cpu", "--json")
    assert done.returncode == 0, done.stderr
    assert "runtime auto: " in done.stderr and json.loads(done.stdout.splitlines()[-1])["top1"] >= 0
    refused = run_cli("eval", "--checkpoint", str(run), "--runtime", "auto", "--amp", "bf16")
    assert refused.returncode == 2 and "--runtime auto chooses the precision itself" in refused.stderr


@pytest.mark.parametrize("bad", ["not json", json.dumps({"version": 1, "name": "torch fp32", "images_per_s":
                                                         {"torch fp32": float("nan")}, "skipped": {},
                                                         "batch_size": 1})])
def test_a_damaged_cache_is_not_trusted(tmp_path, bad):
    path = tmp_path / "choice.json"
    path.write_text(bad)
    assert read_cached(path) is None


def mtimes(*paths):
    return [p.stat().st_mtime_ns for p in paths]


def test_the_kept_onnx_files_are_loaded_without_exporting_and_a_foreign_one_is_rebuilt(trained, tmp_path, caplog):
    _, run = trained
    ckpt = load_checkpoint(run, prefer="best")
    stem = tmp_path / "runtime" / "model-test"
    stem.parent.mkdir(mode=0o700)
    fp32, int8 = kept_paths(stem)
    calibrated = []  # how many times int8 was calibrated: only when it is quantized

    def calibration():
        calibrated.append(1)
        return calibration_batches(ckpt)

    def load(runtime):
        options = InferenceOptions(runtime=runtime, kept_model=str(stem))
        return prepare_model(ckpt.build_model("cpu"), options, calibration)

    x = torch.randn(3, 3, 67, 67, generator=torch.Generator().manual_seed(0))
    first = load("onnxruntime-int8")(x)
    assert calibrated == [1] and fp32.is_file() and int8.is_file()
    files = (fp32, int8, fp32.with_name(fp32.name + ".json"), int8.with_name(int8.name + ".json"))
    before = mtimes(*files)
    said = lambda: [r.getMessage() for r in caplog.records if r.name == "alexnet.runtime"]  # noqa: E731
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alexnet.runtime"):
        torch.testing.assert_close(load("onnxruntime-int8")(x), first, rtol=0, atol=0)
        load("onnxruntime")
    assert calibrated == [1] and mtimes(*files) == before and not said()  # nothing exported again
    fp32.write_bytes(int8.read_bytes())  # another model's file at the name (its own record is fp32's)
    with caplog.at_level(logging.WARNING, logger="alexnet.runtime"):
        load("onnxruntime")
    assert said() == [
        f"kept ONNX model {fp32}: it does not match its record (changed, damaged or another model's file); "
        "exporting it again"]
    assert fp32.read_bytes() != int8.read_bytes() and mtimes(*files)[1] == before[1]


@pytest.mark.slow
def test_a_second_auto_eval_exports_nothing_and_a_damaged_kept_file_is_rebuilt(trained, tmp_path, monkeypatch):
    # the choice already cached as int8 (the case of the issue): the first eval exports and quantizes once, the
    # second loads the kept files; a damaged one is rebuilt, with one line
    _, run = trained
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    ckpt = load_checkpoint(run, prefer="best")
    write_cached(cache_path(ckpt.path, 8, "cpu"), RuntimeChoice("onnxruntime int8", {"onnxruntime int8": 1.0},
                                                                 batch_size=8))
    fp32, int8 = kept_paths(kept_model_stem(hashlib.sha256(Path(ckpt.path).read_bytes()).hexdigest()))
    args = ("eval", "--checkpoint", str(run), "--runtime", "auto", "--batch-size", "8", "--output-dir",
            str(tmp_path / "out"))
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert "runtime auto: onnxruntime int8" in first.stderr and fp32.is_file() and int8.is_file()
    before = mtimes(fp32, int8)
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert mtimes(fp32, int8) == before and "exporting it again" not in second.stderr
    assert second.stdout == first.stdout
    damaged = bytearray(int8.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    int8.write_bytes(bytes(damaged))
    third = run_cli(*args)
    assert third.returncode == 0, third.stderr
    assert third.stderr.count(f"kept ONNX model {int8}: it does not match its record") == 1
    assert mtimes(fp32) == before[:1] and int8.read_bytes() != bytes(damaged)
    assert third.stdout == first.stdout
