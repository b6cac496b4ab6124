"""Transform presets on the PIL path (one image at a time), PCA colour noise, and the pixel statistics behind them.

Presets, selectable by name; every one works at any working size S (the model's square input):

- `seed`  (the cats-vs-dogs note): resize to S x S, ToTensor, ImageNet mean/std. The note's optional augmentation
  (RandomRotation(20) + RandomHorizontalFlip) when `augment=True`; off by default, as in the note.
- `d2l`   (the Fashion-MNIST note): resize to S x S and ToTensor, no normalisation (mean 0, std 1), no augmentation.
- `paper` (Krizhevsky et al. 2012, section 4.1): the shorter side to R = round(S * 256 / 224) (256 at S = 224), centre
  R x R; training takes a random S x S crop + horizontal flip + PCA colour noise (alpha ~ N(0, 0.1) on the
  eigenvalues of the RGB covariance of the training set itself); evaluation takes the centre crop or the 10 crops.
  Normalised with the training set's own per-channel mean/std (the paper subtracts the mean image; the std division
  only rescales the input, which the paper's init does not need but BN-free variants train better with).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alexnet.config import PRESETS
from alexnet.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet's RGB eigen-decomposition on the [0, 1] scale (as used by fb.resnet.torch): the fallback for `paper`.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
PCA_SIGMA = 0.1  # the paper's standard deviation of alpha


def check_preset(preset: str, image_size: int, in_channels: int) -> None:
    if preset not in PRESETS:
        raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
    if in_channels not in (1, 3):
        raise ConfigError(f"in_channels must be 1 or 3, got {in_channels!r}")


def resize_size(preset: str, image_size: int) -> int:
    """The side of the square each image is resized to before cropping (and the side the uint8 cache stores)."""
    return round(image_size * 256 / 224) if preset == "paper" else image_size


def ten_crop_size(image_size: int) -> int:
    """The side of the square the 10 test crops (`ten_crop`) are cut from, whatever the preset: the paper's 256 for
    224 crops (section 4.1). `paper` resizes to it anyway. `seed` and `d2l` squash every image to S x S, where the
    five S x S crops would all be the whole image and 10-crop would equal flip TTA (issue 26); for 10-crop they squash
    to this larger square instead, as the paper does. The cost: objects look 256/224 = 1.14x larger than in
    training (the paper's own trade, its model trained on crops of 256), and the crops leave out an eighth of each
    side: on data framed tightly (a thumbnail of one object) the centre crop may lose what training saw."""
    return round(image_size * 256 / 224)


def default_mean_std(preset: str, in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation a preset uses when the training set's own statistics are not computed."""
    if preset == "d2l":
        return (0.0,) * in_channels, (1.0,) * in_channels
    if in_channels == 1:
        return (0.449,), (0.226,)  # ImageNet's channel averages, the usual choice for grey inputs
    return IMAGENET_MEAN, IMAGENET_STD


def default_pca(in_channels: int) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
    """ImageNet's colour eigen-decomposition (RGB), or its total variance as one brightness direction (grey)."""
    if in_channels == 1:
        return (sum(IMAGENET_EIGVAL),), ((1.0,),)
    return IMAGENET_EIGVAL, IMAGENET_EIGVEC


def pixel_statistics(images: Iterable[np.ndarray]) -> dict:
    """Per-channel mean/std and the eigen-decomposition of the channel covariance, on the [0, 1] scale.

    `images` yields uint8 arrays (H, W) or (H, W, C). Accumulated in float64, so any number of images fits in memory.
    """
    n, s1, s2 = 0, None, None
    for img in images:
        x = np.asarray(img, dtype=np.float64).reshape(-1, 1 if img.ndim == 2 else img.shape[-1]) / 255.0
        if s1 is None:
            s1, s2 = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        s1 += x.sum(0)
        s2 += x.T @ x
        n += x.shape[0]
    if not n:
        raise ValueError("pixel_statistics needs at least one image")
    mean = s1 / n
    cov = s2 / n - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]  # largest first, as in the paper's description
    eigval = np.clip(eigval[order], 0.0, None)
    eigvec = eigvec[:, order]
    std = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
    return {
        "mean": tuple(float(v) for v in mean),
        "std": tuple(float(v) for v in std),
        "eigval": tuple(float(v) for v in eigval),
        "eigvec": tuple(tuple(float(v) for v in row) for row in eigvec),
    }


