"""Evaluation: counts and rates, the note's Accuracy line, 10-crop averaging, eval of a real checkpoint, refusals."""

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from alexnet.config import TTA_MODES
from alexnet.errors import CheckpointError, ConfigError
from alexnet.evaluate import (
    EvalOptions,
    EvalResult,
    MetricTotals,
    evaluate,
    evaluate_checkpoint,
    flip_views,
    write_confusion_csv,
)
from data_factories import make_folder


def test_counts_rates_and_per_class():
    totals = MetricTotals(num_classes=3, device=torch.device("cpu"))
    logits = torch.tensor([[5.0, 1, 0], [0, 5, 1], [0, 5, 1], [5, 0, 1]])
    labels = torch.tensor([0, 1, 2, 2])
    totals.update(logits, labels)
    result = totals.result(["a", "b", "c"], reduce=False)
    assert (result.correct, result.correct5, result.total) == (2, 4, 4)  # 3 classes: top-5 is top-3
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
    per_class = {row["class"]: row for row in result.per_class()}
    assert per_class["a"]["precision"] == 0.5 and per_class["a"]["recall"] == 1.0
    assert per_class["c"]["precision"] is None and per_class["c"]["recall"] == 0.0 and per_class["c"]["support"] == 2
    assert result.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item())


@pytest.mark.parametrize(("classes", "shown", "in_json"), [(5, "n/a (5 classes)", None), (6, "0.9000", 0.9)])
def test_top5_is_reported_only_with_more_than_5_classes(classes, shown, in_json):
    result = EvalResult(loss_sum=1.0, correct=8, correct5=9, total=10, confusion=np.zeros((classes, classes)),
                        class_names=[f"c{i}" for i in range(classes)])
    assert f"top-1 0.8000  top-5 {shown}  loss 0.1000  (10 images)" in result.report()
    assert result.to_json()["top5"] == in_json and "top5" in result.to_json()
    assert result.top5 == 0.9  # the count itself stays, for metrics.csv and ablate (which say n/a themselves)


def test_accuracy_line_is_the_notes_format():
    result = EvalResult(loss_sum=0.0, correct=1234, correct5=1500, total=1500, confusion=np.zeros((2, 2)),
                        class_names=["cat", "dog"])
    assert result.accuracy_line() == "Accuracy: 1234/1500 (82%)"
    assert result.report().splitlines()[0] == "Accuracy: 1234/1500 (82%)"


class MeanSign(torch.nn.Module):
    """Class 1 when the image's mean is positive: a model whose answer per view is easy to predict."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([-m, m], dim=1) * 10


def test_views_are_averaged_in_probability():
    # One strongly negative view against nine mildly positive ones: the average probability says class 1.
    views = torch.full((1, 10, 3, 4, 4), 0.2)
    views[0, 0] = -0.9
    result = evaluate(MeanSign(), [(views, torch.tensor([1]))], ["neg", "pos"], torch.device("cpu"), reduce=False)
    assert result.correct == 1
    single = evaluate(MeanSign(), [(views[:, 0], torch.tensor([1]))], ["neg", "pos"], torch.device("cpu"),
                      reduce=False)
    assert single.correct == 0


class LeftMean(torch.nn.Module):
    """Logits (10 * mean of the left half, 0): not mirror-symmetric, and easy to compute by hand."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        return torch.stack([10 * left, torch.zeros_like(left)], dim=1)


def test_flip_tta_averages_the_image_and_its_mirror_by_hand():
    # Image 0: left half 0.3, right half -0.1 (class 0); image 1: left 0.1, right -0.5 (class 0).
    images = torch.empty(2, 3, 4, 4)
    images[0, ..., :2], images[0, ..., 2:] = 0.3, -0.1
    images[1, ..., :2], images[1, ..., 2:] = 0.1, -0.5
    labels = torch.tensor([0, 0])
    cpu = torch.device("cpu")
    plain = evaluate(LeftMean(), [(images, labels)], ["a", "b"], cpu, reduce=False)
    flip = evaluate(LeftMean(), [(images, labels)], ["a", "b"], cpu, reduce=False, tta="flip")

    def p0(logit):  # softmax probability of class 0 for logits (logit, 0)
        return math.exp(logit) / (math.exp(logit) + 1)

    # The mirror of image 0 has -0.1 on the left, of image 1 -0.5: logits (-1, 0) and (-5, 0).
    averaged = [(p0(3.0) + p0(-1.0)) / 2, (p0(1.0) + p0(-5.0)) / 2]  # 0.611 and 0.369
    assert flip.loss_sum == pytest.approx(-math.log(averaged[0]) - math.log(averaged[1]), rel=1e-6)
    assert plain.loss_sum == pytest.approx(-math.log(p0(3.0)) - math.log(p0(1.0)), rel=1e-6)
    assert (plain.correct, flip.correct) == (2, 1)  # image 1's mirror votes for class 1 strongly enough
    assert flip.confusion.tolist() == [[1, 1], [0, 0]]
    assert torch.equal(flip_views(images)[:, 1], images.flip(-1)) and torch.equal(flip_views(images)[:, 0], images)


