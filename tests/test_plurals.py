"""Counts and nouns agree in what alexnet prints: '1 entry that is', '1 epoch', never '1 epochs'."""

from __future__ import annotations

import data_factories as f
from alexnet.cli import main
from alexnet.errors import plural
from alexnet.train import fit
from data_factories import make_folder
from tiny_runs import tiny_config


def test_plural_agrees_with_its_count():
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"


def test_data_check_says_1_entry_that_is_not_data(tmp_path, capsys):
    root = f.image_folder(tmp_path / "pets", ("cat", "dog"), per_class=4)
    f.write_bytes(root / "cat" / ".DS_Store", b"junk")
    assert main(["data", "check", str(root)]) == 0
    assert "ignored 1 entry that is not data (--all lists them):" in capsys.readouterr().out
    assert main(["data", "check", str(root), "--all"]) == 0
    assert "ignored 1 entry that is not data:" in capsys.readouterr().out
    f.write_bytes(root / "dog" / "Thumbs.db", b"junk")
    assert main(["data", "check", str(root)]) == 0
    assert "ignored 2 entries that are not data (--all lists them):" in capsys.readouterr().out


def test_a_one_epoch_run_says_1_epoch(tmp_path, capsys):
    data = make_folder(tmp_path / "data", train=8, val=2)
    # lr 0: validation top-1 improves once (from nothing) and never again, so a patience of 1 stops after epoch 2
    fit(tiny_config(data, tmp_path / "run", **{"run.epochs": 3, "run.early_stop": 1, "optim.lr": 0.0}),
        progress=False)
    out = capsys.readouterr().out
    assert ", 3 epochs, device cpu" in out
    assert "early stop: validation top-1 has not improved for 1 epoch (best" in out
    fit(tiny_config(data, tmp_path / "one", **{"run.epochs": 1}), progress=False)
    out = capsys.readouterr().out
    assert ", 1 epoch, device cpu" in out and "1 epochs" not in out
