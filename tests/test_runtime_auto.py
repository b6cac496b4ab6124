"""`--runtime auto` (issue 14): every runtime timed on this machine for this checkpoint, int8 only where its decisions
hold, the choice cached and re-measured when the cache is not one we wrote."""

import json

import pytest

from alexnet.runtime.auto import CANDIDATES, RuntimeChoice, cache_path, choose_runtime, pick, read_cached
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