class PCAColourNoise:
    """The paper's colour augmentation on one (C, H, W) float image in [0, 1]: adds eigvec @ (alpha * eigval) to
    every pixel, alpha ~ N(0, sigma) drawn once per image (section 4.1)."""

    def __init__(self, eigval: Sequence[float], eigvec: Sequence[Sequence[float]], sigma: float = PCA_SIGMA):
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)  # columns are the eigenvectors
        self.sigma = sigma

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        alpha = torch.randn(self.eigval.shape, generator=generator) * self.sigma
        shift = self.eigvec @ (alpha * self.eigval)  # (C,)
        return x + shift.to(x.dtype).view(-1, 1, 1)

    def __repr__(self) -> str:
        return f"PCAColourNoise(sigma={self.sigma}, eigval={[round(v, 4) for v in self.eigval.tolist()]})"


@dataclass(frozen=True)
class Augmentation:
    """A transform's training augmentation: `enabled` overrides the preset's default (seed: off, d2l: off, paper:
    on); `pca` is (eigval, eigvec) of `paper`'s colour noise, ImageNet's when None."""

    enabled: bool | None = None
    pca: tuple | None = None


def build_transform(
    preset: str,
    image_size: int,
    train: bool,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    in_channels: int = 3,
    *,
    augmentation: Augmentation = Augmentation(),
    ten_crop: bool = False,
) -> Callable:
    """The PIL-path transform: PIL image ("L" or "RGB", as load_image returns) -> float tensor (C, S, S) normalised.

    `augmentation` applies to training only. `ten_crop` (evaluation, any preset) returns (10, C, S, S): 4 corners
    + centre of the image resized to `ten_crop_size(S)`, and their horizontal flips.
    """
    from torchvision import transforms as T  # torchvision is heavy: imported when a transform is built

    mean, std = checked_mean_std(preset, image_size, in_channels, mean, std)
    S, R = image_size, resize_size(preset, image_size)
    augment = (preset == "paper") if augmentation.enabled is None else augmentation.enabled
    normalize = T.Normalize(mean, std)
    # paper: shorter side to R, centre R x R; the others squash to S x S as the notes do.
    steps: list = [T.Resize(R), T.CenterCrop(R)] if preset == "paper" else [T.Resize((S, S))]
    if ten_crop:  # from the larger square, for every preset (ten_crop_size); paper's R is that square already
        T10 = ten_crop_size(S)
        steps = [T.Resize(T10), T.CenterCrop(T10)] if preset == "paper" else [T.Resize((T10, T10))]
        return T.Compose([*steps, T.TenCrop(S), _StackCrops(normalize)])
    if train and augment:
        if preset == "paper":
            steps += [T.RandomCrop(S), T.RandomHorizontalFlip()]
        else:
            steps += [T.RandomRotation(20), T.RandomHorizontalFlip()]  # the seed note's commented-out lines
    elif preset == "paper":
        steps += [T.CenterCrop(S)]
    steps.append(T.ToTensor())
    if train and augment and preset == "paper":
        eigval, eigvec = augmentation.pca or default_pca(in_channels)
        steps.append(PCAColourNoise(eigval, eigvec))
    steps.append(normalize)
    return T.Compose(steps)


def checked_mean_std(preset: str, image_size: int, in_channels: int, mean: Sequence[float] | None,
                     std: Sequence[float] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """build_transform's checks of its arguments, and the mean and std it normalises with (the preset's by default)."""
    check_preset(preset, image_size, in_channels)
    d_mean, d_std = default_mean_std(preset, in_channels)
    mean, std = tuple(mean or d_mean), tuple(std or d_std)
    if len(mean) != in_channels or len(std) != in_channels:
        raise ConfigError(f"mean/std need {in_channels} values each, got {len(mean)} and {len(std)}")
    return mean, std


class DeferredTransform:
    """build_transform's transform, checked now and built on its first call. A dataset gets one for its PIL path,
    which the uint8 cache's loader never calls: building it imports torchvision, seconds that a short
    --time-budget would pay for nothing."""

    def __init__(self, preset: str, image_size: int, train: bool, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, in_channels: int = 3, **options: Any):
        checked_mean_std(preset, image_size, in_channels, mean, std)
        self.args = (preset, image_size, train, mean, std, in_channels)
        self.options = options
        self.built: Callable | None = None

    def __call__(self, image: Any) -> Any:
        if self.built is None:
            self.built = build_transform(*self.args, **self.options)
        return self.built(image)

    def __repr__(self) -> str:
        return repr(self.built) if self.built is not None else f"DeferredTransform{self.args[:3]}"


class _StackCrops:
    """TenCrop's tuple of PIL crops -> one normalised (10, C, S, S) tensor."""

    def __init__(self, normalize: Callable):
        self.normalize = normalize

    def __call__(self, crops) -> torch.Tensor:
        from torchvision.transforms import functional as F

        return torch.stack([self.normalize(F.to_tensor(c)) for c in crops])
