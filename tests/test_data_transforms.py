"""Presets on the PIL path, the uint8 cache, whole-batch augmentation and 10-crop: shapes, equivalence, determinism."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

import data_factories as f
from alexnet.data import BatchAugment, build_datasets, build_transform, cache_split, ten_crop
from alexnet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PCAColourNoise,
    pixel_statistics,
    resize_size,
    ten_crop_size,
)
from alexnet.errors import ConfigError


@pytest.mark.parametrize("preset", ["seed", "d2l", "paper"])
@pytest.mark.parametrize("size", [9, 17, 227])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_preset_works_at_any_size(preset, size, channels):
    img = f.noise((50, 37), mode="RGB" if channels == 3 else "L")
    for train in (True, False):
        x = build_transform(preset, size, train, in_channels=channels)(img)
        assert x.shape == (channels, size, size) and torch.isfinite(x).all()
    crops = build_transform(preset, size, False, in_channels=channels, ten_crop=True)(img)
    assert crops.shape == (10, channels, size, size)


def test_seed_preset_is_the_notes_transform():
    from torchvision import transforms as T

    img = f.noise((61, 45))
    note = T.Compose([T.Resize(size=(227, 227)), T.ToTensor(), T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])
    assert torch.equal(build_transform("seed", 227, train=True)(img), note(img))
    assert torch.equal(build_transform("seed", 227, train=False)(img), note(img))


def test_d2l_preset_is_resize_and_to_tensor_only():
    from torchvision import transforms as T

    img = f.noise((28, 28), mode="L")
    x = build_transform("d2l", 224, train=True, in_channels=1)(img)
    assert torch.equal(x, T.Compose([T.Resize((224, 224)), T.ToTensor()])(img))


def test_paper_preset_eval_is_the_centre_of_the_resized_shorter_side():
    # 64x32 image, S=28 -> R=32: the shorter side is already 32, the centre 32x32 is the middle of the long side,
    # and the test crop is its centre 28x28.
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[:, 16:48] = 200  # the central square is bright
    x = build_transform("paper", 28, train=False, mean=(0, 0, 0), std=(1, 1, 1))(Image.fromarray(arr))
    assert resize_size("paper", 28) == 32 and resize_size("paper", 224) == 256
    assert torch.allclose(x, torch.full_like(x, 200 / 255))


def test_paper_training_crops_flips_and_colours_randomly():
    img = f.noise((80, 60))
    t = build_transform("paper", 32, train=True)
    torch.manual_seed(0)
    outs = [t(img) for _ in range(4)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert not torch.equal(outs[0], outs[1])


def test_pca_colour_noise_moves_colours_along_the_principal_axis():
    noise = PCAColourNoise((0.04, 0.0, 0.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), sigma=0.1)
    x = torch.full((3, 4, 4), 0.5)
    out = noise(x, torch.Generator().manual_seed(1))
    shift = out - x
    assert shift[0].std() == 0 and shift[0, 0, 0] != 0  # one shift per image, on red only
    assert torch.equal(shift[1:], torch.zeros(2, 4, 4))


def test_pixel_statistics_of_known_images():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    stats = pixel_statistics([a, b])
    assert stats["mean"] == pytest.approx((0.5, 0.5, 0.5))
    assert stats["std"] == pytest.approx((0.5, 0.5, 0.5))
    assert stats["eigval"][0] == pytest.approx(0.75)  # all variance along (1, 1, 1) / sqrt(3)
    assert np.allclose(np.abs(stats["eigvec"]).T[0], 1 / np.sqrt(3))


@pytest.fixture
def photo_folder(tmp_path):
    """Photo-like JPEGs of different sizes and aspect ratios, two classes."""
    root = tmp_path / "photos"
    for c, name in enumerate(("cat", "dog")):
        for i in range(6):
            size = [(50, 37), (37, 50), (40, 40)][i % 3]
            f.write_jpeg(root / name / f"{name}.{i}.jpg", f.noise(size, seed=10 * c + i), quality=90)
    return root


@pytest.mark.parametrize("preset", ["seed", "d2l", "paper"])
@pytest.mark.parametrize("channels", [1, 3])
def test_cache_plus_batch_augment_at_eval_equals_the_pil_path(photo_folder, preset, channels):
    bundle = build_datasets(str(photo_folder), image_size=24, in_channels=channels, preset=preset, val_split=0.5)
    cached = cache_split(bundle, "val")
    assert cached.images.dtype == torch.uint8
    assert cached.images.shape == (len(bundle.val), channels, resize_size(preset, 24), resize_size(preset, 24))
    assert cached.labels.tolist() == bundle.val.targets
    aug = BatchAugment(preset, 24, bundle.mean, bundle.std, train=False, pca=bundle.pca)
    fast = aug(cached.images)
    slow = torch.stack([bundle.val[i][0] for i in range(len(bundle.val))])
    assert fast.shape == slow.shape
    assert torch.allclose(fast, slow, atol=1e-5)  # same pixels through both paths
    # 10-crop: both paths cut the crops from the same larger square (eval caches the images at that size)
    wide = cache_split(bundle, "val", size=ten_crop_size(24))
    assert wide.images.shape[-2:] == (27, 27)
    tc = BatchAugment(preset, 24, bundle.mean, bundle.std, train=False, ten_crop=True)(wide.images)
    slow_tc = torch.stack([bundle.transform(False, ten_crop=True)(bundle.val.load_pil(i)) for i in range(len(bundle.val))])
    assert torch.allclose(tc, slow_tc, atol=1e-5)


def test_cache_is_reused_and_rebuilt_when_the_source_changes(photo_folder):
    bundle = build_datasets(str(photo_folder), image_size=16, val_split=0.5)
    first = cache_split(bundle, "train")
    assert first.built and first.path.startswith(os.environ["ALEXNET_CACHE"])
    again = cache_split(bundle, "train")
    assert not again.built and again.path == first.path
    assert torch.equal(again.images, first.images)
    # Replace one training image with different content (size and mtime change): a new cache.
    changed = bundle.train.samples[0][0]
    f.write_jpeg(changed, f.noise((44, 33), seed=999))
    rebuilt = cache_split(build_datasets(str(photo_folder), image_size=16, val_split=0.5), "train")
    assert rebuilt.built and rebuilt.path != first.path
    assert not torch.equal(rebuilt.images[0], first.images[0])
    # A different working size is a different cache too.
    assert cache_split(build_datasets(str(photo_folder), image_size=20, val_split=0.5), "train").images.shape[-1] == 20


def test_cache_never_reads_a_half_written_file(photo_folder):
    bundle = build_datasets(str(photo_folder), image_size=16, val_split=0.5)
    first = cache_split(bundle, "val")
    meta = first.path[: -len(".u8")] + ".json"
    os.remove(meta)  # as if the process died before writing the metadata
    assert cache_split(bundle, "val").built


def test_batch_augment_training_is_deterministic_given_a_generator(photo_folder):
    bundle = build_datasets(str(photo_folder), image_size=24, preset="paper", val_split=0.5)
    x = cache_split(bundle, "train").images

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        aug = BatchAugment("paper", 24, bundle.mean, bundle.std, train=True, pca=bundle.pca, generator=g)
        return aug(x), aug(x), g

    a1, a2, g = run(0)
    b1, b2, _ = run(0)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)  # bitwise
    assert not torch.equal(a1, a2)  # but random from batch to batch
    assert not torch.equal(a1, run(1)[0])
    # Resume: restoring the generator state reproduces the next batch exactly.
    g2 = torch.Generator().manual_seed(0)
    aug = BatchAugment("paper", 24, bundle.mean, bundle.std, train=True, pca=bundle.pca, generator=g2)
    aug(x)
    state = g2.get_state()
    expected = aug(x)
    g2.set_state(state)
    assert torch.equal(aug(x), expected)


def test_batch_augment_crop_and_flip_take_real_crops():
    # A ramp image: every crop/flip of it is recognisable from its first row.
    x = torch.arange(10, dtype=torch.uint8).repeat(1, 1, 10, 1)  # (1, 1, 10, 10), value = column
    x = x.repeat(64, 1, 1, 1)
    aug = BatchAugment("paper", 6, (0.0,), (1 / 255,), train=True, pca=((0.0,), ((1.0,),)),
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    out = aug(x).round().to(torch.int64)  # back to 0..255 units, no colour noise (eigval 0)
    rows = out[:, 0, 0]  # (64, 6)
    steps = rows[:, 1:] - rows[:, :-1]
    assert ((steps == 1).all(1) | (steps == -1).all(1)).all()  # contiguous columns, forwards or mirrored
    assert (steps[:, 0] == -1).any() and (steps[:, 0] == 1).any()  # both flips happen
    assert len({int(r[0]) for r in rows}) > 3  # several crop offsets


def test_seed_augmentation_rotates_and_flips_in_batch():
    x = torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = BatchAugment("seed", 20, train=True, augment=True, generator=g)(x)
    plain = BatchAugment("seed", 20, train=False)(x)
    assert out.shape == plain.shape == (8, 3, 20, 20)
    assert not torch.allclose(out, plain)


@pytest.mark.parametrize("preset", ["seed", "d2l", "paper"])
def test_ten_crop_cuts_from_a_square_larger_than_the_crops_for_every_preset(preset):
    # issue 26: seed and d2l squash to S x S, where the five S x S crops were all the whole image (10-crop = flip)
    assert ten_crop_size(224) == 256 and ten_crop_size(67) == 77
    img = f.noise((50, 37))
    crops = build_transform(preset, 24, False, ten_crop=True)(img)  # (10, C, 24, 24)
    assert not torch.equal(crops[0], crops[4]) and not torch.equal(crops[3], crops[4])  # corners are not the centre
    resized = torch.from_numpy(np.array(img.resize((27, 27), Image.BILINEAR))).permute(2, 0, 1)
    if preset != "paper":  # the squashed 27 x 27 image's own corners, in the batch path too
        batch = BatchAugment(preset, 24, train=False, ten_crop=True)(resized[None])[0]
        assert torch.allclose(batch, crops, atol=1e-5)
    # a batch stored at S (another cache) is enlarged to the larger square before it is cut, never cut at S
    at_s = BatchAugment(preset, 24, train=False, ten_crop=True)(torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8))
    assert not torch.equal(at_s[:, 0], at_s[:, 4])


def test_ten_crop_order_matches_torchvision():
    from torchvision.transforms import functional as F

    img = f.noise((13, 11))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]  # (1, 3, 11, 13)
    ours = ten_crop(x, 7)[0]
    theirs = torch.stack([torch.from_numpy(np.array(c)).permute(2, 0, 1) for c in F.ten_crop(img, 7)])
    assert torch.equal(ours, theirs)


def test_batch_augment_out_buffer_gives_the_same_result():
    x = torch.randint(0, 256, (4, 3, 30, 30), dtype=torch.uint8)
    for train in (True, False):
        a = BatchAugment("paper", 26, train=train, generator=torch.Generator().manual_seed(0))
        b = BatchAugment("paper", 26, train=train, generator=torch.Generator().manual_seed(0))
        buf = torch.empty(4, 3, 26, 26)
        res = b(x, out=buf)
        assert res.data_ptr() == buf.data_ptr()
        assert torch.equal(a(x), res)
    with pytest.raises(ValueError, match="out must be float32 of shape"):
        BatchAugment("seed", 30, train=False)(x, out=torch.empty(4, 3, 29, 29))


def test_small_cache_is_resized_up_per_batch(tmp_path):
    folder = f.write_mnist_folder(tmp_path / "mnist", n_train=20, n_test=10, side=12)
    bundle = build_datasets(str(folder), image_size=24, in_channels=1, preset="d2l")
    small = cache_split(bundle, "val", size=12)
    assert small.images.shape == (10, 1, 12, 12)
    assert cache_split(bundle, "val").images.shape == (10, 1, 24, 24)  # a different cache, not a reuse
    fast = BatchAugment("d2l", 24, bundle.mean, bundle.std, train=False)(small.images)
    slow = torch.stack([bundle.val[i][0] for i in range(10)])
    assert fast.shape == slow.shape == (10, 1, 24, 24)
    assert (fast - slow).abs().mean() < 0.02  # bilinear upsampling on either path, up to rounding
    paper = build_datasets(str(folder), image_size=24, in_channels=1, preset="paper")
    x = BatchAugment("paper", 24, paper.mean, paper.std, train=True, pca=paper.pca,
                     generator=torch.Generator().manual_seed(0))(cache_split(paper, "train", size=12).images)  # fmt: skip
    assert x.shape == (20, 1, 24, 24) and torch.isfinite(x).all()


def test_a_datasets_transform_is_built_on_first_use_and_equals_the_built_one(tmp_path):
    """The datasets' PIL-path transform is deferred: reading a folder does not import torchvision (seconds of a
    short --time-budget, and the uint8 cache never calls it); once called it is build_transform's, and bad
    arguments are refused when it is made, not later."""
    import subprocess
    import sys

    from alexnet.data.transforms import DeferredTransform

    folder = f.make_folder(tmp_path / "data", train=4, val=2)
    code = (f"import sys; from alexnet.data import build_datasets; b = build_datasets({str(folder)!r}, image_size=32); "
            "print('torchvision' in sys.modules); b.val[0]; print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr
    bundle = build_datasets(str(folder), image_size=32)
    built = build_transform("seed", 32, False, bundle.mean, bundle.std)
    image = bundle.val.load_pil(0)
    assert torch.equal(bundle.val.transform(image), built(image))
    with pytest.raises(ConfigError, match="mean/std need 3 values"):
        DeferredTransform("seed", 32, False, mean=(0.5,), std=(0.5,))