class Symmetric(torch.nn.Module):
    """A real (tiny) AlexNet made mirror-symmetric: f(x) = g(x) + g(mirror of x)."""

    def __init__(self):
        super().__init__()
        from alexnet.models import build_model

        torch.manual_seed(0)
        self.g = build_model("alexnet-bn", num_classes=3, image_size=67, width_mult=0.125).eval()

    def forward(self, x):
        return self.g(x) + self.g(x.flip(-1))


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model():
    torch.manual_seed(1)
    images, labels = torch.randn(6, 3, 67, 67), torch.tensor([0, 1, 2, 0, 1, 2])
    cpu, model = torch.device("cpu"), Symmetric()
    plain = evaluate(model, [(images, labels)], ["a", "b", "c"], cpu, reduce=False)
    flip = evaluate(model, [(images, labels)], ["a", "b", "c"], cpu, reduce=False, tta="flip")
    assert (flip.correct, flip.correct5, flip.total) == (plain.correct, plain.correct5, 6)
    assert flip.confusion.tolist() == plain.confusion.tolist()
    assert flip.loss_sum == pytest.approx(plain.loss_sum, rel=1e-5)
    asymmetric = evaluate(model.g, [(images, labels)], ["a", "b", "c"], cpu, reduce=False, tta="flip")
    assert asymmetric.loss_sum != pytest.approx(evaluate(model.g, [(images, labels)], ["a", "b", "c"], cpu,
                                                         reduce=False).loss_sum, rel=1e-5)


def test_flip_tta_refusals():
    views = torch.zeros(1, 10, 3, 4, 4)
    with pytest.raises(ConfigError, match="not with 10-crop"):
        evaluate(MeanSign(), [(views, torch.tensor([1]))], ["neg", "pos"], torch.device("cpu"), tta="flip")
    with pytest.raises(ConfigError, match="tta must be one of none, flip, got 'rotate'"):
        evaluate(MeanSign(), [], ["neg", "pos"], torch.device("cpu"), tta="rotate")
    with pytest.raises(ConfigError, match="^--tta flip and --ten-crop cannot be combined"):
        # refused before the checkpoint is read
        evaluate_checkpoint("no-such-run", options=EvalOptions(ten_crop=True, tta="flip"))
    assert TTA_MODES == ("none", "flip")


def test_flip_tta_on_a_trained_checkpoint(trained, tmp_path):
    data, run = trained
    out = evaluate_checkpoint(run, options=EvalOptions(tta="flip"), output_dir=tmp_path)
    assert out.result.total == 6 and "flip TTA" in out.description
    # The same loss computed another way: the mean of the two softmaxes, from the model's own forward.
    from alexnet.data import build_from_description, cache_split
    from alexnet.data.augment import BatchAugment
    from alexnet.store.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)
    val = cache_split(build_from_description(ckpt.data_description(), statistics=False), "val")
    x, model = BatchAugment.for_checkpoint(ckpt)(val.images), ckpt.build_model().eval()
    with torch.inference_mode():
        probs = (model(x).softmax(dim=1) + model(x.flip(-1)).softmax(dim=1)) / 2
    expected = -probs[torch.arange(6), val.labels].log().sum().item()
    assert out.result.loss_sum == pytest.approx(expected, rel=1e-6)
    assert out.result.correct == int((probs.argmax(dim=1) == val.labels).sum())
    plain = evaluate_checkpoint(run, output_dir=tmp_path)
    # Without the flip the loss differs (by 2e-4 here: the striped images are nearly mirror-symmetric), far outside
    # the tolerance above.
    assert abs(plain.result.loss_sum - expected) > 50 * 1e-6 * expected


