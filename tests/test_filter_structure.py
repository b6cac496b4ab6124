"""The conv1 filter measure (issue 25): Gabor-like edges and colour blobs are structure, random weights of any init
are noise, and the two towers' colour shares are told apart; Figure 3's grid puts each tower on rows of its own."""

import numpy as np
import pytest
import torch

from alexnet.inspect.filter_structure import colour_share, measure_filters, noise_threshold
from alexnet.inspect.plots import filter_grid
from alexnet.models import build_model


def gabor(k: int, rng, colour: bool) -> np.ndarray:
    """An oriented edge detector: a cosine at a random frequency, orientation and phase under a Gaussian envelope."""
    y, x = np.mgrid[:k, :k] - (k - 1) / 2
    theta, freq, sigma, phase = rng.uniform(0, np.pi), rng.uniform(0.1, 0.35), rng.uniform(1.5, k / 3), rng.uniform(0, 6)
    wave = np.cos(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phase)
    pattern = np.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2)) * wave
    tint = rng.normal(size=3) if colour else np.ones(3)
    return tint[:, None, None] * pattern


def blob(k: int, rng) -> np.ndarray:
    """A colour blob: a smooth Gaussian spot in one colour."""
    y, x = np.mgrid[:k, :k] - (k - 1) / 2
    cx, cy = rng.uniform(-2, 2, size=2)
    return rng.normal(size=3)[:, None, None] * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rng.uniform(1.5, 4) ** 2))


def figure3_like(rng, n: int = 96, k: int = 11, noise: float = 0.3) -> np.ndarray:
    """Edges and blobs as in the paper's Figure 3, each with i.i.d. noise at `noise` of the filters' std on top."""
    filters = np.stack([gabor(k, rng, i % 3 == 0) if i % 4 else blob(k, rng) for i in range(n)])
    return filters + noise * filters.std() * rng.normal(size=filters.shape)


@pytest.mark.parametrize("k", [11, 5])
def test_edges_and_blobs_are_structure_random_weights_are_noise(k):
    rng = np.random.default_rng(1)
    assert measure_filters(figure3_like(rng, k=k)).structured >= 0.9
    gaussian = measure_filters(rng.normal(size=(96, 3, k, k)))
    uniform = measure_filters(rng.uniform(-1, 1, size=(96, 3, k, k)))
    assert gaussian.structured <= 0.05 and uniform.structured <= 0.05


def test_a_new_models_conv1_is_noise_under_every_init():
    torch.manual_seed(0)
    for init in ("paper", "default", "kaiming"):
        model = build_model("alexnet", num_classes=10, init=init)
        structure = measure_filters(model.conv1.weight, model.towers)
        assert structure is not None and structure.filters == 96 and structure.structured <= 0.05, init
        assert "random weights give about 1%" in structure.describe()


def test_the_threshold_is_fixed_and_sits_above_the_noise_median():
    assert noise_threshold(3, 11) == noise_threshold(3, 11)  # seeded: the same on every call and machine
    assert 0.2 < noise_threshold(3, 11) < 0.5


def test_colour_share_tells_a_grey_tower_from_a_colour_one():
    rng = np.random.default_rng(2)
    grey = np.stack([gabor(11, rng, colour=False) for _ in range(48)])
    colour = np.stack([blob(11, rng) for _ in range(48)])
    assert colour_share(grey).max() < 1e-12
    structure = measure_filters(np.concatenate([grey, colour]), towers=2)
    assert structure.colour_by_tower[0] < 0.01 < 0.3 < structure.colour_by_tower[1]
    assert "tower 1 0%" in structure.describe()
    assert len(measure_filters(np.concatenate([grey, colour])).colour_by_tower) == 1


def test_too_small_or_misshapen_filters_have_no_measure():
    assert measure_filters(np.zeros((64, 3, 3, 3))) is None
    assert measure_filters(np.zeros((64, 3, 11))) is None
    assert measure_filters(np.zeros((8, 1, 7, 7))).colour_by_tower == ()  # grey input: no colour share


def test_figure3_grid_puts_each_tower_on_rows_of_its_own():
    weight = np.random.default_rng(3).normal(size=(10, 3, 5, 5))
    one = filter_grid(weight)  # 10 filters, ceil(sqrt(20)) = 5 columns: 2 rows
    two = filter_grid(weight, towers=2)  # 5 per tower: a row each, and a gap between the towers
    assert one.shape[:2] == (2 * 6 + 1, 5 * 6 + 1) and two.shape[1] == one.shape[1]
    assert two.shape[0] == 2 * (6 + 1) + 5  # each tower's row with its pads, and a 5-pixel gap between them
    assert (two[7:12] == 1.0).all() and not (two[1:6, 1:6] == 1.0).all()
