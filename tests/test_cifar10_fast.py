"""`--recipe cifar10-fast` (issue 24): the authors' layers-80sec net with the changes that won, `--amp auto`, and the
width ladder of a net built for one input size. Its accuracy and time are measured in benchmarks/, not here."""

from __future__ import annotations

import pytest
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


def test_amp_auto_is_resolved_by_the_run_and_recorded(tmp_path):
    data = write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=8)
    cfg = resolve_config(recipe="cifar10-fast", overrides={
        "data.source": str(data), "run.batch_size": 8, "run.epochs": 1, "run.output_dir": str(tmp_path / "run"),
        "run.device": "cpu"})
    fit(cfg, progress=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["run"]["amp"] in ("bf16", "fp16", "none") and f"amp auto: {saved['run']['amp']}" in log
    assert "cc-80sec" in log and "32x32 px" in log


def test_amp_auto_is_a_training_choice_only():
    assert resolve_config(overrides={"run.amp": "auto"}).run.amp == "auto"
    with pytest.raises(ConfigError, match="auto"):
        resolve_config(overrides={"run.amp": "fastest"})
