"""2-D maps of fc7 vectors with scikit-learn: PCA (linear, the directions of largest variance) and t-SNE
(van der Maaten and Hinton, 2008: neighbourhoods kept, distances between clusters not meaningful).

At most MAX_POINTS validation images are mapped (a seeded sample beyond that): t-SNE's cost grows with the square
of the points, and a scatter of more points than that is a blur on a page anyway.
"""

from __future__ import annotations

import numpy as np

MAX_POINTS = 3000
SEED = 0


def sample_rows(n: int, limit: int = MAX_POINTS, seed: int = SEED) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2), dtype=np.float32)
    out = PCA(n_components=min(2, vectors.shape[1], len(vectors)), random_state=SEED).fit_transform(vectors)
    if out.shape[1] < 2:
        out = np.pad(out, ((0, 0), (0, 2 - out.shape[1])))
    return _unit(out)


def tsne_2d(vectors: np.ndarray) -> np.ndarray:
    """t-SNE with a perplexity that fits the number of points (sklearn needs perplexity < n); PCA below 5 points."""
    from sklearn.manifold import TSNE

    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 5:
        return pca_2d(vectors)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    out = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=SEED).fit_transform(vectors)
    return _unit(out)


def _unit(points: np.ndarray) -> np.ndarray:
    """Centred and scaled into [-1, 1] on the larger axis: a page draws it without knowing the data's scale."""
    if len(points) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    points = points - points.mean(axis=0, keepdims=True)
    span = np.abs(points).max()
    return (points / span if span > 0 else points).astype(np.float32)
