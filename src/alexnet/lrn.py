"""Local Response Normalization (Krizhevsky et al., 2012, section 3.3), written as the reference formula.

The paper normalises activity a^i at channel i over n "adjacent" channels:

    b^i = a^i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} (a^j)^2) ^ beta

with k = 2, n = 5, alpha = 1e-4, beta = 0.75. Two conventions exist for alpha:

- ``"per_size"``: alpha is divided by n, i.e. the sum is an average. This is what the authors' cuda-convnet code
  does and what ``torch.nn.LocalResponseNorm`` does, so the model's default LRN matches both. The window is
  ``[i - n//2, i + (n-1)//2]`` (PyTorch's; the same as the paper's for odd n).
- ``"literal"``: the formula above as printed (and as the first seed note writes it): alpha multiplies the plain
  sum over ``[i - n//2, i + n//2]``.

This module is deliberately small and plain: a faster kernel can replace ``forward`` behind the same interface,
and the tests hold it to ``torch.nn.LocalResponseNorm`` and to the literal formula in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import ConfigError

ALPHA_CONVENTIONS = ("per_size", "literal")


def channel_window(size: int, alpha_convention: str) -> tuple[int, int]:
    """Channels (before, after) channel i that enter its sum, under the given convention."""
    if alpha_convention == "per_size":
        return size // 2, (size - 1) // 2  # torch.nn.LocalResponseNorm's window
    return size // 2, size // 2  # the paper's j = i - n/2 .. i + n/2 (integer n/2)


def local_response_norm(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, alpha_convention: str = "per_size"
) -> torch.Tensor:
    """The paper's LRN across channels (dim 1) of an input shaped (B, C, ...)."""
    if x.dim() < 3:
        raise ConfigError(f"LocalResponseNorm expects an input shaped (B, C, ...) with 3 or more dims, got {tuple(x.shape)}")
    before, after = channel_window(size, alpha_convention)
    shape = x.shape
    # Under bf16/fp16 autocast the sum of squares and the power are taken in float32: k + alpha/n * sum is 2.0
    # plus a small term that half precision would round away (and sum errors would double the output's error).
    acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    squares = acc.square().reshape(shape[0], shape[1], -1)  # (B, C, L)
    # Zero-pad the channel axis so that every channel has a full window; channels outside [0, N-1] add nothing,
    # which is the paper's max(0, .) / min(N-1, .) bounds.
    padded = F.pad(squares, (0, 0, before, after))  # (B, before + C + after, L)
    window_sum = padded.unfold(1, before + after + 1, 1).sum(-1)  # (B, C, L)
    scale = alpha / size if alpha_convention == "per_size" else alpha
    denominator = (k + scale * window_sum).pow(beta).reshape(shape)
    return (acc / denominator).to(x.dtype)


class LocalResponseNorm(nn.Module):
    """Cross-channel LRN with the paper's defaults (n=5, alpha=1e-4, beta=0.75, k=2); no parameters."""

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, alpha_convention: str = "per_size"
    ) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"LocalResponseNorm size must be a positive int, got {size!r}")
        if alpha_convention not in ALPHA_CONVENTIONS:
            raise ConfigError(f"LocalResponseNorm alpha_convention must be one of {ALPHA_CONVENTIONS}, got {alpha_convention!r}")
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.k = float(k)
        self.alpha_convention = alpha_convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.alpha_convention)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, alpha_convention={self.alpha_convention!r}"
