"""build_datasets: every source becomes train/val datasets with class names, in the model's channel count."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import data_factories as f
from alexnet.data import DataBundle, at_image_size, build_datasets, build_from_description
from alexnet.data.synthetic import SHAPES, ShapesConfig, make_shapes
from alexnet.errors import ConfigError, DataError

TINY_SHAPES = ShapesConfig(image_size=32, train_per_class=4, val_per_class=2, seed=3)


def check_bundle(bundle: DataBundle, size: int, channels: int) -> None:
    x, y = bundle.train[0]
    assert x.shape == (channels, size, size) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert isinstance(y, int) and y == bundle.train.targets[0] and 0 <= y < bundle.num_classes
    xv, _ = bundle.val[0]
    assert xv.shape == (channels, size, size)
    assert len(bundle.mean) == len(bundle.std) == channels
    d = bundle.describe()
    assert d["class_names"] == bundle.class_names and d["in_channels"] == channels and d["image_size"] == size
    import json

    json.dumps(d)  # plain types only


def read(*parts: str) -> bytes:
    with open(os.path.join(*parts), "rb") as fh:
        return fh.read()


def test_builtin_shapes_is_generated_once_deterministically(tmp_path):
    a = make_shapes(TINY_SHAPES, str(tmp_path / "a"))
    b = make_shapes(TINY_SHAPES, str(tmp_path / "b"))
    files = sorted(os.path.relpath(os.path.join(d, n), a) for d, _, ns in os.walk(a) for n in ns if n.endswith(".jpg"))
    assert len(files) == 6 * (4 + 2)
    for rel in files:
        assert read(a, rel) == read(b, rel)
    other = make_shapes(ShapesConfig(image_size=32, train_per_class=4, val_per_class=2, seed=4), str(tmp_path / "c"))
    assert read(a, files[0]) != read(other, files[0])
    mtime = os.path.getmtime(os.path.join(a, files[0]))
    assert make_shapes(TINY_SHAPES, str(tmp_path / "a")) == a  # complete folder: reused, not rewritten
    assert os.path.getmtime(os.path.join(a, files[0])) == mtime


def test_builtin_shapes_default_location_is_under_alexnet_cache():
    bundle = build_datasets("shapes", image_size=24, shapes=TINY_SHAPES)
    assert bundle.kind == "shapes" and bundle.class_names == sorted(SHAPES)
    assert bundle.train.samples[0][0].startswith(os.environ["ALEXNET_CACHE"])
    assert len(bundle.train) == 24 and len(bundle.val) == 12
    check_bundle(bundle, 24, 3)
    again = build_from_description(bundle.describe())  # the checkpoint's description regenerates the same files
    assert again.train.samples == bundle.train.samples
    grey = build_datasets(None, image_size=24, in_channels=1, preset="d2l", shapes=TINY_SHAPES)
    check_bundle(grey, 24, 1)
    assert grey.mean == (0.0,) and grey.std == (1.0,)


def test_folder_source_and_rebuild_from_description(tmp_path):
    root = f.image_folder(tmp_path / "pets", ("dog", "cat"), per_class=5, size=(40, 30))
    bundle = build_datasets(str(root), image_size=16, preset="seed", val_split=0.2, seed=5)
    check_bundle(bundle, 16, 3)
    assert bundle.class_names == ["cat", "dog"] and len(bundle.val) == 2
    again = build_from_description(bundle.describe())
    assert again.val.samples == bundle.val.samples and again.class_names == bundle.class_names
    os.rename(root / "dog", root / "wolf")
    with pytest.raises(DataError, match=r"classes \['cat', 'wolf'\] differ from the checkpoint's \['cat', 'dog'\]"):
        build_from_description(bundle.describe())


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_source(tmp_path, gz):
    folder = f.write_mnist_folder(tmp_path / "mnist", n_train=30, n_test=10, gz=gz)
    bundle = build_datasets(str(folder), image_size=20, in_channels=1, preset="d2l")
    assert bundle.kind == "idx" and bundle.class_names == [str(i) for i in range(10)]
    assert len(bundle.train) == 30 and len(bundle.val) == 10
    check_bundle(bundle, 20, 1)
    rgb = build_datasets(str(folder), image_size=20, in_channels=3)  # grey IDX to an RGB model: explicit
    x, _ = rgb.train[0]
    assert x.shape == (3, 20, 20)
    assert torch.allclose(x[0] * rgb.std[0] + rgb.mean[0], x[1] * rgb.std[1] + rgb.mean[1], atol=1e-5)


def test_idx_train_only_is_split(tmp_path):
    images, labels = f.mnist_like(40)
    f.write_idx(tmp_path / "train-images-idx3-ubyte", images)
    f.write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    bundle = build_datasets(str(tmp_path), image_size=16, in_channels=1, val_split=0.25)
    assert len(bundle.train) == 30 and len(bundle.val) == 10
    assert sorted(bundle.val.targets) == list(range(10))  # stratified: one of each digit


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw")])
def test_torchvision_mnist_layout_offline(tmp_path, name, folder):
    f.write_mnist_folder(tmp_path / folder, n_train=20, n_test=10, gz=True)
    bundle = build_datasets(name, image_size=28, in_channels=1, preset="d2l", root=str(tmp_path))
    assert bundle.kind == name and len(bundle.train) == 20 and len(bundle.val) == 10
    assert bundle.class_names[9] == ("9" if name == "mnist" else "Ankle boot")
    check_bundle(bundle, 28, 1)


def test_torchvision_cifar10_layout_offline(tmp_path):
    f.write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=10)
    bundle = build_datasets("cifar10", image_size=32, root=str(tmp_path))
    assert len(bundle.train) == 50 and len(bundle.val) == 10 and bundle.class_names[0] == "airplane"
    check_bundle(bundle, 32, 3)
    grey = build_datasets("cifar10", image_size=32, in_channels=1, root=str(tmp_path))
    check_bundle(grey, 32, 1)


def test_cifar10_pickle_that_runs_code_is_refused(tmp_path):
    import pickle

    folder = f.write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=10)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(folder / "data_batch_3", "wb") as fh:
        pickle.dump({"data": Evil(), "labels": [0]}, fh, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_3: not a CIFAR-10 batch .*refusing to load posix.system"):
        build_datasets("cifar10", image_size=32, root=str(tmp_path))
    assert not (tmp_path / "pwned").exists()


def test_cifar10_bad_labels_and_missing_files(tmp_path):
    import pickle

    folder = f.write_cifar10_folder(tmp_path / "cifar-10-batches-py", n_per_batch=4)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 10]}, fh, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: expected labels in 0..9, found 0..10"):
        build_datasets("cifar10", image_size=32, root=str(tmp_path))
    os.remove(folder / "data_batch_2")
    with pytest.raises(DataError, match=r"incomplete CIFAR-10, missing data_batch_2"):
        build_datasets("cifar10", image_size=32, root=str(tmp_path))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_torchvision_dataset_says_how_to_get_it(tmp_path, name):
    with pytest.raises(DataError, match=rf"{name}: not found in .*; pass --download"):
        build_datasets(name, image_size=32, root=str(tmp_path))


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="no such folder, and not a built-in dataset"):
        build_datasets(str(tmp_path / "nothing"))
    file = f.write_jpeg(tmp_path / "one.jpg")
    with pytest.raises(DataError, match="not a folder"):
        build_datasets(str(file))
    with pytest.raises(ConfigError, match="preset must be one of seed, d2l, paper"):
        build_datasets(None, preset="fancy")
    with pytest.raises(ConfigError, match="in_channels must be 1 or 3"):
        build_datasets(None, in_channels=2)
    with pytest.raises(ConfigError, match=r"val_split must be in \[0, 1\)"):
        build_datasets(None, val_split=1.0)


def test_paper_preset_uses_the_training_sets_own_statistics(tmp_path):
    # Red-ish images: the mean and the first eigenvector must come from these files, not from ImageNet.
    root = tmp_path / "red"
    for c in ("a", "b"):
        for i in range(6):
            rng = np.random.default_rng(i)
            arr = np.zeros((20, 20, 3), np.uint8)
            arr[..., 0] = rng.integers(0, 256, (20, 20))
            f.write_png(root / c / f"{i}.png", f.Image.fromarray(arr))
    bundle = build_datasets(str(root), image_size=16, preset="paper")
    assert bundle.stats_from.startswith("training set")
    assert bundle.mean[1] < 0.01 and bundle.mean[2] < 0.01 and 0.3 < bundle.mean[0] < 0.7
    eigval, eigvec = bundle.pca
    assert eigval[0] > 0.05 and abs(abs(eigvec[0][0]) - 1) < 1e-6  # all variance along red
    fallback = build_datasets(str(root), image_size=16, preset="paper", statistics=False)
    assert fallback.stats_from == "ImageNet" and fallback.pca[0][0] == pytest.approx(0.2175)

    # the paper's pixel scale: the same mean subtracted, values left on 0-255 (what its N(0, 0.01) init assumes)
    raw = build_datasets(str(root), image_size=16, preset="paper", pixel_scale="255")
    assert raw.mean == bundle.mean and raw.std == (1 / 255,) * 3 and "0-255" in raw.stats_from
    (x, _), (unit, _) = raw.val[0], bundle.val[0]
    assert 10 < float(x[0].std()) < 255 and 0.2 < float(unit[0].std()) < 3  # the same image, 255 * std apart
    assert np.allclose(x[0].numpy(), unit[0].numpy() * bundle.std[0] * 255, atol=1e-3)


def test_at_image_size_gives_the_same_data_at_another_size_without_scanning_again(tmp_path, monkeypatch):
    """A time budget's rung chooses the input size after the scan: the bundle is resized, not read again."""
    from alexnet.data import sources

    root = f.image_folder(tmp_path, ("cat", "dog"), per_class=3)
    bundle = build_datasets(root, image_size=64, in_channels=3, preset="seed", val_split=0.34)
    files, mean, std = list(bundle.train.samples), bundle.mean, bundle.std
    monkeypatch.setattr(sources, "scan_folder", lambda *a, **k: pytest.fail("scanned again"))
    resized = at_image_size(bundle, 32)
    check_bundle(resized, 32, 3)
    assert resized.train.samples == files and (resized.mean, resized.std) == (mean, std)
    assert resized.describe()["image_size"] == 32
    with pytest.raises(ConfigError):
        at_image_size(resized, 0)
