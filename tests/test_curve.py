"""`--curve-points`: the training error at a finer grain than an epoch (train_curve.csv, Figure 1's curve)."""

from __future__ import annotations

import csv

from alexnet.config import resolve_config
from alexnet.train import fit
from alexnet.training.curve import read_curve
from data_factories import make_folder


def run_config(data, out, **extra):
    return resolve_config(overrides={
        "model.name": "cc-80sec", "data.source": str(data), "run.batch_size": 8, "run.epochs": 2,
        "run.curve_points": 2, "run.output_dir": str(out), "run.device": "cpu", **extra})


def test_the_curve_has_its_points_per_epoch_and_agrees_with_metrics(tmp_path):
    data = make_folder(tmp_path / "photos", train=16, size=32)  # 32 training images: 4 steps of 8 per epoch
    fit(run_config(data, tmp_path / "run"), progress=False)
    rows = read_curve(tmp_path / "run" / "train_curve.csv")
    assert [r["step"] for r in rows] == [2, 4, 6, 8] and [r["epoch"] for r in rows] == [0.5, 1.0, 1.5, 2.0]
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    for e, row in enumerate(epochs):  # two stretches of equal size: their mean is the epoch's error
        mean = (rows[2 * e]["train_error"] + rows[2 * e + 1]["train_error"]) / 2
        assert abs(mean - (1 - float(row["train_acc"]))) < 1e-5


def test_a_resumed_run_keeps_the_curve_up_to_its_checkpoint(tmp_path):
    data = make_folder(tmp_path / "photos", train=16, size=32)
    fit(run_config(data, tmp_path / "run", **{"run.epochs": 1}), progress=False)
    curve = tmp_path / "run" / "train_curve.csv"
    curve.write_text(curve.read_text() + "99,24.75,0.5,0.25\n")  # a row from beyond the checkpoint: dropped
    fit(run_config(data, tmp_path / "run"), resume=tmp_path / "run", progress=False)
    assert [r["step"] for r in read_curve(curve)] == [2, 4, 6, 8]


def test_a_damaged_curve_is_read_as_none_and_said(tmp_path, caplog):
    path = tmp_path / "train_curve.csv"
    path.write_text("step,epoch,train_loss,train_error\n2,0.5,0.7,nan\n")
    assert read_curve(path) == [] and "not read" in caplog.text
    path.write_text("step,epoch,train_loss,train_error\n4,1,0.7,0.5\n2,0.5,0.7,0.5\n")
    assert read_curve(path) == []
    assert read_curve(tmp_path / "missing.csv") == []
