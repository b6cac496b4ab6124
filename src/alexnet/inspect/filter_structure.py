"""Are conv1's filters structure or noise? A number from the weights alone (issue 25), for the paper's Figure 3.

A filter of independent random weights (any init: Gaussian, uniform) has a flat power spectrum: its energy is spread
over all spatial frequencies. The filters of Figure 3, oriented edges at a few frequencies and colour blobs, put most
of theirs into a few frequencies: a Gabor-like edge into the pair of bins of its frequency and orientation, a blob
into the lowest. So each filter gets a *spectral concentration*: the share of its energy (the 2-D DFT's power,
summed over the input channels) in the strongest tenth of the frequency bins. A filter is *structured* when that
share is above what 99% of random Gaussian filters of the same shape reach (drawn with a fixed seed, so the
threshold is the same on every machine). The run's number is the share of structured filters: about 1% for an
untrained net by construction, and near 100% for Gabor-like filters (tests/test_filter_structure.py).

The paper also saw its two towers specialise: colour-agnostic filters on one GPU, colour-specific on the other. The
*colour share* of a filter is the share of its energy off the grey axis (each channel minus the channels' mean): 0 for
a grey filter, 2/3 on average for random ones; its mean per tower says whether that happened here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

TOP_BINS = 0.1  # the strongest tenth of the frequency bins
NOISE_QUANTILE = 0.99
NOISE_SAMPLES = 4000
MIN_KERNEL = 5  # below 5x5 there are too few frequencies to tell a pattern from noise


def spectral_concentration(weight: np.ndarray) -> np.ndarray:
    """(O, C, k, k) filters -> (O,) share of each filter's spectral energy in its strongest tenth of bins."""
    weight = np.asarray(weight, dtype=np.float64)
    power = (np.abs(np.fft.fft2(weight, axes=(-2, -1))) ** 2).sum(axis=1).reshape(weight.shape[0], -1)
    power.sort(axis=1)
    top = max(1, math.ceil(TOP_BINS * power.shape[1]))
    return power[:, -top:].sum(axis=1) / np.maximum(power.sum(axis=1), 1e-300)


@functools.lru_cache(maxsize=32)
def noise_threshold(channels: int, kernel: int) -> float:
    """The concentration that 99% of random Gaussian (channels, kernel, kernel) filters stay below."""
    noise = np.random.default_rng(0).standard_normal((NOISE_SAMPLES, channels, kernel, kernel))
    return float(np.quantile(spectral_concentration(noise), NOISE_QUANTILE))


def colour_share(weight: np.ndarray) -> np.ndarray:
    """(O, C, k, k) -> (O,) share of each filter's energy off the grey axis (0 for a grey filter)."""
    weight = np.asarray(weight, dtype=np.float64)
    chroma = weight - weight.mean(axis=1, keepdims=True)
    return (chroma ** 2).sum(axis=(1, 2, 3)) / np.maximum((weight ** 2).sum(axis=(1, 2, 3)), 1e-300)


@dataclass(frozen=True)
class FilterStructure:
    structured: float  # share of the filters above the noise threshold, 0..1
    threshold: float
    filters: int
    colour_by_tower: tuple[float, ...]  # mean colour share of each tower's filters (one entry without towers)

    def describe(self) -> str:
        text = (f"{100 * self.structured:.0f}% of conv1's {self.filters} filters are structured, not noise (their "
                f"energy sits in few spatial frequencies: above the {100 * NOISE_QUANTILE:g}th percentile of random "
                f"filters; random weights give about {100 * (1 - NOISE_QUANTILE):.0f}%)")
        if len(self.colour_by_tower) > 1:
            towers = ", ".join(f"tower {i + 1} {100 * c:.0f}%" for i, c in enumerate(self.colour_by_tower))
            text += f"; energy off the grey axis: {towers} (random filters: 67%)"
        return text


def measure_filters(weight, towers: int = 1) -> FilterStructure | None:
    """The structure of conv1's weights (a tensor or an array, (O, C, k, k)); None where it is not defined: filters
    smaller than 5x5, or not 4-D. `towers` splits the filters into that many consecutive groups (the paper's GPUs)
    for the colour share; the colour share needs 3 input channels."""
    if hasattr(weight, "detach"):
        weight = weight.detach().float().cpu().numpy()
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4 or min(weight.shape[2:]) < MIN_KERNEL or weight.shape[2] != weight.shape[3]:
        return None
    out, channels, kernel = weight.shape[:3]
    threshold = noise_threshold(channels, kernel)
    structured = float((spectral_concentration(weight) > threshold).mean())
    towers = towers if towers > 1 and out % towers == 0 else 1
    colour = tuple(float(colour_share(group).mean()) for group in np.split(weight, towers)) if channels == 3 else ()
    return FilterStructure(structured, threshold, out, colour)
