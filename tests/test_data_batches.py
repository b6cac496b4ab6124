"""EvalBatches: the one loop from a cached uint8 split to (float batch, labels), for every order it is given."""

import pytest
import torch

from alexnet.data.augment import BatchAugment
from alexnet.data.batches import EvalBatches, rank_part, seeded_order


def cached_split(n=23, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (n,), generator=g)
    return images, labels


def direct(images, labels, augment, batch_size, indices):
    """The loop every caller wrote by hand before EvalBatches."""
    return [(augment(images[chunk]), labels[chunk]) for chunk in indices.split(batch_size)]


def assert_same(got, expected):
    assert len(got) == len(expected)
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)


def test_every_image_in_order_as_the_direct_loop():
    images, labels = cached_split()
    augment = BatchAugment("seed", 10, train=False)
    batches = EvalBatches(images, labels, augment, 5)
    got = list(batches)
    assert_same(got, direct(images, labels, augment, 5, torch.arange(len(labels))))
    assert [len(y) for _, y in got] == [5, 5, 5, 5, 3] and len(batches) == 5
    assert got[0][0].dtype == torch.float32 and got[0][0].shape == (5, 3, 10, 10)
    assert_same(list(batches), got)  # re-iterable: one object serves every epoch


def test_ten_crop_batches_keep_their_views():
    images, labels = cached_split(n=7)
    augment = BatchAugment("seed", 10, train=False, ten_crop=True)
    got = list(EvalBatches(images, labels, augment, 4))
    assert [tuple(x.shape) for x, _ in got] == [(4, 10, 3, 10, 10), (3, 10, 3, 10, 10)]
    assert_same(got, direct(images, labels, augment, 4, torch.arange(7)))


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_rank_parts_split_the_split_once(world_size):
    images, labels = cached_split()
    augment = BatchAugment("seed", 10, train=False)
    seen = []
    for rank in range(world_size):
        part = rank_part(len(labels), rank, world_size)
        expected = torch.tensor_split(torch.arange(len(labels)), world_size)[rank]  # train.py's CacheEval
        assert torch.equal(part, expected)
        batches = list(EvalBatches(images, labels, augment, 4, indices=part))
        assert_same(batches, direct(images, labels, augment, 4, expected))
        seen += [int(i) for i in part]
    assert seen == list(range(len(labels)))  # contiguous parts, each image on exactly one rank


def test_a_seeded_subset_and_a_prefix():
    images, labels = cached_split()
    augment = BatchAugment("seed", 10, train=False)
    sample = seeded_order(len(labels), seed=0)[:9]
    assert torch.equal(sample, torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:9])
    torch.manual_seed(123)  # the global RNG does not move the sample
    assert torch.equal(seeded_order(len(labels), seed=0)[:9], sample)
    assert not torch.equal(seeded_order(len(labels), seed=1)[:9], sample)
    got = list(EvalBatches(images, labels, augment, 4, indices=sample))
    assert_same(got, direct(images, labels, augment, 4, sample))
    assert torch.equal(torch.cat([y for _, y in got]), labels[sample])
    first = torch.arange(6)
    assert_same(list(EvalBatches(images, labels, augment, 64, indices=first)),
                direct(images, labels, augment, 64, first))


def test_images_move_to_the_device_before_augmenting():
    images, labels = cached_split(n=3)
    seen = []

    def augment(x):
        seen.append((x.device, x.dtype))
        return x.float()

    list(EvalBatches(images, labels, augment, 2, device=torch.device("meta")))
    assert seen == [(torch.device("meta"), torch.uint8)] * 2  # the uint8 chunk travels, not the float batch


def test_a_batch_size_below_one_is_refused():
    images, labels = cached_split(n=3)
    with pytest.raises(ValueError, match="batch_size"):
        EvalBatches(images, labels, lambda x: x, 0)
