"""Local Response Normalization (Krizhevsky et al., 2012, section 3.3), written as the reference formula.

The paper normalises activity a^i at channel i over n "adjacent" channels:

    b^i = a^i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} (a^j)^2) ^ beta

with k = 2, n = 5, alpha = 1e-4, beta = 0.75. Two conventions exist for alpha:

- ``"per_size"``: alpha is divided by n, i.e. the sum is an average. This is what the authors' cuda-convnet code
  does and what ``torch.nn.LocalResponseNorm`` does, so the model's default LRN matches both. The window is
  ``[i - n//2, i + (n-1)//2]`` (PyTorch's; the same as the paper's for odd n).
- ``"literal"``: the formula above as printed (and as the first seed note writes it): alpha multiplies the plain
  sum over ``[i - n//2, i + n//2]``.

Two implementations of the same formula: ``local_response_norm`` is the reference, written as the formula reads;
``fast_local_response_norm`` (what the module runs) computes the same numbers with a closed-form backward, a few
images at a time. The tests hold both to ``torch.nn.LocalResponseNorm`` and to the literal formula in float64.
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


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def fast_local_response_norm(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, alpha_convention: str = "per_size"
) -> torch.Tensor:
    """The same numbers as `local_response_norm`, at a fraction of its cost (see `_FastLRN`)."""
    if x.dim() < 3:
        raise ConfigError(f"LocalResponseNorm expects an input shaped (B, C, ...) with 3 or more dims, got {tuple(x.shape)}")
    before, after = channel_window(size, alpha_convention)
    scale = alpha / size if alpha_convention == "per_size" else alpha
    return _FastLRN.apply(x, before, after, scale, beta, k)


def _window_sum(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """sum_{j=i-before}^{i+after} x[:, j] for every channel i, zero outside [0, C-1]; keeps x's memory format.

    Shifted in-place adds instead of a padded copy and a pooling kernel: n passes over the tensor, in any dtype,
    for contiguous and channels_last tensors alike.
    """
    channels = x.shape[1]
    out = x.clone()
    for shift in range(1, min(before, channels - 1) + 1):  # channel i gains channel i - shift
        out.narrow(1, shift, channels - shift).add_(x.narrow(1, 0, channels - shift))
    for shift in range(1, min(after, channels - 1) + 1):  # channel i gains channel i + shift
        out.narrow(1, 0, channels - shift).add_(x.narrow(1, shift, channels - shift))
    return out


class _FastLRN(torch.autograd.Function):
    """LRN with a closed-form backward, evaluated CHUNK images at a time.

    Why: torch's LRN (pad + avg_pool3d + pow, with autograd through each) costs more than the convolution before
    it on a CPU, and has no bf16 CPU kernel. Chunks of a few images keep every temporary in the cores' L2 cache and
    reuse the allocator's blocks (a whole-batch temporary after conv1 is 74 MB at batch 64, and each fresh one
    page-faults). With d = k + scale * S (S the window's sum of squares) and s = d^-beta, the output is b = a * s and

        dL/da_j = g_j s_j - 2 scale beta a_j sum_{i : j in window(i)} g_i a_i s_i / d_i

    where the sum runs over the forward window mirrored (before and after swapped).
    """

    CHUNK = 4  # images per pass: 4 x 96 x 55 x 55 float32 is 4.6 MB, a core's L2 plus a little

    @staticmethod
    def forward(ctx, x, before: int, after: int, scale: float, beta: float, k: float):
        # d and s are kept in float32 (float64 for float64 input) whatever x's dtype: d is k plus a small term that
        # bf16 would round away.
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        out = torch.empty_like(x)
        d_all = torch.empty_like(x, dtype=acc)
        s_all = torch.empty_like(x, dtype=acc)
        for i in range(0, x.shape[0], _FastLRN.CHUNK):
            chunk = slice(i, i + _FastLRN.CHUNK)
            a = x[chunk].to(acc)
            d = _window_sum(a * a, before, after).mul_(scale).add_(k)
            s = torch.pow(d, -beta)
            d_all[chunk] = d
            s_all[chunk] = s
            out[chunk] = a * s  # not in place: `a` is x itself when x is already in `acc`
        ctx.save_for_backward(x, d_all, s_all)
        ctx.window = (before, after, scale, beta)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, d_all, s_all = ctx.saved_tensors
        before, after, scale, beta = ctx.window
        grad_in = torch.empty_like(x)
        for i in range(0, x.shape[0], _FastLRN.CHUNK):
            chunk = slice(i, i + _FastLRN.CHUNK)
            d, s = d_all[chunk], s_all[chunk]
            a, g = x[chunk].to(d.dtype), grad_out[chunk].to(d.dtype)
            t = _window_sum(g * a * s / d, after, before)  # the mirrored window
            t.mul_(a).mul_(-2.0 * scale * beta)
            grad_in[chunk] = t.addcmul_(g, s)
        return grad_in, None, None, None, None, None


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
        if _tracing():
            # torch.compile, torch.export and the ONNX exporter see the reference formula: they fuse it themselves,
            # and an autograd.Function with a Python loop over chunks is opaque to them.
            return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.alpha_convention)
        return fast_local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.alpha_convention)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, alpha_convention={self.alpha_convention!r}"
