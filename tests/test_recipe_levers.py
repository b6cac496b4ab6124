"""The parts a recipe turns to the passes each image gets (issue 23): random-resized crops, a moving average of the
weights (EMA) validated beside them, and flip TTA in validation and in eval."""

import csv
import json

import pytest
import torch

from alexnet.config import resolve_config
from alexnet.data.augment import CROP_GROUP, BatchAugment, random_resized_crop
from alexnet.errors import CheckpointError, ConfigError
from alexnet.evaluate import EvalOptions, evaluate_checkpoint
from alexnet.store.checkpoint import load_checkpoint
from alexnet.train import fit, resume_config
from alexnet.training.ema import WeightAverage
from data_factories import make_folder
from tiny_runs import tiny_config


def load_raw(path):
    return torch.load(path, weights_only=True)


def ramps(n: int, side: int = 48) -> torch.Tensor:
    """n uint8 images whose value rises from 0 at the left edge to 255 at the right, the same in every channel."""
    row = torch.linspace(0, 255, side).round().to(torch.uint8)
    return row.view(1, 1, 1, side).expand(n, 3, side, side).contiguous()


def test_random_resized_crop_draws_crops_of_the_asked_area_and_flips_about_half():
    g = torch.Generator().manual_seed(0)
    out = random_resized_crop(ramps(256), 32, 0.1, g)
    assert out.shape == (256, 3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    span = out[:, 0, 16, -1] - out[:, 0, 16, 0]  # right edge minus left edge: the crop's width, signed by the mirror
    assert 0.3 < (span < 0).float().mean() < 0.7  # mirrored about half the time
    assert span.abs().min() < 0.45  # small crops occur (area >= 0.1: width >= sqrt(0.1 * 3/4) = 0.27)
    whole = random_resized_crop(ramps(256), 32, 1.0, torch.Generator().manual_seed(0))
    widths = (whole[:, 0, 16, -1] - whole[:, 0, 16, 0]).abs()
    assert widths.min() > 0.8  # area 1: at least sqrt(3/4) of the width, whatever the aspect ratio


def test_random_resized_crop_is_a_function_of_the_generator_and_keeps_flat_images_flat():
    x = torch.randint(0, 256, (2 * CROP_GROUP + 3, 3, 40, 40), dtype=torch.uint8)
    a = random_resized_crop(x, 24, 0.35, torch.Generator().manual_seed(5))
    b = random_resized_crop(x, 24, 0.35, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape[0] == x.shape[0]  # a last group smaller than CROP_GROUP too
    flat = torch.full((4, 3, 40, 40), 200, dtype=torch.uint8)
    assert torch.allclose(random_resized_crop(flat, 24, 0.2, torch.Generator()), torch.full((4, 3, 24, 24), 200 / 255))


def test_crop_scale_changes_training_batches_only():
    x = torch.randint(0, 256, (8, 3, 40, 40), dtype=torch.uint8)
    train = BatchAugment("seed", 40, generator=torch.Generator().manual_seed(0), train=True, crop_scale=0.35)
    plain = BatchAugment("seed", 40, train=True, augment=False)
    assert not torch.equal(train(x), plain(x))
    evaluation = BatchAugment("seed", 40, train=False, crop_scale=0.35)
    assert torch.equal(evaluation(x), plain(x))


def test_a_batch_cached_larger_than_the_input_is_cropped_from_whole_and_seen_whole():
    big = ramps(8, side=96)  # the training cache at 2x a 48 px input (data.train_cache_scale 2)
    small = torch.nn.functional.interpolate(big, size=(48, 48), mode="bilinear", antialias=True)
    seen = BatchAugment("seed", 48, train=False)
    # without crops the photo is squashed to the input, as at 1x: not a centre crop of half of it
    assert torch.allclose(seen(big), seen(small), atol=0.02)
    crops = BatchAugment("seed", 48, train=True, crop_scale=1.0, generator=torch.Generator().manual_seed(0))
    out = crops(big)
    assert out.shape == (8, 3, 48, 48)
    # crops of at least 0.87 of the width (area 1, any aspect ratio) span the ramp, here cut from the 96 px photo
    span = (out[:, 0, 24, -1] - out[:, 0, 24, 0]).abs() * seen.std[0]
    assert span.min() > 0.8


def test_train_cache_scale_stores_the_training_photos_larger_and_refuses_where_it_means_nothing(tmp_path,
                                                                                                  monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    photos = make_folder(tmp_path / "photos", size=160)  # larger than twice the input: nothing is enlarged
    cfg = tiny_config(photos, tmp_path / "run", **{"run.epochs": 1, "run.max_steps": 1, "data.crop_scale": 0.5,
                                                   "data.train_cache_scale": 2.0})
    fit(cfg, progress=False)
    metas = [json.loads(p.read_text())["content"] for p in (tmp_path / "cache").rglob("*.json")]
    sides = {m["split"]: m["shape"][-1] for m in metas if "shape" in m}
    assert sides == {"train": 134, "val": 67}  # the training photos at 2 x the 67 px input, validation's at it
    for bad in ({"data.loader": "pil"}, {"data.preset": "paper"}):
        with pytest.raises(ConfigError, match="data.train_cache_scale.*add --train-cache-scale 1"):
            resolve_config(overrides={"data.train_cache_scale": 1.5, **bad})
    with pytest.raises(ConfigError, match="data.train_cache_scale"):
        resolve_config(overrides={"data.train_cache_scale": 0.5})


def test_typical_side_is_the_median_shorter_side_of_a_sample_and_passes_over_a_bad_file():
    from PIL import Image

    from alexnet.data.cache import SIDE_SAMPLE, typical_side
    from alexnet.errors import DataError

    class Photos:
        def __init__(self, sides):
            self.sides = sides

        def __len__(self):
            return len(self.sides)

        def load_pil(self, i):
            if self.sides[i] is None:
                raise DataError(f"photo {i}: cannot decode the image")
            return Image.new("RGB", (self.sides[i] + 50, self.sides[i]))  # landscape: the shorter side is the height

    assert typical_side(Photos([200] * 100)) == 200
    assert typical_side(Photos([32, 500, 500, None, 64])) == 500  # the median of the four that decode
    assert typical_side(Photos([])) is None and typical_side(Photos([None])) is None
    assert typical_side(Photos(list(range(1, 1001)))) in range(400, 600) and SIDE_SAMPLE < 1000  # spread, a sample


def test_a_larger_training_cache_without_crops_is_squashed_once_and_gives_the_same_batches():
    from alexnet.runtime.distributed import DistInfo
    from alexnet.training.batches import BatchPlan, TrainBatches

    def source(crop_scale):
        g = torch.Generator()
        augment = BatchAugment("seed", 48, train=True, augment=False, crop_scale=crop_scale, generator=g)
        images = torch.randint(0, 256, (20, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        plan = BatchPlan(8, seed=3, info=DistInfo(rank=0, world_size=1, local_rank=0), device=torch.device("cpu"))
        return TrainBatches(images, torch.arange(20) % 2, augment, g, plan)

    def epoch(s):
        return [x.clone() for _, x, _, _ in s.batches(0, 0)]

    per_batch, once = source(0.0), source(0.0)
    once.fit_images_to_input()
    assert once.images.shape[-1] == 48 and per_batch.images.shape[-1] == 96
    assert all(torch.equal(a, b) for a, b in zip(epoch(per_batch), epoch(once), strict=True))
    crops = source(0.35)
    crops.fit_images_to_input()  # crops are cut from the larger photos: they stay
    assert crops.images.shape[-1] == 96


def test_the_training_cache_grows_with_its_scale_up_to_the_papers_256_px():
    from alexnet.training.batches import MAX_TRAIN_CACHE_SIDE, train_stored_size

    twice = resolve_config(overrides={"data.train_cache_scale": 2.0})
    assert train_stored_size(twice, "seed", 96) == 192
    assert train_stored_size(twice, "seed", 160) == MAX_TRAIN_CACHE_SIDE == 256
    assert train_stored_size(twice, "seed", 300) is None  # never beyond 256 px, nor below the input itself
    assert train_stored_size(twice, "seed", 96, photo_side=200) == 192
    assert train_stored_size(twice, "seed", 96, photo_side=150) == 150  # the photos' own side: no enlarging
    assert train_stored_size(twice, "seed", 96, photo_side=32) is None  # CIFAR's 32 px photos: the input's 96 px
    assert train_stored_size(resolve_config(), "seed", 96) is None  # 1x: the cache's own size


@pytest.mark.parametrize("overrides, message", [
    ({"data.crop_scale": 1.5}, "data.crop_scale"),
    ({"data.crop_scale": 0.3, "data.loader": "pil"}, "not with --loader pil"),
    ({"data.crop_scale": 0.3, "data.augment": False}, "not with --loader pil or --no-augment"),
    ({"data.tta": "rotate"}, "data.tta"),
    ({"optim.ema_decay": 1.0}, "optim.ema_decay"),
])
def test_refused_settings_name_their_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config(overrides=overrides)


def test_weight_average_follows_the_formula_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(model, decay=0.9)
    assert ema.current_decay() == pytest.approx(0.1)  # warm-up: (1 + 0) / (10 + 0)
    ema.updates = 1000  # past the warm-up: the decay asked for
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 7
    ema.update(model)
    after, now = ema.module.state_dict(), model.state_dict()
    assert torch.allclose(after["0.weight"], 0.9 * before["0.weight"] + 0.1 * now["0.weight"])
    assert torch.allclose(after["1.running_var"], now["1.running_var"])  # equal before: stays equal
    assert int(after["1.num_batches_tracked"]) == 7
    assert not any(p.requires_grad for p in ema.module.parameters())


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("pets"))


def test_a_run_with_ema_and_flip_tta_validates_both_and_keeps_the_better_as_best(pets, tmp_path):
    cfg = tiny_config(pets, tmp_path / "run", **{"run.epochs": 1, "optim.ema_decay": 0.5, "data.tta": "flip",
                                                  "data.augment": True, "data.crop_scale": 0.5})
    fit(cfg, progress=False)
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert row["ema_val_top1"] != ""
    raw, ema = float(row["val_top1"]), float(row["ema_val_top1"])
    last = load_raw(tmp_path / "run" / "checkpoints" / "last.pt")
    best = load_raw(tmp_path / "run" / "checkpoints" / "best.pt")
    keep = last["train_state"]["ema"] if ema > raw else last["model"]
    assert all(torch.equal(best["model"][k], keep[k]) for k in keep)
    assert not all(torch.equal(last["model"][k], last["train_state"]["ema"][k]) for k in keep)
    assert "(moving average " in (tmp_path / "run" / "log.txt").read_text()
    # eval takes the run's own TTA by default, and so reproduces validation's figure for last.pt
    run = evaluate_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert "flip TTA" in run.description and run.result.top1 == pytest.approx(raw)
    plain = evaluate_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", options=EvalOptions(tta="none"))
    assert "flip TTA" not in plain.description
    # predict too: by default each image's probabilities averaged with its mirror's, as the run validated
    from alexnet.predict import predict_files

    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    files = [str(p) for p in sorted((pets / "val").rglob("*.*"))]
    default, flip, none = (predict_files(ckpt, files, top_k=1, tta=t) for t in (None, "flip", "none"))
    assert [r.top for r in default] == [r.top for r in flip] != [r.top for r in none]


def test_a_resumed_run_continues_the_same_average(pets, tmp_path):
    extra = {"optim.ema_decay": 0.9, "run.deterministic": True}
    fit(tiny_config(pets, tmp_path / "whole", **extra, **{"run.epochs": 2}), progress=False)
    fit(tiny_config(pets, tmp_path / "cut", **extra, **{"run.epochs": 1}), progress=False)
    fit(resume_config(tmp_path / "cut", overrides={"run.epochs": 2}), resume=tmp_path / "cut", progress=False)
    whole = load_raw(tmp_path / "whole" / "checkpoints" / "last.pt")["train_state"]["ema"]
    cut = load_raw(tmp_path / "cut" / "checkpoints" / "last.pt")["train_state"]["ema"]
    assert all(torch.equal(whole[k], cut[k]) for k in whole)


def test_a_checkpoint_whose_average_does_not_fit_the_model_is_refused(pets, tmp_path):
    fit(tiny_config(pets, tmp_path / "run", **{"run.epochs": 1, "optim.ema_decay": 0.9}), progress=False)
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    raw = load_raw(path)
    key = next(iter(raw["train_state"]["ema"]))
    raw["train_state"]["ema"][key] = torch.zeros(3)
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="train_state.ema"):
        load_checkpoint(path)


def test_the_fast_recipe_leaves_its_regularisation_to_the_run_but_never_what_the_user_set():
    from alexnet.config.values import adapt_fields

    fast = resolve_config(recipe="fast", overrides={"data.source": "x"})
    assert set(adapt_fields(fast.run.adapt)) == {"data.image_size", "model.width_mult", "data.crop_scale",
                                                 "optim.label_smoothing", "optim.ema_decay", "data.tta"}
    mine = resolve_config(recipe="fast", overrides={"data.source": "x", "optim.ema_decay": 0.5, "data.augment": False,
                                                    "data.image_size": 128})
    assert set(adapt_fields(mine.run.adapt)) == {"model.width_mult", "optim.label_smoothing", "data.tta"}
    with pytest.raises(ConfigError, match="run.adapt"):
        resolve_config(overrides={"run.adapt": "model.dropout"})


def test_regularisation_grows_with_the_passes_each_image_gets():
    from alexnet.training.adapt import REGULARISATION, adapt, ema_decay

    fast = resolve_config(recipe="fast", overrides={"data.source": "x"})
    few, line = adapt(fast, epochs=REGULARISATION[1].min_epochs - 1, steps=100)
    assert (few.data.crop_scale, few.optim.ema_decay, few.data.tta) == (0.0, 0.0, "flip")
    assert "the band from 0 passes" in line
    many, line = adapt(fast, epochs=REGULARISATION[-1].min_epochs + 10, steps=5000)
    last = REGULARISATION[-1]
    assert (many.data.crop_scale, many.data.tta, many.optim.ema_decay > 0) == (last.crop_scale, last.tta, last.ema)
    assert "recipe chosen for this run" in line and 0.99 < ema_decay(5000) < 0.999
    kept, _ = adapt(resolve_config(recipe="fast", overrides={"data.source": "x", "data.tta": "none"}), 100, 5000)
    assert kept.data.tta == "none"  # the user's own


def test_a_fast_run_writes_its_choice_into_the_log_and_the_config(pets, tmp_path):
    from alexnet.training.adapt import REGULARISATION

    epochs = int(REGULARISATION[-1].min_epochs)
    cfg = resolve_config(recipe="fast", overrides={
        "data.source": str(pets), "data.image_size": 67, "model.width_mult": 0.125, "run.batch_size": 8,
        "run.epochs": epochs, "run.max_steps": 2, "run.output_dir": str(tmp_path / "run"), "run.device": "cpu"})
    result = fit(cfg, progress=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "recipe chosen for this run: crop_scale" in log
    import yaml

    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["crop_scale"] == REGULARISATION[-1].crop_scale and saved["data"]["tta"] == "flip"
    # what won at 40 epochs and at 2 minutes on dogs-vs-cats-4k (benchmarks/README.md): conv1 from the patches,
    # dropout 0.25, AdamW with decoupled weight decay 0.05
    assert "conv1 starts as the whitening filters" in log
    assert (saved["optim"]["opt"], saved["optim"]["weight_decay"], saved["model"]["dropout"]) == ("adamw", 0.05, 0.25)
    saved_state = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["train_state"]
    groups = saved_state["optimizer"]["param_groups"]
    assert max(g["weight_decay"] for g in groups) == 0.05 and all(g["decoupled_weight_decay"] for g in groups)


def test_the_budget_plans_the_validation_passes_a_moving_average_and_flip_tta_cost():
    from alexnet.training.budget import epoch_end_estimate, plan

    one = plan(100.0, 0.0, 0.01, 10, epoch_end_estimate(1000, 10, 0.004), val_every=1)
    four = plan(100.0, 0.0, 0.01, 10, epoch_end_estimate(1000, 10, 0.004, eval_passes=4), val_every=1)
    assert four.eval_s == pytest.approx(4 * one.eval_s) and four.steps < one.steps


def test_the_largest_rung_that_still_gives_enough_passes_is_taken():
    from alexnet.training.rungs import MIN_PASSES, RUNGS, TRAIN_SHARE, pick_rung

    asked = []

    def step_s(size, width):  # a step costs in proportion to pixels x width: rung 3 is the last with enough passes
        asked.append((size, width))
        return size * size * width / (RUNGS[2][0] ** 2 * RUNGS[2][1])

    enough = MIN_PASSES * 1.01 * 100 / (TRAIN_SHARE * 64)  # seconds that give rung 3 (step 1 s) MIN_PASSES passes
    chosen, seen = pick_rung(step_s, enough, batch_size=64, train_images=100)
    assert chosen == RUNGS[2] and asked == list(RUNGS[:4]) and len(seen) == 4  # stops at the first that falls short
    assert pick_rung(lambda s, w: 1e9, 10.0, 64, 100)[0] == RUNGS[0]  # none gives enough: the cheapest


def test_a_budgeted_fast_run_says_which_size_and_width_it_chose_and_records_them(pets, tmp_path, monkeypatch):
    from alexnet.data import sources
    from alexnet.training import rungs

    monkeypatch.setattr(rungs, "RUNGS", ((67, 0.125), (75, 0.125)))  # small rungs: the test's time is the budget's
    scans = []
    scan = sources.scan_folder
    monkeypatch.setattr(sources, "scan_folder", lambda *a, **k: scans.append(a) or scan(*a, **k))
    cfg = resolve_config(recipe="fast", overrides={
        "data.source": str(pets), "run.batch_size": 8, "run.time_budget": "20s",
        "run.output_dir": str(tmp_path / "run"), "run.device": "cpu"})
    fit(cfg, progress=False)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "input size and width chosen for the budget" in log and "recipe chosen for this run" in log
    assert len(scans) == 1  # the rung's size re-bundles the scan: the folder is not walked and verified again
    import yaml

    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (saved["data"]["image_size"], saved["model"]["width_mult"]) in rungs.RUNGS


def test_whitening_filters_whiten_the_patches_they_came_from():
    from alexnet.training.whiten import patch_covariance, whitening_filters

    g = torch.Generator().manual_seed(0)
    mix = torch.randn(12, 12, generator=g)  # correlated pixels: patches of 2 x 2 x 3 = 12 values
    patches = torch.randn(5000, 12, generator=g) @ mix
    images = patches.view(5000, 3, 2, 2).permute(0, 1, 2, 3).reshape(5000, 12, 1).transpose(1, 2)
    images = torch.nn.functional.fold(images.transpose(1, 2), output_size=(2, 2), kernel_size=2)  # (N, 3, 2, 2)
    cov = patch_covariance(images, kernel=2, stride=2)
    w = whitening_filters(cov, 24, (3, 2, 2)).view(24, 12).double()
    assert torch.allclose(w[1::2], -w[0::2])  # each filter followed by its negative
    responses = (images.reshape(5000, 12).double() - images.reshape(5000, 12).double().mean(0)) @ w[0::2].T
    assert torch.allclose(responses.T.cov(), torch.eye(12, dtype=torch.float64), atol=0.05)  # unit, uncorrelated


def test_whitening_unfolds_only_the_images_its_patch_budget_needs():
    from alexnet.models import build_model
    from alexnet.training import whiten

    model = build_model("alexnet-bn", width_mult=0.25, image_size=96)
    images = torch.randint(0, 256, (3000, 3, 96, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    line = whiten.whiten_conv1(model, images, lambda x: (x.float() / 255 - 0.5) / 0.25)
    per_image = ((96 - 11) // 4 + 1) ** 2  # conv1's 22 x 22 positions
    assert f"from {-(-whiten.MAX_PATCHES // per_image)} images" in line  # 414, not all 3000 (nor MAX_IMAGES)
    w = model.conv1.weight.detach()
    assert torch.isfinite(w).all() and torch.allclose(w[1::2], -w[0::2])


def test_a_run_with_conv1_from_patches_starts_from_them(pets, tmp_path):
    cfg = tiny_config(pets, tmp_path / "run", **{"run.epochs": 1, "run.max_steps": 1, "model.conv1_init": "patches"})
    fit(cfg, progress=False)
    assert "conv1 starts as the whitening filters" in (tmp_path / "run" / "log.txt").read_text()
    with pytest.raises(ConfigError, match=r"model.conv1_init.*add --conv1-init random"):
        resolve_config(overrides={"model.conv1_init": "patches", "data.loader": "pil"})
    # the recipes that start conv1 from the patches (fast, cifar10-fast) run with the PIL loader when told so; the
    # fast recipe's larger training cache too, and the refusal names every flag that takes
    with pytest.raises(ConfigError, match=r"train_cache_scale.*add --conv1-init random --train-cache-scale 1"):
        resolve_config(recipe="fast", overrides={"data.source": "x", "data.loader": "pil"})
    pil = resolve_config(recipe="fast", overrides={"data.source": "x", "data.loader": "pil", "model.conv1_init": "random",
                                                   "data.train_cache_scale": 1.0})
    assert (pil.data.loader, pil.model.conv1_init) == ("pil", "random")


def test_a_large_train_validation_gap_at_the_end_is_explained():
    from alexnet.training.report import gap_line

    row = {"train_acc": 1.0, "val_top1": 0.75}
    assert "25 points above validation" in gap_line(row, augmented=False) and "--crop-scale" in gap_line(row, False)
    assert "longer budget" in gap_line(row, augmented=True)
    assert gap_line({**row, "ema_val_top1": 0.95}, False) is None  # best.pt's weights: the moving average's
    assert gap_line({"train_acc": 0.84, "val_top1": 0.83}, True) is None
