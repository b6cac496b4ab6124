"""Exact resume with real processes and real signals: SIGKILL at any step, SIGTERM finishing its step."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from data_factories import make_folder
from tiny_runs import TINY, untimed_rows

EPOCHS, STEPS_PER_EPOCH = 2, 6  # 48 training images / batch 8


def start(data: Path, run: Path, resume: bool = False) -> subprocess.Popen:
    args = ["--resume", str(run)] if resume else [
        "--data", str(data), *TINY, "--epochs", str(EPOCHS), "--output-dir", str(run), "--save-every-steps", "1",
        "--deterministic", "--device", "cpu", "--dropout", "0.5"]  # dropout on: its masks must replay exactly too
    return subprocess.Popen([sys.executable, "-m", "alexnet", "train", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def global_step(run: Path) -> int:
    last = run / "checkpoints" / "last.pt"
    if not last.exists():
        return -1
    return torch.load(last, weights_only=True)["train_state"]["global_step"]  # os.replace: always a whole file


def wait_for_step(proc: subprocess.Popen, run: Path, step: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reached = global_step(run)
        if reached >= step:
            return reached
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.communicate()}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"step {step} not reached in {timeout} s")


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


@pytest.mark.slow
def test_killed_and_terminated_runs_resume_to_bitwise_equal_weights(tmp_path):
    data = make_folder(tmp_path / "data", train=24, val=4)
    reference, broken = tmp_path / "reference", tmp_path / "broken"

    ref = start(data, reference)
    assert ref.wait(timeout=300) == 0, ref.communicate()

    # 1. SIGKILL (cannot be caught) somewhere in epoch 1.
    proc = start(data, broken)
    wait_for_step(proc, broken, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = global_step(broken)
    assert 2 <= killed_at < EPOCHS * STEPS_PER_EPOCH

    # 2. Resume; SIGTERM somewhere in epoch 2: the step is finished, saved, and the exit status says so.
    proc = start(data, broken, resume=True)
    wait_for_step(proc, broken, STEPS_PER_EPOCH + 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.fail(f"the run finished before SIGTERM arrived; cannot test it this time\n{out}")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: finished step" in err and "--resume" in err
    assert "Traceback" not in err
    terminated_at = global_step(broken)
    assert killed_at < terminated_at < EPOCHS * STEPS_PER_EPOCH

    # 3. Resume to the end.
    proc = start(data, broken, resume=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming from" in out

    a, b = weights(reference), weights(broken)
    assert a["train_state"]["global_step"] == b["train_state"]["global_step"] == EPOCHS * STEPS_PER_EPOCH
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), f"{name} differs after kill/resume"
    for i, state in a["train_state"]["optimizer"]["state"].items():
        for key, value in state.items():
            other = b["train_state"]["optimizer"]["state"][i][key]
            assert torch.equal(value, other), f"optimizer state {i}.{key} differs"
    assert untimed_rows(reference) == untimed_rows(broken)  # same losses and accuracies, no duplicated epochs
    leftovers = [p.name for p in (broken / "checkpoints").iterdir() if p.name not in ("last.pt", "best.pt")]
    assert leftovers == []
    best_a, best_b = (torch.load(run / "checkpoints" / "best.pt", weights_only=True) for run in (reference, broken))
    assert best_a["train_state"]["global_step"] == best_b["train_state"]["global_step"]  # the same best epoch
    assert all(torch.equal(tensor, best_b["model"][name]) for name, tensor in best_a["model"].items())
