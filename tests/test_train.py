"""Training end to end on tiny real image folders: run folder, metrics, plots, checkpoints, refusals, schedules."""

import csv
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from alexnet.config import OptimSpec, resolve_config
from alexnet.errors import CheckpointError, ConfigError
from alexnet.store.checkpoint import load_checkpoint
from alexnet.store.runfolder import METRIC_COLUMNS
from alexnet.train import TrainingError, fit, resume_config
from alexnet.training.determinism import epoch_permutation
from alexnet.training.optim import LRSchedule, build_optimizer
from alexnet.training.report import d2l_line
from data_factories import make_folder
from tiny_runs import TINY, run_cli, tiny_config

D2L_LINE = re.compile(r"^epoch \d+, loss \d+\.\d{4}, train acc \d\.\d{3}, test acc \d\.\d{3}, time \d+\.\d sec$")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("pets"))


@pytest.mark.slow
def test_train_eval_predict_from_the_command_line(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", str(tiny_data), *TINY, "--epochs", "2", "--output-dir", str(run_dir),
                     "--opt", "sgd", "--lr", "0.01")
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all(D2L_LINE.match(line) for line in epoch_lines), result.stdout
    for name in ("config.yaml", "metrics.csv", "log.txt", "curves.png", "filters.png", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    for png in ("curves.png", "filters.png"):
        with Image.open(run_dir / png) as img:
            assert img.format == "PNG" and img.size[0] > 100
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == METRIC_COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    assert epoch_lines[0] in (run_dir / "log.txt").read_text()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["source"] == str(tiny_data) and saved["optim"]["opt"] == "sgd"
    # Only tensors and plain types: loadable with weights_only=True by torch itself.
    raw = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state = raw["train_state"]
    assert raw["class_names"] == ["cat", "dog"] and state["epoch"] == 2 and state["step_in_epoch"] == 0
    assert set(state["rng"]) >= {"python", "numpy", "torch"} and raw["model_args"]["width_mult"] == 0.125
    assert raw["versions"]["torch"] == torch.__version__

    ev = run_cli("eval", "--checkpoint", str(run_dir))
    assert ev.returncode == 0, ev.stderr
    assert re.search(r"^Accuracy: \d+/8 \(\d+%\)$", ev.stdout, re.M), ev.stdout
    assert "precision" in ev.stdout and (run_dir / "confusion.csv").is_file() and (run_dir / "confusion.png").is_file()

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cat = tiny_data / "val" / "cat" / "cat.0.jpg"
    items = [str(cat), str(broken), str(tiny_data / "val" / "dog" / "*.png")]
    pr = run_cli("predict", "--checkpoint", str(run_dir / "checkpoints" / "best.pt"), *items, "--top-k", "2", "--json")
    assert pr.returncode == 1  # one file failed
    import json

    out = json.loads(pr.stdout)
    assert [o["file"] for o in out][:2] == [str(cat), str(broken)] and len(out) == 4
    assert set(out[1]) == {"file", "error"} and "broken.jpg" in out[1]["error"]
    from alexnet.predict import predict_files

    # The command's answers are the checkpoint's model's: the same ranking and probabilities in this process.
    expected = predict_files(load_checkpoint(run_dir / "checkpoints" / "best.pt"), items, top_k=2)
    for o, e in zip(out[:1] + out[2:], expected[:1] + expected[2:], strict=True):
        assert set(o) == {"file", "top"} and o["file"] == e.file
        assert [t["label"] for t in o["top"]] == [label for label, _ in e.top]
        assert [t["prob"] for t in o["top"]] == pytest.approx([p for _, p in e.top], abs=1e-4)
        assert math.isclose(sum(t["prob"] for t in o["top"]), 1.0, rel_tol=1e-4)


@pytest.mark.slow
def test_a_run_whose_output_is_a_pipe_prints_a_line_per_epoch_and_no_bar(tiny_data, tmp_path):
    """Not on a terminal (stdout and stderr both pipes, no --progress flag): the bar is off, and each epoch still
    says how it went, in the d2l note's line, on stdout and in log.txt."""
    flags = [f for f in TINY if f != "--no-progress"]  # the default: the bar follows stderr's being a terminal
    result = run_cli("train", "--data", str(tiny_data), *flags, "--epochs", "3", "--output-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(",")[0] for line in epoch_lines] == ["epoch 1", "epoch 2", "epoch 3"], result.stdout
    assert all(D2L_LINE.match(line) for line in epoch_lines), result.stdout
    assert "img/s" not in result.stderr and "\r" not in result.stderr, result.stderr  # no bar flooding a log
    assert all(line in (tmp_path / "r" / "log.txt").read_text() for line in epoch_lines)


def test_fit_in_process_writes_a_run_and_resumes_past_max_steps(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", **{"run.epochs": 2, "run.max_steps": 3})
    first = fit(cfg, progress=False)
    assert first.reached_max_steps and first.global_step == 3
    ckpt = load_checkpoint(tmp_path / "run", prefer="last")
    assert tuple(ckpt.train_state[k] for k in ("epoch", "step_in_epoch", "global_step")) == (0, 3, 3)
    again = fit(resume_config(tmp_path / "run", overrides={"run.max_steps": 100}), resume=tmp_path / "run",
                progress=False)
    assert not again.reached_max_steps and again.global_step == 8  # 2 epochs x (32 images / 8)
    assert [r["epoch"] for r in again.rows] == [1, 2]  # the partial epoch's row was replaced, not duplicated


def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path / "run", **{
        "model.norm": "none", "optim.opt": "sgd", "optim.lr": 1e12, "optim.momentum": 0.0,
        "run.epochs": 3, "run.save_every_steps": 1})
    with pytest.raises(TrainingError, match=r"non-finite loss .* at epoch \d+, step \d+") as err:
        fit(cfg, progress=False)
    failed = re.search(r"at epoch (\d+), step (\d+): stopped before applying it", str(err.value))
    assert failed, str(err.value)  # --save-every-steps 1 reads every step: the bad step is never applied
    epoch, step = int(failed[1]), int(failed[2])  # both counted from 1
    ckpt = load_checkpoint(tmp_path / "run", prefer="last")  # refuses NaN weights: these are all finite
    assert ckpt.train_state["global_step"] == (epoch - 1) * 4 + step - 1  # the step just before it: 4 steps of 8 per epoch


def test_resume_refuses_a_different_model_size_or_classes(tiny_data, tmp_path):
    run = tmp_path / "run"
    fit(tiny_config(tiny_data, run, **{"run.epochs": 1, "run.max_steps": 1}), progress=False)
    with pytest.raises(CheckpointError, match="cannot resume: image_size differs"):
        fit(resume_config(run, overrides={"data.image_size": 75}), resume=run, progress=False)
    with pytest.raises(CheckpointError, match="cannot resume: model_name differs"):
        fit(resume_config(run, overrides={"model.name": "alexnet-1gpu"}), resume=run, progress=False)
    other = make_folder(tmp_path / "other", classes=("bird", "fish"), train=4, val=2)
    with pytest.raises(CheckpointError, match="cannot resume: class_names differs"):
        fit(resume_config(run, overrides={"data.source": str(other)}), resume=run, progress=False)
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):  # never overwritten by accident
        fit(tiny_config(tiny_data, run, **{"run.epochs": 1, "run.max_steps": 1}), progress=False)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"last\.pt: not a PyTorch checkpoint, or truncated"):
        fit(resume_config(run), resume=run, progress=False)