@pytest.mark.slow
def test_eval_cli_refuses_tta_with_ten_crop(trained):
    _, run = trained
    result = subprocess.run([sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(run), "--ten-crop",
                             "--tta", "flip"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["alexnet eval: error: --tta flip and --ten-crop cannot be combined: "
                                                  "choose one (10-crop already averages mirrored crops)"]
    result = subprocess.run([sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(run), "--tta", "rotate"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2  # argparse's choices, from config.TTA_MODES
    assert result.stderr.strip().splitlines()[-1] == ("alexnet eval: error: argument --tta: invalid choice: 'rotate' "
                                                      "(choose from 'none', 'flip')")


def test_confusion_csv_layout(tmp_path):
    result = EvalResult(0.0, 3, 3, 4, np.array([[2, 1], [0, 1]]), ["cat", "dog"])
    with open(write_confusion_csv(result, tmp_path / "confusion.csv"), newline="") as f:
        assert list(csv.reader(f)) == [["true\\predicted", "cat", "dog"], ["cat", "2", "1"], ["dog", "0", "1"]]


def test_eval_a_trained_checkpoint_on_its_own_data(trained, tmp_path):
    data, run = trained
    out = evaluate_checkpoint(run, output_dir=tmp_path)
    # The same count computed another way: the checkpoint's model on its own validation split, batch by batch.
    from alexnet.data import build_from_description, cache_split
    from alexnet.data.augment import BatchAugment
    from alexnet.store.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)
    val = cache_split(build_from_description(ckpt.data_description(), statistics=False), "val")
    with torch.inference_mode():
        predicted = ckpt.build_model()(BatchAugment.for_checkpoint(ckpt)(val.images)).argmax(dim=1)
    assert out.result.total == 6 and out.result.correct == int((predicted == val.labels).sum())
    assert int(np.trace(out.result.confusion)) == out.result.correct and out.result.confusion.sum() == 6
    assert out.confusion_csv == tmp_path / "confusion.csv" and out.confusion_png.is_file()
    doc = out.result.to_json()
    assert {"top1", "top5", "correct", "total", "per_class", "confusion"} <= set(doc)
    assert doc["correct"] == out.result.correct and doc["top1"] == pytest.approx(out.result.correct / 6)
    # 2 classes: every image is in its top 5, so top-5 is not a result: n/a in the report, null in the JSON
    assert doc["top5"] is None and "  top-5 n/a (2 classes)  " in out.result.report()
    json.dumps(doc)  # plain types
    ten = evaluate_checkpoint(run, options=EvalOptions(ten_crop=True), output_dir=tmp_path)
    assert ten.result.total == 6 and "10-crop" in ten.description


def test_ten_crop_on_the_seed_preset_is_not_flip_tta(trained, tmp_path):
    # issue 26: seed squashes to S x S, so its five S x S crops were the whole image, and 10-crop equalled flip TTA
    from alexnet.data.transforms import ten_crop_size
    from alexnet.store.checkpoint import load_checkpoint

    _, run = trained
    p = load_checkpoint(run).preprocessing
    assert p.preset == "seed" and ten_crop_size(p.image_size) == 77 > p.image_size == 67
    ten = evaluate_checkpoint(run, options=EvalOptions(ten_crop=True), output_dir=tmp_path)
    flip = evaluate_checkpoint(run, options=EvalOptions(tta="flip"), output_dir=tmp_path)
    assert ten.result.total == flip.result.total == 6
    assert abs(ten.result.loss - flip.result.loss) > 1e-4  # not the same views
    assert "(6 images, 10-crop from 77 px)" in ten.description


def test_eval_on_a_plain_class_folder_uses_every_image(trained, tmp_path):
    # The note's TestNet.py points ImageFolder at val/ itself: class folders, no split of their own.
    data, run = trained
    out = evaluate_checkpoint(run, data=str(data / "val"), output_dir=tmp_path)
    assert out.result.total == 6 and f"on the whole of {data / 'val'} (6 images)" in out.description


def test_one_folder_evaluated_whole_and_as_the_val_split_keeps_two_caches(trained, tmp_path, caplog):
    # data/val is the run's val split and, with --data, a folder evaluated whole: each use keeps its own cache,
    # so alternating between them builds nothing after the first round (it rebuilt one cache on every call)
    import logging
    import os
    from pathlib import Path

    data, run = trained
    caches = Path(os.environ["ALEXNET_CACHE"]) / "uint8"

    def one_round():
        whole = evaluate_checkpoint(run, data=str(data / "val"), output_dir=tmp_path)
        split = evaluate_checkpoint(run, output_dir=tmp_path)
        assert whole.result.total == split.result.total == 6
        return {p.name: p.stat().st_mtime_ns for p in caches.iterdir() if p.suffix in (".u8", ".json")}

    first = one_round()
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        second = one_round()
    assert second == first  # no cache file written again
    assert not [r for r in caplog.records if "rebuilding" in r.getMessage()]


def test_eval_refuses_other_classes(trained, tmp_path):
    _, run = trained
    other = make_folder(tmp_path / "other", classes=("bird", "fish"), train=2, val=2)
    with pytest.raises(CheckpointError, match="cannot evaluate: class_names differs"):
        evaluate_checkpoint(run, data=str(other), output_dir=tmp_path)


@pytest.mark.slow
def test_eval_cli_json_and_one_line_errors(trained, tmp_path):
    _, run = trained
    result = subprocess.run([sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(run), "--json",
                             "--output-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["total"] == 6 and len(doc["confusion"]) == 2 and len(doc["per_class"]) == 2
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "alexnet", "eval", "--checkpoint", str(empty)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"alexnet eval: error: {empty}: empty file (0 bytes), not a checkpoint"]
