"""`--recipe cifar10-fast` (issue 24): the authors' layers-80sec net with the changes that won, `--amp auto`, and the
width ladder of a net built for one input size. Its accuracy and time are measured in benchmarks/, not here."""

from __future__ import annotations

import pytest
import torch
import yaml

from alexnet.config import resolve_config
from alexnet.errors import ConfigError
from alexnet.train import fit
from alexnet.training import rungs
from data_factories import write_cifar10_folder


def test_the_recipe_is_the_80sec_net_with_batchnorm_and_leaves_its_width_to_the_run():
    cfg = resolve_config(recipe="cifar10-fast", overrides={"data.source": "/nowhere"})
    assert (cfg.model.name, cfg.model.norm, cfg.model.init) == ("cc-80sec", "bn", "kaiming")
    assert (cfg.run.amp, cfg.data.tta, cfg.optim.opt) == ("auto", "flip", "sgd")
    assert cfg.run.adapt == "data.image_size,model.width_mult"
    # conv1 from the training patches, fixed for the first 2 epochs, at lr 0.2: what won at 80 s
    assert (cfg.model.conv1_init, cfg.model.freeze, cfg.model.freeze_epochs, cfg.optim.lr) == ("patches", "conv1", 2, 0.2)
    mine = resolve_config(recipe="cifar10-fast", overrides={"data.source": "/nowhere", "model.width_mult": 2.0})
    assert "model.width_mult" not in mine.run.adapt and mine.model.width_mult == 2.0  # what the user sets is theirs


def test_a_net_built_for_one_size_climbs_in_width_only():
    assert rungs.ladder("cc-80sec") == tuple((32, w) for w in rungs.WIDTH_RUNGS)
    assert rungs.ladder("cc-conv-local-13pct")[0] == (24, 1.0)
    assert rungs.ladder("alexnet-bn") == rungs.RUNGS
    step = {1.0: 1.0, 1.5: 2.0, 2.0: 4.0, 3.0: 8.0}  # seconds per step of each width
    chosen, seen = rungs.pick_rung(lambda s, w: step[w], left_s=2 * rungs.MIN_PASSES / rungs.TRAIN_SHARE,
                                   batch_size=10, train_images=10, rungs=rungs.ladder("cc-80sec"))
    assert chosen == (32, 1.5) and len(seen) == 3  # 1.5 gives exactly MIN_PASSES passes, 2.0 half of them


def recipe_run(data, out, epochs):
    cfg = resolve_config(recipe="cifar10-fast", overrides={
        "data.source": str(data), "run.batch_size": 8, "run.epochs": epochs, "run.output_dir": str(out),
        "run.device": "cpu"})
    fit(cfg, progress=False)
    conv1 = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]["features.0.weight"]
    return (out / "log.txt").read_text(), yaml.safe_load((out / "config.yaml").read_text()), conv1


def test_a_recipe_run_resolves_amp_auto_and_whitens_conv1_which_trains_from_its_third_epoch(tmp_path):
    data = write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=8)
    log, saved, conv1 = recipe_run(data, tmp_path / "two", epochs=2)
    assert saved["run"]["amp"] in ("bf16", "fp16", "none") and f"amp auto: {saved['run']['amp']}" in log
    assert "cc-80sec" in log and "32x32 px" in log
    assert "conv1 starts as the whitening filters" in log and "frozen for 2 epochs: conv1" in log
    # whitening filters come in pairs (v, -v); two epochs later they still do: conv1 did not move
    assert torch.equal(conv1[0::2], -conv1[1::2]) and conv1.abs().sum() > 0
    _, _, trained = recipe_run(data, tmp_path / "three", epochs=3)
    assert not torch.equal(trained[0::2], -trained[1::2])  # the third epoch trains it


def test_amp_auto_is_a_training_choice_only():
    assert resolve_config(overrides={"run.amp": "auto"}).run.amp == "auto"
    with pytest.raises(ConfigError, match="auto"):
        resolve_config(overrides={"run.amp": "fastest"})
