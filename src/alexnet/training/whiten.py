"""`--conv1-init patches`: conv1 starts as the whitening filters of the training set's own patches (airbench, Keller
Jordan 2024: "40% fewer epochs" on CIFAR-10; Coates & Ng 2011 before it).

Patches of conv1's size are cut from the training images as the network sees them (normalised, centre view), their
covariance taken, and its eigenvectors v with the largest eigenvalues l become the filters v / sqrt(l + eps), each
with its negative (a ReLU follows: +v and -v pass the two halves). So the first layer starts by passing the
directions in which the photos vary most, each at unit variance, instead of random noise; it trains from there like
any other layer. A candidate of benchmarks/recipe_levers.py: whether it pays is measured there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_IMAGES = 2048  # images the patches are cut from (a sample when the set is larger)
MAX_PATCHES = 200_000
EPS = 5e-4  # added to the eigenvalues: the near-zero directions are not amplified into noise (airbench's value)


def patch_covariance(images: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Covariance (D, D) of the kernel x kernel patches of normalised float images (N, C, H, W), D = C k k."""
    patches = F.unfold(images, kernel_size=kernel, stride=stride)  # (N, D, L)
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (N L, D)
    if patches.shape[0] > MAX_PATCHES:
        patches = patches[torch.randperm(patches.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_PATCHES]]
    # Centred in float32 and multiplied in it (within 2e-6 of float64 at 200,000 patches, and 2.5x faster); the
    # eigendecomposition that follows is in float64.
    patches = patches - patches.mean(dim=0)
    return (patches.T @ patches).double() / max(patches.shape[0] - 1, 1)


def whitening_filters(covariance: torch.Tensor, out_channels: int, shape: tuple[int, ...]) -> torch.Tensor:
    """(out_channels, *shape) filters: the top eigenvectors scaled to unit response, each followed by its negative
    (an odd count ends with one unpaired); beyond twice the patch dimension, the rest start at zero."""
    values, vectors = torch.linalg.eigh(covariance)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    pairs = min((out_channels + 1) // 2, vectors.shape[1])
    scaled = (vectors[:, :pairs] / (values[:pairs].clamp_min(0) + EPS).sqrt()).T  # (pairs, D)
    filters = torch.stack([scaled, -scaled], dim=1).reshape(2 * pairs, -1)[:out_channels]
    weight = torch.zeros(out_channels, covariance.shape[0], dtype=torch.float64)
    weight[: filters.shape[0]] = filters
    return weight.float().reshape(out_channels, *shape)


@torch.no_grad()
def whiten_conv1(model: torch.nn.Module, images: torch.Tensor, normalise) -> str:
    """Set `model.conv1` from the patches of `images` (uint8 (N, C, H, W), the training split's cache) seen through
    `normalise` (the validation transform); its bias to zero. Returns the log's line."""
    conv = model.conv1
    k, stride = conv.kernel_size[0], conv.stride[0]
    side = (images.shape[-1] - k) // stride + 1
    # Only as many images as MAX_PATCHES needs: unfolding all of them (2048 at 96 px: a million patches, 1.4 GB)
    # cost 5 s of a run's start, for a covariance that 200,000 patches already pin down.
    enough = min(MAX_IMAGES, -(-MAX_PATCHES // max(side * side, 1)))
    if len(images) > enough:
        images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:enough]]
    seen = torch.cat([normalise(chunk) for chunk in images.split(256)])
    cov = patch_covariance(seen, k, stride)
    conv.weight.copy_(whitening_filters(cov, conv.out_channels, tuple(conv.weight.shape[1:])).to(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
    return (f"conv1 starts as the whitening filters of the training patches ({conv.out_channels} filters of "
            f"{conv.kernel_size[0]}x{conv.kernel_size[0]}, from {len(images)} images)")