def test_d2l_line_has_the_notes_format():
    row = {"epoch": 3, "train_loss": 0.29524, "train_acc": 0.8912, "val_top1": 0.8941, "seconds": 68.61}
    assert d2l_line(row) == "epoch 3, loss 0.2952, train acc 0.891, test acc 0.894, time 68.6 sec"


def test_plateau_schedule_divides_by_ten_at_most_three_times():
    spec = OptimSpec(opt="sgd", lr=0.01, lr_schedule="plateau", patience=0, max_drops=3)
    schedule = LRSchedule(spec, epochs=20, steps_per_epoch=10)
    schedule.end_epoch(0.5)
    assert schedule.lr_at(1, 0) == pytest.approx(0.01)
    drops = [schedule.end_epoch(0.4) for _ in range(6)]
    assert drops == [True, True, True, False, False, False]
    assert schedule.lr_at(7, 0) == pytest.approx(1e-5)
    restored = LRSchedule(spec, epochs=20, steps_per_epoch=10)
    restored.load_state_dict(schedule.state_dict())
    assert restored.lr_at(7, 0) == schedule.lr_at(7, 0)


def test_warmup_cosine_and_step_schedules():
    warm = LRSchedule(OptimSpec(lr=1.0, lr_schedule="cosine", warmup_epochs=1), epochs=3, steps_per_epoch=4)
    lrs = [warm.lr_at(e, s) for e in range(3) for s in range(4)]
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # linear warm-up over the first epoch
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12) and all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))
    step = LRSchedule(OptimSpec(lr=1.0, lr_schedule="step", step_size=2, gamma=0.1), epochs=6, steps_per_epoch=1)
    assert [step.lr_at(e, 0) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_permutation(100, seed=1, epoch=3)
    assert torch.equal(a, epoch_permutation(100, seed=1, epoch=3))
    assert not torch.equal(a, epoch_permutation(100, seed=1, epoch=4))
    assert sorted(a.tolist()) == list(range(100))


@pytest.mark.parametrize(
    "extra",
    [
        {"data.loader": "pil", "data.augment": True},  # the notes' DataLoader path, with the note's augmentation
        {"data.augment": True},  # the seed note's rotation + flip, on whole uint8 batches
        {"run.amp": "bf16", "run.channels_last": True},
        {"run.amp": "fp16"},  # with a GradScaler
        {"model.name": "alexnet", "data.preset": "paper", "optim.opt": "sgd", "optim.lr": 0.01,
         "optim.lr_schedule": "plateau", "optim.weight_decay": 5e-4},  # the paper's model, crops + PCA colour
        {"model.name": "alexnet-d2l", "data.preset": "d2l", "model.in_channels": 1},  # grayscale input
    ],
    ids=["pil-loader", "cache-augment", "bf16-channels-last", "fp16-scaler", "paper", "d2l-grey"],
)
def test_variants_of_a_run_train_and_checkpoint(tiny_data, tmp_path, extra):
    result = fit(tiny_config(tiny_data, tmp_path / "run", **{"run.epochs": 1, "run.max_steps": 2, **extra}),
                 progress=False)
    assert result.global_step == 2 and math.isfinite(result.rows[0]["train_loss"])
    ckpt = load_checkpoint(tmp_path / "run", prefer="last")
    assert ckpt.preprocessing.preset == extra.get("data.preset", "seed")  # a photo folder gets the seed note's by default
    assert ckpt.preprocessing.in_channels == extra.get("model.in_channels", 3)
    assert (ckpt.train_state["scaler"] is not None) == (extra.get("run.amp") == "fp16")


def test_every_flag_of_the_issue_parses_into_the_config():
    from alexnet.cli import build_parser
    from alexnet.cli.train import overrides_from

    args = build_parser().parse_args([
        "train", "--data", "pets", "--model", "alexnet", "--image-size", "227", "--epochs", "3", "--batch-size", "32",
        "--opt", "sgd", "--lr", "0.02", "--momentum", "0.8", "--weight-decay", "5e-4", "--lr-schedule", "step",
        "--warmup-epochs", "1", "--amp", "bf16", "--channels-last", "--compile", "--device", "cuda:1",
        "--workers", "3", "--seed", "7", "--deterministic", "--output-dir", "out", "--save-every-steps", "5",
        "--strict"])
    cfg = resolve_config(recipe=args.recipe, config_path=args.config, overrides=overrides_from(args))
    assert (cfg.data.source, cfg.model.name, cfg.data.image_size, cfg.run.epochs, cfg.run.batch_size) == (
        "pets", "alexnet", 227, 3, 32)
    assert (cfg.optim.opt, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.lr_schedule,
            cfg.optim.warmup_epochs) == ("sgd", 0.02, 0.8, 5e-4, "step", 1.0)
    assert (cfg.run.amp, cfg.run.channels_last, cfg.run.compile, cfg.run.device, cfg.data.workers, cfg.run.seed,
            cfg.run.deterministic, cfg.run.output_dir, cfg.run.save_every_steps, cfg.data.strict) == (
        "bf16", True, True, "cuda:1", 3, 7, True, "out", 5, True)
    unset = build_parser().parse_args(["train", "--recipe", "paper"])
    assert resolve_config(recipe="paper", overrides=overrides_from(unset)) == resolve_config(recipe="paper")


@pytest.mark.slow
def test_a_skipped_file_is_reported_once_and_kept_in_the_log(tmp_path):
    data = make_folder(tmp_path / "pets", train=6, val=2)
    bad = data / "train" / "cat" / "cat.99.jpg"
    bad.write_bytes(b"<!DOCTYPE html><html></html>")
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", str(data), *TINY, "--epochs", "1", "--output-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    shown = (result.stdout + result.stderr).count("cat.99.jpg")
    assert shown == 1, result.stdout + result.stderr
    assert "cat.99.jpg" in (run_dir / "log.txt").read_text()


@pytest.mark.parametrize("opt", ["sgd", "adam", "adamw"])
def test_optimizers_use_the_fused_kernel_and_the_same_update_rule(opt):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    reference = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    reference.load_state_dict(model.state_dict())
    spec = OptimSpec(opt=opt, lr=0.05, weight_decay=1e-3, momentum=0.9)
    fused = build_optimizer(spec, model)
    assert fused.defaults["fused"] is True
    plain_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[opt]
    extra = {"momentum": 0.9} if opt == "sgd" else {}
    plain = plain_cls(reference.parameters(), lr=0.05, weight_decay=1e-3, foreach=False, **extra)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    for _ in range(3):
        for net, optimizer in ((model, fused), (reference, plain)):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_max_steps_at_an_epoch_end_stops_there(tiny_data, tmp_path):
    """--max-steps equal to a whole number of epochs stops at that epoch's end, not one step into the next."""
    result = fit(tiny_config(tiny_data, tmp_path / "run", **{"run.epochs": 3, "run.max_steps": 4}), progress=False)
    assert result.global_step == 4 and result.reached_max_steps and [r["epoch"] for r in result.rows] == [1]
    state = load_checkpoint(tmp_path / "run", prefer="last").train_state
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 4)
