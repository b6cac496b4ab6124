"""torchrun: 2 CPU processes (gloo) take the same steps as 1 process on the same global batch and seed."""

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alexnet.errors import ConfigError
from alexnet.runtime.distributed import DEFAULT_PG_TIMEOUT_S, STOP_AGREE_EVERY, DistInfo, pg_timeout, stop_agreement_due
from data_factories import make_folder

# No dropout (its masks are drawn per rank) and no BatchNorm (its statistics are per rank): then the only
# difference between 1 and 2 processes is the order of float additions in the gradient all-reduce.
COMMON = ["--width-mult", "0.125", "--image-size", "67", "--batch-size", "8", "--no-progress", "--norm", "none",
          "--dropout", "0", "--opt", "sgd", "--lr", "0.02", "--momentum", "0.9", "--epochs", "2", "--device", "cpu"]


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [shutil.which("torchrun") or "torchrun"]


def train(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", "alexnet", "train", *args]
    else:
        cmd = [*torchrun(), "--standalone", "--nproc-per-node", str(nproc), "-m", "alexnet", "train", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / a.double().norm().clamp_min(1e-12))


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_processes_match_one_and_resume(tmp_path):
    data = make_folder(tmp_path / "data", train=16, val=5)  # 4 steps per epoch; 10 val images, 5 per rank
    single, double = tmp_path / "single", tmp_path / "double"
    train(["--data", str(data), *COMMON, "--output-dir", str(single), "--max-steps", "6"], nproc=1)

    # 2 ranks: stop after 2 steps, then resume under torchrun to the same 6 steps.
    first = train(["--data", str(data), *COMMON, "--output-dir", str(double), "--max-steps", "2"], nproc=2)
    assert first.stdout.count("epoch 1, loss") == 1  # rank 0 alone prints
    assert "2 ranks" in first.stdout
    second = train(["--resume", str(double), "--max-steps", "6"], nproc=2)
    assert "resuming from" in second.stdout and second.stdout.count("epoch 2, loss") == 1

    a = torch.load(single / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(double / "checkpoints" / "last.pt", weights_only=True)
    assert a["train_state"]["global_step"] == b["train_state"]["global_step"] == 6
    assert b["train_state"]["world_size"] == 2
    for name, tensor in a["model"].items():
        assert relative_difference(tensor, b["model"][name]) <= 1e-5, name
    # Metrics are reduced over ranks: the 2-process validation saw all 10 images, as the 1-process one did.
    ma, mb = metrics(single), metrics(double)
    assert [r["epoch"] for r in ma] == [r["epoch"] for r in mb] == ["1", "2"]
    for ra, rb in zip(ma, mb, strict=True):
        assert float(ra["val_top1"]) == float(rb["val_top1"])
        assert float(ra["val_loss"]) == pytest.approx(float(rb["val_loss"]), rel=1e-4)
        assert float(ra["train_loss"]) == pytest.approx(float(rb["train_loss"]), rel=1e-4)
    # Files come from rank 0 only: one log with one line per epoch.
    log = (double / "log.txt").read_text()
    assert log.count("epoch 1, loss") == 2  # the first launch's partial epoch 1, then the resumed full one


def launch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """2 ranks that are expected to fail. --monitor-interval 2: torchrun ends the surviving ranks 2 s after one
    exits, so each rank's own message is printed before the launcher stops it."""
    cmd = [*torchrun(), "--standalone", "--nproc-per-node", "2", "--monitor-interval", "2", "-m", "alexnet", "train",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, **env})


@pytest.mark.slow
def test_ranks_that_see_different_data_or_a_failing_rank_stop_together(tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    # Rank 1 reads another copy with one image more per class (ALEXNET_TEST_RANK_SOURCE, read in fit before the
    # data build), as a node whose copy of the data differs would.
    other = make_folder(tmp_path / "other", train=9, val=2)
    args = ["--data", str(data), *COMMON[:-4], "--epochs", "1", "--device", "cpu"]
    # A process-group timeout far beyond the subprocess timeout: a rank left waiting would hang the test, not pass.
    env = {"ALEXNET_PG_TIMEOUT_S": "3000"}
    differ = launch([*args, "--output-dir", str(tmp_path / "differ")],
                    {**env, "ALEXNET_TEST_RANK_SOURCE": f"1={other}"})
    assert differ.returncode != 0
    message = "rank 1 sees different data than rank 0: training images is 18 on rank 1 but 16 on rank 0"
    assert differ.stderr.count(message) == 2, differ.stderr  # both ranks stop, with the same message
    assert not (tmp_path / "differ" / "checkpoints" / "last.pt").exists()

    # Local rank 0 fails while preparing the data (rank 1 waits for it): rank 1 hears it at once, naming rank 0.
    broken = launch([*args, "--output-dir", str(tmp_path / "broken")],
                    {**env, "ALEXNET_TEST_RANK_SOURCE": f"0={tmp_path / 'missing'}"})
    assert broken.returncode != 0
    assert "alexnet train: error: rank 0 failed while preparing the data: DataError: " in broken.stderr, broken.stderr
    assert str(tmp_path / "missing") in broken.stderr


def test_ranks_agree_on_a_signal_within_a_bounded_number_of_steps_whatever_sync_every():
    two = DistInfo(rank=1, world_size=2)
    due = [n for n in range(1, 4 * STOP_AGREE_EVERY + 1) if stop_agreement_due(n, two, signalled=False)]
    assert due == [STOP_AGREE_EVERY * k for k in (1, 2, 3, 4)]  # the same steps on every rank, signalled or not
    assert stop_agreement_due(7, DistInfo(), signalled=True) and not stop_agreement_due(7, DistInfo(), False)


def test_process_group_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ALEXNET_PG_TIMEOUT_S", raising=False)
    assert pg_timeout().total_seconds() == DEFAULT_PG_TIMEOUT_S
    monkeypatch.setenv("ALEXNET_PG_TIMEOUT_S", "90")
    assert pg_timeout().total_seconds() == 90
    for bad in ("ten", "0", "-5", "nan"):
        monkeypatch.setenv("ALEXNET_PG_TIMEOUT_S", bad)
        with pytest.raises(ConfigError, match=f"ALEXNET_PG_TIMEOUT_S is '{bad}'"):
            pg_timeout()


@pytest.mark.slow
def test_sigterm_under_torchrun_is_honoured_within_stop_agree_every_steps(tmp_path):
    # --sync-every 1000: without a bounded agreement the ranks would only agree to stop at the epoch's end (step 100).
    data = make_folder(tmp_path / "data", train=100, val=2)  # 200 images, global batch 2: 100 steps per epoch
    run = tmp_path / "run"
    args = ["--data", str(data), *COMMON[:-4], "--batch-size", "2", "--epochs", "1", "--device", "cpu",
            "--sync-every", "1000", "--output-dir", str(run)]
    proc = subprocess.Popen([*torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "alexnet", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # rank 0 prints this line just before the first step
            if line.startswith("training "):
                break
        proc.send_signal(signal.SIGTERM)  # torchrun passes it on to every rank
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert saved["train_state"]["global_step"] == STOP_AGREE_EVERY, err
    assert f"SIGTERM: finished step {STOP_AGREE_EVERY} of epoch 1" in err


@pytest.mark.parametrize(("args", "code", "says"), [
    (["models"], 0, "alexnet-owt"),  # the whole table, flushed
    (["summary", "alexnet-v9"], 2, "unknown model 'alexnet-v9'"),  # an error: its line and its exit status
])
def test_a_torchrun_worker_leaves_with_its_status_and_its_output(args, code, says):
    """Under torchrun (WORLD_SIZE > 1) `python -m alexnet` leaves through os._exit, skipping the interpreter's
    finalization where gloo's threads aborted finished runs now and then: nothing printed may be lost, and the exit
    status is the command's."""
    env = {**os.environ, "WORLD_SIZE": "2"}
    out = subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == code and says in out.stdout + out.stderr
    plain = subprocess.run([sys.executable, "-m", "alexnet", *args], capture_output=True, text=True, timeout=120)
    assert (out.stdout, out.stderr) == (plain.stdout, plain.stderr)
