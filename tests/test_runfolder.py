"""One run folder, one writer: a live run's folder is refused to a second trainer and to --resume (naming the pid),
a folder that is not a run is refused, and the lock dies with its process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet.store.runfolder import LOCK_NAME, RunFolderError, RunLock
from alexnet.train import fit
from data_factories import make_folder
from tiny_runs import TINY, tiny_config


def start_trainer(data: Path, run: Path) -> subprocess.Popen:
    # Enough epochs to stay alive while the others are refused; killed at the end.
    return subprocess.Popen([sys.executable, "-m", "alexnet", "train", "--data", str(data), *TINY, "--epochs", "500",
                             "--output-dir", str(run), "--save-every-steps", "1", "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, run: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run / "checkpoints" / "last.pt").exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint written in time")


@pytest.mark.slow
def test_a_live_run_is_refused_to_a_second_trainer_and_to_resume(tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    first = start_trainer(data, run)
    try:
        wait_for_checkpoint(first, run)
        assert (run / LOCK_NAME).read_text().strip() == str(first.pid)
        for args in (["--data", str(data), *TINY, "--epochs", "1", "--output-dir", str(run), "--device", "cpu"],
                     ["--resume", str(run)]):
            second = subprocess.run([sys.executable, "-m", "alexnet", "train", *args], capture_output=True,
                                    text=True, timeout=300)
            assert second.returncode == 2, second.stderr
            assert f"in use by another alexnet process (pid {first.pid}" in second.stderr, second.stderr
            assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None  # the live run was not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # SIGKILL cannot be caught, yet the kernel released the lock with the process: never a stale lock.
    with RunLock(run):
        pass


def test_the_lock_refuses_a_second_holder_and_names_it(tmp_path):
    # A second open file description in the same process conflicts as another process would (flock semantics).
    refused = pytest.raises(RunFolderError, match=f"in use by another alexnet process \\(pid {os.getpid()}")
    with RunLock(tmp_path / "run"), refused:
        RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released on exit
        pass


def test_a_folder_that_is_not_a_run_is_refused_and_left_untouched(tmp_path):
    data = make_folder(tmp_path / "data", train=4, val=2)
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("mine\n")
    (project / "src").mkdir()
    with pytest.raises(RunFolderError, match=r"project: not empty and not an alexnet run folder \(it holds notes\.txt"):
        fit(tiny_config(data, project, **{"run.epochs": 1}), progress=False)
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "src"]
    assert (project / "notes.txt").read_text() == "mine\n"


def test_output_dir_dot_never_writes_among_unrelated_files(tmp_path, monkeypatch):
    data = make_folder(tmp_path / "data", train=4, val=2)
    here = tmp_path / "here"
    here.mkdir()
    (here / "Makefile").write_text("all:\n")
    monkeypatch.chdir(here)
    with pytest.raises(RunFolderError, match="not an alexnet run folder"):
        fit(tiny_config(data, Path("."), **{"run.epochs": 1}), progress=False)
    assert [p.name for p in here.iterdir()] == ["Makefile"]


def test_a_run_killed_before_its_first_checkpoint_can_start_again(tmp_path):
    # Only alexnet's own files (and a temporary of its writer) are there: that is a run folder, not a foreign one.
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("run: {}\n")
    (run / "log.txt").write_text("run folder: ...\n")
    (run / ".metrics.csv.abc123.tmp").write_text("half")
    result = fit(tiny_config(data, run, **{"run.epochs": 1, "run.max_steps": 1}), progress=False)
    assert result.global_step == 1
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["train_state"]["global_step"] == 1


def test_what_alexnet_writes_beside_a_run_is_its_own_and_nothing_else_is(tmp_path):
    from alexnet.store.runfolder import REPORT_NAME, foreign_entries

    # `alexnet report`'s default file, eval's confusion matrix and an atomic writer's temporary are alexnet's;
    # a user's notes beside them are not, so a new run refuses the folder.
    for name in (REPORT_NAME, "confusion.csv", f".{REPORT_NAME}.x1y2.tmp", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert foreign_entries(tmp_path) == ["notes.txt"]


def hold_lock(run: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock, as a live trainer before its first checkpoint does."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from alexnet.store.runfolder import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()", str(run)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_resuming_a_live_run_before_its_first_checkpoint_names_the_lock_holder(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "log.txt").write_text("run folder: ...\n")
    holder = hold_lock(run)
    try:
        resumed = subprocess.run([sys.executable, "-m", "alexnet", "train", "--resume", str(run)],
                                 capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 2, resumed.stderr
        assert f"in use by another alexnet process (pid {holder.pid}, lock {run / LOCK_NAME})" in resumed.stderr
        assert "no checkpoints" not in resumed.stderr and len(resumed.stderr.strip().splitlines()) == 1
        with pytest.raises(RunFolderError, match=f"pid {holder.pid}"):  # the probe took nothing from the holder
            RunLock(run).acquire()
    finally:
        holder.stdin.close()
        holder.wait()


def test_the_probe_of_a_folder_no_run_holds_creates_nothing(tmp_path):
    from alexnet.store.runfolder import refuse_if_locked

    refuse_if_locked(tmp_path / "missing")
    refuse_if_locked(tmp_path)
    assert not (tmp_path / "missing").exists() and not (tmp_path / LOCK_NAME).exists()
    # A lock held in this process conflicts too (another open file description).
    with RunLock(tmp_path), pytest.raises(RunFolderError, match=f"pid {os.getpid()}"):
        refuse_if_locked(tmp_path)
    refuse_if_locked(tmp_path)  # released: nothing to refuse
