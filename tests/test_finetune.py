"""Fine-tuning (issue 11): --init-from our runs, export folders and torchvision weights; --freeze / --freeze-epochs
/ --backbone-lr-mult; frozen weights bitwise fixed, the rest moving, and resume restoring all of it."""

import pytest
import torch

from alexnet.errors import AlexNetError
from alexnet.store.checkpoint import load_checkpoint
from alexnet.train import fit, resume_config
from data_factories import make_folder
from tiny_runs import tiny_config

FEATURES = "features."  # state_dict prefix of the conv stack (conv1 ... conv5 with their BatchNorm)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny run trained on two classes: the weights the other runs start from."""
    root = tmp_path_factory.mktemp("source")
    data = make_folder(root / "data", train=8, val=2)
    fit(tiny_config(data, root / "run", **{"run.epochs": 1}), progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("three") / "data", classes=("cat", "dog", "fox"), train=8, val=2)


def weights(run, prefer="last"):
    return load_checkpoint(run, prefer=prefer).weights


def test_init_from_a_run_replaces_fc8_for_another_class_count_and_freezes_the_features(source, three_classes,
                                                                                       tmp_path, capsys):
    run = tmp_path / "run"
    fit(tiny_config(three_classes, run, **{"model.init_from": str(source), "model.freeze": "features",
                                           "run.epochs": 1}), progress=False)
    out = capsys.readouterr().out
    assert "fc8 replaced: the source has 2 classes, this data 3" in out and "frozen for the whole run" in out
    start, end = weights(source, "best"), weights(run)
    frozen = [k for k in end if k.startswith(FEATURES)]
    assert frozen and all(torch.equal(end[k], start[k]) for k in frozen)  # weights and BatchNorm statistics
    fc7 = "classifier.4.weight"  # trains from the source's values
    assert end[fc7].shape == start[fc7].shape and not torch.equal(end[fc7], start[fc7])
    assert end["classifier.6.weight"].shape[0] == 3
    state = load_checkpoint(run).train_state
    assert state["frozen"] is True and not any(n.startswith(FEATURES) for n in state["optimizer_params"])
    assert len(state["optimizer_params"]) == len(state["optimizer"]["param_groups"][0]["params"])  # never sees them


def test_freeze_epochs_unfreezes_and_resume_lands_on_the_same_weights(source, three_classes, tmp_path):
    common = {"model.init_from": str(source), "model.freeze": "conv3", "model.freeze_epochs": 1,
              "optim.backbone_lr_mult": 0.5, "run.epochs": 2, "run.deterministic": True}
    whole = tmp_path / "whole"
    fit(tiny_config(three_classes, whole, **common), progress=False)
    log = (whole / "log.txt").read_text()
    assert "epoch 2: unfrozen" in log
    # Stopped mid-epoch 2 (after the unfreeze: 3 steps per epoch) and resumed: exactly the uninterrupted run.
    parts = tmp_path / "parts"
    fit(tiny_config(three_classes, parts, **common, **{"run.max_steps": 4}), progress=False)
    assert load_checkpoint(parts, prefer="last").train_state["frozen"] is False
    fit(resume_config(parts, overrides={"run.max_steps": 100}), resume=parts, progress=False)
    a, b = weights(whole), weights(parts)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Stopped at the epoch boundary (before the unfreeze) and resumed: the same again.
    edge = tmp_path / "edge"
    fit(tiny_config(three_classes, edge, **common, **{"run.max_steps": 3}), progress=False)
    assert load_checkpoint(edge, prefer="last").train_state["frozen"] is True
    fit(resume_config(edge, overrides={"run.max_steps": 100}), resume=edge, progress=False)
    c = weights(edge)
    assert all(torch.equal(a[k], c[k]) for k in a)
    groups = load_checkpoint(whole).train_state["optimizer"]["param_groups"]
    assert [g["lr_mult"] for g in groups] == [1.0, 0.5, 0.5]  # fc8, the backbone that trained, the released part


def test_frozen_layers_stay_bitwise_fixed_and_the_rest_moves(source, tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"model.init_from": str(source), "model.freeze": "fc6", "run.epochs": 1}),
        progress=False)
    start, end = weights(source, "best"), weights(run)
    fixed = [k for k in end if k.startswith(FEATURES) or k.startswith("classifier.1.")]  # conv stack and fc6
    moved = [k for k in end if k.startswith("classifier.4.") or k.startswith("classifier.6.")]  # fc7, fc8
    assert all(torch.equal(end[k], start[k]) for k in fixed)
    assert all(not torch.equal(end[k], start[k]) for k in moved)


