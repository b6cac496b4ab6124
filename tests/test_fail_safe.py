"""Nothing lost: a diverged step is never saved, run-folder files survive a failed write, resume trusts the
checkpoint's config, and a full or read-only disk reaches the user as one line."""

import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet.config import save_yaml
from alexnet.errors import DataError
from alexnet.evaluate import EvalResult
from alexnet.files import FileWriteError
from alexnet.store.runfolder import truncate_metrics, write_metrics
from alexnet.train import TrainingError, fit, resume_config
from alexnet.training.determinism import check_deterministic_backward
from alexnet.training.epoch import check_validation
from data_factories import make_folder
from tiny_runs import TINY, run_cli, tiny_config

PLAIN_SGD = {"model.norm": "none", "optim.opt": "sgd", "optim.momentum": 0.0}
# Cast to float32 in the update this is inf: one step turns every weight with a gradient into Inf or NaN, while the
# loss of that step, computed before the update, is still finite (so the loss check cannot see it).
ABSURD_LR = 1e300


def checkpoint_bytes(run: Path) -> dict[str, bytes]:
    return {name: (run / "checkpoints" / name).read_bytes() for name in ("last.pt", "best.pt")}


@pytest.fixture
def mount(tmp_path):
    """mount(options) -> a fresh tmpfs mounted with those options (read-only, tiny...); skipped where mounting is
    not allowed. chmod would not do: root ignores permission bits."""
    mounted = []

    def make(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")
        mounted.append(point)
        return point

    yield make
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.mark.parametrize("where", ["mid-epoch checkpoint", "epoch end"])
def test_a_step_that_diverges_before_a_save_is_never_saved(tmp_path, where):
    data = make_folder(tmp_path / "data", train=16, val=4)  # 4 steps per epoch
    run = tmp_path / "run"
    if where == "mid-epoch checkpoint":  # a whole good epoch; the next epoch's step 1 diverges, then its save
        fit(tiny_config(data, run, **{"run.epochs": 1, **PLAIN_SGD}), progress=False)
        resume = {"run.epochs": 2, "run.save_every_steps": 1}
        expected = r"weight '.*' holds NaN or Inf after global step 5 .*not saved.*left as they were .*global step 4\)"
    else:  # stopped at step 3 of 4; the epoch's last step diverges, then the epoch ends (validation, best.pt)
        fit(tiny_config(data, run, **{"run.epochs": 1, "run.max_steps": 3, **PLAIN_SGD}), progress=False)
        resume = {"run.max_steps": 100}
        expected = r"(validation loss is nan|holds NaN or Inf).*not saved.*left as they were .*global step 3\)"
    before = checkpoint_bytes(run)
    with pytest.raises(TrainingError, match=expected):
        fit(resume_config(run, overrides={"optim.lr": ABSURD_LR, **resume}), resume=run, progress=False)
    assert checkpoint_bytes(run) == before  # byte-identical: nothing was written over them


def test_a_non_finite_or_empty_validation_pass_stops_before_saving():
    nan = EvalResult(loss_sum=math.nan, correct=3, correct5=4, total=4, confusion=np.zeros((2, 2), np.int64))
    with pytest.raises(TrainingError, match="validation loss is nan after epoch 2 .*not saved.*kept as is"):
        check_validation(nan, 1, "kept as is")
    empty = EvalResult(loss_sum=0.0, correct=0, correct5=0, total=0, confusion=np.zeros((2, 2), np.int64))
    with pytest.raises(Exception, match="validation pass of epoch 1 saw no images"):
        check_validation(empty, 0, "kept")
    check_validation(EvalResult(1.0, 1, 1, 2, np.zeros((2, 2), np.int64)), 0, "kept")  # a usable pass passes


def test_resume_takes_the_checkpoints_config_even_when_config_yaml_is_cut(tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    cfg = tiny_config(data, run, **{"run.epochs": 3, "run.max_steps": 1, "optim.opt": "sgd", "optim.lr": 0.0123,
                                    "run.seed": 7})
    fit(cfg, progress=False)
    saved = run / "config.yaml"
    saved.write_bytes(saved.read_bytes()[:60])  # cut mid-file, as a crash during a plain write would leave it
    resumed = resume_config(run)
    assert resumed.to_dict() == cfg.to_dict()
    saved.write_text("optim:\n  lr: 99.0\n")  # edited by hand: still not what the weights were trained with
    assert resume_config(run).optim.lr == 0.0123
    assert resume_config(run, overrides={"optim.lr": 0.5}).optim.lr == 0.5  # flags still apply on top


def fill(disk: Path) -> None:
    """Fill a file system to its last byte."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def _config(path: Path, version: int) -> None:
    from alexnet.config import resolve_config

    save_yaml(resolve_config(overrides={"run.epochs": version}), path)


def _metrics(path: Path, version: int) -> None:
    write_metrics(path, [{"epoch": e, "lr": 0.01, "train_loss": 0.5} for e in range(1, version + 1)])


def _confusion(path: Path, version: int) -> None:
    from alexnet.evaluate import write_confusion_csv

    confusion = np.full((2, 2), version, np.int64)
    write_confusion_csv(EvalResult(1.0, 1, 1, 2, confusion, class_names=["cat", "dog"]), path)


@pytest.mark.parametrize("name, write", [("config.yaml", _config), ("metrics.csv", _metrics),
                                         ("confusion.csv", _confusion)])
def test_a_full_disk_leaves_each_run_folder_file_as_it_was(tmp_path, mount, name, write):
    disk = mount("size=64k")
    path = disk / name
    write(path, 2)
    before = path.read_bytes()
    fill(disk)
    with pytest.raises(FileWriteError, match=rf"{name}: No space left on device \(ENOSPC\)"):
        write(path, 300)  # longer than before: a plain rewrite would truncate the old file, then fail
    assert path.read_bytes() == before
    assert sorted(p.name for p in disk.iterdir()) == sorted([name, "filler"])  # no temporary left behind


def test_a_damaged_metrics_csv_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "metrics.csv"
    _metrics(path, 2)
    path.write_text(path.read_text() + "3,0.0x1,\n")
    with pytest.raises(DataError, match=r"metrics\.csv: line 4 is damaged"):
        truncate_metrics(path, keep_epochs=3)
    assert [r["epoch"] for r in truncate_metrics(tmp_path / "none.csv", 3)] == []


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("failsafe")
    data = make_folder(root / "data", train=4, val=2)
    fit(tiny_config(data, root / "run", **{"run.epochs": 1}), progress=False)
    return root


def test_train_into_a_read_only_folder_is_one_line(finished_run, mount):
    ro = mount("ro")
    result = run_cli("train", "--data", str(finished_run / "data"), *TINY, "--epochs", "1", "--device", "cpu",
                     "--output-dir", str(ro / "run"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(ro) in lines[0] and "Read-only file system (EROFS)" in lines[0], result.stderr


def test_an_os_error_outside_the_writer_is_one_line_too(finished_run, mount):
    # eval creates its --output-dir itself: the OSError surfaces raw, and the command line turns it into one line.
    ro = mount("ro")
    result = run_cli("eval", "--checkpoint", str(finished_run / "run"), "--device", "cpu", "--output-dir", str(ro / "out"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"alexnet eval: error: {ro / 'out'}: Read-only file system (EROFS)"], result.stderr


@pytest.mark.slow
def test_a_disk_that_fills_during_training_is_one_line_and_keeps_nothing_half_written(finished_run, mount):
    disk = mount("size=1m")  # room for the run files, not for a 1.4 MB checkpoint
    result = run_cli("train", "--data", str(finished_run / "data"), *TINY, "--epochs", "1", "--device", "cpu",
                     "--output-dir", str(disk / "run"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "No space left on device (ENOSPC)" in last and str(disk / "run") in last, result.stderr
    assert not (disk / "run" / "checkpoints" / "last.pt").exists()
    assert not list((disk / "run" / "checkpoints").iterdir())  # no temporary left


class _NoDeterministicKernel(torch.nn.Module):
    """A layer whose op has no deterministic kernel on the CPU (Tensor.put_), as AdaptiveAvgPool2d's backward has
    none on CUDA."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        x = x.flatten(1).clone()
        x.put_(torch.tensor([0]), torch.tensor([1.0]))
        return self.fc(x)


def test_deterministic_mode_refuses_a_layer_without_a_deterministic_kernel_up_front():
    model = _NoDeterministicKernel()
    ordinary = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(Exception, match=r"run\.deterministic.*tiny uses put_, which has no deterministic kernel"):
            check_deterministic_backward(model, torch.device("cpu"), 4, 3, name="tiny")
        check_deterministic_backward(ordinary, torch.device("cpu"), 4, 3)  # an ordinary model passes
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a copy was probed
    assert torch.equal(torch.get_rng_state(), rng)

