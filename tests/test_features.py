"""Feature vectors of a real tiny trained run: shapes, equality with a forward pass written out by hand, pooled conv
maps, labels, both file formats, bad layer names and unreadable images."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.errors import ConfigError, DataError
from alexnet.features import extract, extract_features, load_features, output_paths, save_features
from alexnet.store.checkpoint import load_checkpoint
from tiny_runs import run_cli


def _inputs(ckpt, files):
    """The checkpoint's eval transform applied here directly: (N, C, S, S)."""
    from alexnet.data.transforms import build_transform

    p = ckpt.preprocessing
    transform = build_transform(p.preset, p.image_size, False, p.mean, p.std, p.in_channels)
    tensors = []
    for f in files:
        with Image.open(f) as img:
            tensors.append(transform(img.convert("RGB")))
    return torch.stack(tensors)


def test_fc7_of_a_class_folder_equals_a_forward_by_hand(trained):
    data, run = trained
    ckpt = load_checkpoint(run)
    fs = extract_features(run, [str(data)], "fc7", batch_size=5)  # batches of 5: the last one is short
    model = ckpt.build_model().eval()
    width = model.layer("fc7").out_features
    assert fs.vectors.shape == (22, width) and fs.vectors.dtype == torch.float32  # 2 classes x (8 train + 3 val)
    assert len(fs.files) == 22 and fs.skipped == [] and fs.class_names == ["cat", "dog"]
    assert fs.labels == [f.split("/")[-2] for f in fs.files] and fs.labels.count("cat") == 11
    assert fs.files == sorted(fs.files) and fs.files[0].endswith("train/cat/cat.0.jpg")
    # features -> flatten -> classifier up to fc7 (drop6, fc6, relu6, drop7, fc7), module by module
    fc7_at = list(model.classifier).index(model.layer("fc7"))
    with torch.inference_mode():
        x = model.flatten(model.avgpool(model.features(_inputs(ckpt, fs.files))))
        expected = model.classifier[: fc7_at + 1](x)
    torch.testing.assert_close(fs.vectors, expected, rtol=1e-4, atol=1e-5)
    # relu7 is fc7 through the ReLU; fc8 is the logits of the model's own forward
    relu7 = extract_features(ckpt, [str(data)], "relu7").vectors
    torch.testing.assert_close(relu7, expected.clamp_min(0), rtol=1e-4, atol=1e-5)
    assert (expected < 0).any()  # so that the line above tells fc7 and relu7 apart
    vectors, files = extract(ckpt, [str(data)], "fc8")
    with torch.inference_mode():
        torch.testing.assert_close(vectors, model(_inputs(ckpt, files)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", ["conv1", "pool2", "conv5"])
def test_spatial_maps_are_averaged_per_channel(trained, layer):
    data, run = trained
    ckpt = load_checkpoint(run)
    files = sorted(str(p) for p in (data / "val" / "dog").iterdir())
    fs = extract_features(ckpt, files, layer)
    model = ckpt.build_model().eval()
    names = [name for name, _ in model.named_layers()]
    with torch.inference_mode():
        maps = model.features[: names.index(layer) + 1](_inputs(ckpt, files))  # (N, C, H, W)
    assert maps.dim() == 4 and maps.shape[-1] > 1
    assert fs.vectors.shape == (3, maps.shape[1])
    torch.testing.assert_close(fs.vectors, maps.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)
    assert fs.labels == [None, None, None] and fs.class_names is None  # files named one by one: no classes


def test_unreadable_image_is_skipped_and_listed(trained, tmp_path):
    data, run = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = str(data / "val" / "cat" / "cat.0.jpg")
    fs = extract_features(run, [str(bad), good, str(empty), str(tmp_path / "missing.jpg")], "fc6")
    assert fs.files == [good] and fs.vectors.shape[0] == 1
    skipped = dict(fs.skipped)
    assert set(skipped) == {str(bad), str(empty), str(tmp_path / "missing.jpg")}
    assert skipped[str(tmp_path / "missing.jpg")] == "no such file" and all(skipped.values())
    with pytest.raises(DataError, match="no readable images"):
        extract_features(run, [str(bad)], "fc7")
    # Inside a class folder too: the class folder's other files keep their labels.
    import shutil

    folder = shutil.copytree(data / "val", tmp_path / "val")
    shutil.copyfile(bad, folder / "dog" / "dog.9.jpg")
    fs = extract_features(run, [str(folder)], "fc7")
    assert fs.skipped == [(str(folder / "dog" / "dog.9.jpg"), skipped[str(bad)])]
    assert len(fs.files) == 6 and fs.labels == ["cat"] * 3 + ["dog"] * 3


def test_bad_layer_name_lists_the_layers(trained):
    data, run = trained
    with pytest.raises(ConfigError) as e:
        extract_features(run, [str(data)], "fc9")
    message = str(e.value)
    assert "\n" not in message and "no layer 'fc9'" in message and "best.pt" in message
    assert "conv1, bn1, relu1, pool1" in message and message.endswith("fc7, relu7, fc8")


def test_both_formats_and_the_json_beside_them(trained, tmp_path):
    data, run = trained
    fs = extract_features(run, [str(data / "val")], "fc7")  # val/ itself: class folders, labels cat and dog
    assert fs.labels == ["cat"] * 3 + ["dog"] * 3
    st_path, st_json = save_features(fs, tmp_path / "f.safetensors")
    npy_path, npy_json = save_features(fs, tmp_path / "g.npy")
    assert (st_json, npy_json) == (tmp_path / "f.json", tmp_path / "g.json")
    from safetensors import safe_open

    with safe_open(st_path, framework="pt") as f:
        assert list(f.keys()) == ["features"] and f.metadata()["layer"] == "fc7"
        torch.testing.assert_close(f.get_tensor("features"), fs.vectors, rtol=0, atol=0)
    assert np.array_equal(np.load(npy_path, allow_pickle=False), fs.vectors.numpy())
    assert torch.equal(load_features(npy_path), load_features(st_path))
    for path, doc_path, fmt in ((st_path, st_json, "safetensors"), (npy_path, npy_json, "npy")):
        doc = json.loads(doc_path.read_text())
        assert doc["features_file"] == path.name and doc["format"] == fmt
        assert doc["files"] == fs.files and doc["labels"] == fs.labels and doc["class_names"] == ["cat", "dog"]
        assert doc["layer"] == "fc7" and doc["shape"] == list(fs.vectors.shape) and doc["skipped"] == []
        assert doc["checkpoint"].endswith("best.pt")


def test_output_names_and_formats():
    assert output_paths(None, None)[::2] == (output_paths("features.safetensors", None)[0], "safetensors")
    assert output_paths("x/v.npy", None)[2] == "npy" and output_paths("x/v.bin", "npy")[1].name == "v.json"
    with pytest.raises(ConfigError, match="the name says npy but --format is safetensors"):
        output_paths("v.npy", "safetensors")
    with pytest.raises(ConfigError, match="^format must be one of safetensors, npy, got 'csv'$"):
        output_paths("v.csv", "csv")
    with pytest.raises(ConfigError, match="cannot be the JSON"):
        output_paths("v.json", None)


@pytest.mark.slow
def test_features_cli(trained, tmp_path):
    data, run = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    out = tmp_path / "out" / "v.npy"
    ok = run_cli("features", "--checkpoint", str(run), str(data / "val" / "cat"), str(bad), "--layer", "pool5",
                 "--output", str(out))
    assert ok.returncode == 1, ok.stderr  # a file was not read; the others were still written
    lines = ok.stdout.splitlines()
    assert lines[0] == f"skipped {bad}: not an image file (first bytes b'junk')"
    assert lines[1].startswith("3 images x ") and lines[1].endswith(f"{out}, {out.with_suffix('.json')}")
    assert np.load(out).shape[0] == 3 and json.loads(out.with_suffix(".json").read_text())["layer"] == "pool5"
    wrong = run_cli("features", "--checkpoint", str(run), str(data), "--layer", "fc9", "--output", str(out))
    assert wrong.returncode == 2 and wrong.stdout == ""
    [line] = wrong.stderr.strip().splitlines()
    assert line.startswith("alexnet features: error: ") and "no layer 'fc9'" in line and "fc6" in line


def test_an_unreadable_file_makes_the_exit_status_1_and_the_others_are_still_written(trained, tmp_path, capsys):
    # One rule with predict: the readable images are written, the broken one listed, and the status says so.
    from alexnet import cli
    from data_factories import truncated_jpeg

    data, run = trained
    cut = truncated_jpeg(tmp_path / "cut.jpg")
    out = tmp_path / "v.npy"
    assert cli.main(["features", "--checkpoint", str(run), str(data / "val" / "cat"), str(cut), "--output",
                     str(out), "--device", "cpu"]) == 1
    printed = capsys.readouterr().out
    assert f"skipped {cut}: " in printed and "3 images x " in printed
    assert np.load(out).shape[0] == 3
    assert cli.main(["features", "--checkpoint", str(run), str(data / "val" / "cat"), "--output", str(out),
                     "--device", "cpu"]) == 0