def test_backbone_learning_rate_multiplier(source, tmp_path):
    """A multiplier of 0 keeps the backbone where it was while fc8 learns: the rate really is per group."""
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"model.init_from": str(source), "optim.backbone_lr_mult": 0.0,
                                  "run.epochs": 1}), progress=False)
    start, end = weights(source, "best"), weights(run)
    assert not torch.equal(end["classifier.6.weight"], start["classifier.6.weight"])
    assert all(torch.equal(end[k], start[k]) for k in end if k.endswith("weight") and not k.startswith("classifier.6"))


def test_init_from_an_export_folder(source, tmp_path):
    from alexnet.export import export_checkpoint

    export_checkpoint(source, tmp_path / "hub", ["hub"])
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"model.init_from": str(tmp_path / "hub"), "model.freeze": "features",
                                  "run.max_steps": 1}), progress=False)
    start, end = weights(source, "best"), weights(run)
    assert all(torch.equal(end[k], start[k]) for k in end if k.startswith(FEATURES))


def test_a_source_of_another_shape_is_refused_by_layer(source, tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    cfg = tiny_config(data, tmp_path / "run", **{"model.init_from": str(source), "model.width_mult": 0.25})
    with pytest.raises(AlexNetError, match=r"layer conv1 does not fit \(features\.0\.weight: \(12, 3, 11, 11\) there"):
        fit(cfg, progress=False)
    missing = tiny_config(data, tmp_path / "run2", **{"model.init_from": str(tmp_path / "nope")})
    with pytest.raises(AlexNetError, match=r"field 'model.init_from': .*nope: no such file or folder"):
        fit(missing, progress=False)


def test_the_source_preprocessing_is_used_unless_the_run_sets_its_own(source, tmp_path, capsys):
    from alexnet.config import resolve_config

    data = make_folder(tmp_path / "data", train=8, val=2)
    cfg = resolve_config(overrides={"data.source": str(data), "run.output_dir": str(tmp_path / "run"),
                                    "model.width_mult": 0.125, "run.batch_size": 8, "run.max_steps": 1,
                                    "run.device": "cpu", "model.init_from": str(source)})
    assert cfg.data.image_size is None  # left open: the source's 67 px is taken
    fit(cfg, progress=False)
    assert "input size 67, preset seed" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "run").preprocessing.image_size == 67


def test_freeze_epochs_without_freeze_is_refused():
    from alexnet.config import ModelSpec
    from alexnet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'model.freeze_epochs' \(2\) needs field 'model.freeze'"):
        ModelSpec(freeze_epochs=2)


@pytest.mark.slow
def test_torchvision_weights_from_torch_hubs_cache(tmp_path, monkeypatch):
    """torchvision's ImageNet weights, read offline from where torch.hub keeps them (a state_dict made here)."""
    import torchvision

    from alexnet.models import build_model
    from alexnet.training.finetune import apply_initial_weights, read_initial_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url
    torch.manual_seed(5)
    reference = torchvision.models.alexnet(weights=None)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    init = read_initial_weights("torchvision")
    assert (init.image_size, init.preset) == (224, "seed")
    model = build_model("alexnet-owt", num_classes=2)
    lines = apply_initial_weights(model, init)
    assert any("fc8 replaced: the source has 1000 classes, this data 2" in line for line in lines)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if not k.startswith("classifier.6"))
    gray = build_model("alexnet-owt", num_classes=2, in_channels=1)
    apply_initial_weights(gray, init)  # conv1 summed over RGB
    assert torch.allclose(gray.state_dict()["features.0.weight"], theirs["features.0.weight"].sum(1, keepdim=True))


def test_torchvision_weights_offline_name_the_place_for_the_file(tmp_path, monkeypatch):
    import torch.hub

    from alexnet.errors import ConfigError
    from alexnet.training.finetune import read_initial_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst, progress=True):  # what urllib raises on a machine without a route out
        raise OSError("Network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError, match=r"torchvision: .*hub/checkpoints/alexnet-owt-.*\.pth is not there and could "
                                          r"not be downloaded \(OSError\); on a machine with internet, fetch"):
        read_initial_weights("torchvision")


def test_a_resume_with_other_freeze_settings_is_refused(source, tmp_path):
    data = make_folder(tmp_path / "data", train=8, val=2)
    run = tmp_path / "run"
    fit(tiny_config(data, run, **{"model.init_from": str(source), "model.freeze": "features", "run.epochs": 2,
                                  "run.max_steps": 1}), progress=False)
    changed = resume_config(run, overrides={"model.freeze": "none", "run.max_steps": 100})
    with pytest.raises(AlexNetError, match=r"the checkpoint's optimizer trains \d+ parameters, this run's \d+ .*"
                                           r"resume with the run's own --freeze"):
        fit(changed, resume=run, progress=False)
