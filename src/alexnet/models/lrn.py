"""Local Response Normalization (Krizhevsky et al., 2012, section 3.3), written as the reference formula.

The paper normalises activity a^i at channel i over n "adjacent" channels:

    b^i = a^i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} (a^j)^2) ^ beta

with k = 2, n = 5, alpha = 1e-4, beta = 0.75. Two conventions exist for alpha:

- ``"per_size"``: alpha is divided by n, i.e. the sum is an average. This is what the authors' cuda-convnet code
  does and what ``torch.nn.LocalResponseNorm`` does, so the model's default LRN matches both. The window is
  ``[i - n//2, i + (n-1)//2]`` (PyTorch's; the same as the paper's for odd n).
- ``"literal"``: the formula above as printed (and as the first seed note writes it): alpha multiplies the plain
  sum over ``[i - n//2, i + n//2]``.

Three implementations of the same formula: ``local_response_norm`` is the reference, written as the formula reads;
``fast_local_response_norm`` (what the module runs) computes the same numbers with a closed-form backward, either in
a small C kernel (``csrc/lrn.c``, built on first use by ``alexnet.models.native``: float32 CPU tensors, contiguous or
channels_last) or, for everything else, in ``_FastLRN`` (torch operations, a few images at a time). The tests hold
all three to ``torch.nn.LocalResponseNorm`` and to the literal formula in float64.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

import alexnet.models.native as native
from alexnet import checks
from alexnet.errors import ConfigError
from alexnet.models.architecture import ALPHA_CONVENTIONS
from alexnet.models.architecture import MAX_LRN_SIZE as MAX_SIZE

_F = checks.Fields(ConfigError, where="LocalResponseNorm")  # "LocalResponseNorm: field 'k' must be ..., got ..."


def check_arguments(size: int, alpha: float, beta: float, k: float, alpha_convention: str = "per_size") -> None:
    """Raise ConfigError, naming the argument and its value, unless every LRN constant is usable.

    The one check for the module and both functions, through the checks every config uses: size (the paper's n,
    channels per window) an int in [1, MAX_SIZE], alpha, beta and k finite numbers >= 0 (the model config's own rule
    for lrn_alpha, lrn_beta, lrn_k), a known alpha convention. NumPy's integers and floats count as numbers."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = int(size)
    _F.integer(size, "size", 1, MAX_SIZE)
    for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
        real = isinstance(value, numbers.Real) and not isinstance(value, (bool, int))
        _F.number(float(value) if real else value, name, 0)
    _F.text(alpha_convention, "alpha_convention", choices=ALPHA_CONVENTIONS)


def channel_window(size: int, alpha_convention: str) -> tuple[int, int]:
    """Channels (before, after) channel i that enter its sum, under the given convention."""
    if alpha_convention == "per_size":
        return size // 2, (size - 1) // 2  # torch.nn.LocalResponseNorm's window
    return size // 2, size // 2  # the paper's j = i - n/2 .. i + n/2 (integer n/2)


def local_response_norm(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, alpha_convention: str = "per_size"
) -> torch.Tensor:
    """The paper's LRN across channels (dim 1) of an input shaped (B, C, ...)."""
    check_arguments(size, alpha, beta, k, alpha_convention)
    before, after, scale = _window_and_scale(x, size, alpha, alpha_convention)
    shape = x.shape
    # Under bf16/fp16 autocast the sum of squares and the power are taken in float32: k + alpha/n * sum is 2.0
    # plus a small term that half precision would round away (and sum errors would double the output's error).
    acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    squares = acc.square().reshape(shape[0], shape[1], -1)  # (B, C, L)
    # Zero-pad the channel axis so that every channel has a full window; channels outside [0, N-1] add nothing,
    # which is the paper's max(0, .) / min(N-1, .) bounds.
    padded = F.pad(squares, (0, 0, before, after))  # (B, before + C + after, L)
    window_sum = padded.unfold(1, before + after + 1, 1).sum(-1)  # (B, C, L)
    denominator = (k + scale * window_sum).pow(beta).reshape(shape)
    return (acc / denominator).to(x.dtype)


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def fast_local_response_norm(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, alpha_convention: str = "per_size"
) -> torch.Tensor:
    """The same numbers as `local_response_norm`, at a fraction of its cost (see `lrn_kernel`)."""
    check_arguments(size, alpha, beta, k, alpha_convention)
    before, after, scale = _window_and_scale(x, size, alpha, alpha_convention)
    if lrn_kernel(x) == "native":
        return _NativeLRN.apply(x, before, after, scale, beta, k)
    return _FastLRN.apply(x, before, after, scale, beta, k)


def lrn_kernel(x: torch.Tensor) -> str:
    """Which kernel `fast_local_response_norm` runs for x: "native" (csrc/lrn.c) or "python" (`_FastLRN`).

    Native for float32 CPU tensors, contiguous or channels_last, once the C file has built (ALEXNET_NATIVE_LRN=0
    turns it off). bf16 stays in Python: there the convolutions, not LRN, dominate the step. Tracers (torch.compile,
    export) cannot see into a ctypes call, so they get the Python kernel (the module gives them the reference).
    """
    return "native" if not _tracing() and native.usable(x) else "python"


def _window_and_scale(x: torch.Tensor, size: int, alpha: float, alpha_convention: str) -> tuple[int, int, float]:
    """(channels before, channels after, the factor on the sum of squares), after checking x's shape.

    The window is clamped to C - 1 channels each side: those further away are outside [0, C - 1] for every
    channel and add nothing, so the numbers are the same and no kernel pads or loops over an n wider than x."""
    if x.dim() < 3:
        raise ConfigError(
            f"LocalResponseNorm expects an input shaped (B, C, ...) with 3 or more dims, got {tuple(x.shape)}"
        )
    before, after = channel_window(size, alpha_convention)
    reach = max(x.shape[1] - 1, 0)
    return min(before, reach), min(after, reach), (alpha / size if alpha_convention == "per_size" else alpha)


class _FastLRN(torch.autograd.Function):
    """LRN with a closed-form backward, evaluated CHUNK images at a time, every result written in place.

    Why: torch's LRN (pad + avg_pool3d + pow, with autograd through each) costs more than the convolution before
    it on a CPU, and has no bf16 CPU kernel. Chunks of a few images keep the temporaries in the cores' caches and
    reuse the allocator's blocks (a whole-batch temporary after conv1 is 74 MB at batch 64, and each fresh one
    page-faults). With d = k + scale * S (S the window's sum of squares) and s = d^-beta, the output is b = a * s and

        dL/da_j = g_j s_j - 2 scale beta a_j sum_{i : j in window(i)} g_i a_i s_i / d_i

    where the sum runs over the forward window mirrored (before and after swapped). Forward: 8 passes over the
    chunk (fill, n shifted multiply-adds, pow, multiply); backward: 9.
    """

    CHUNK = 8  # images per pass: 8 x 96 x 55 x 55 float32 is 9 MB (measured: 1 to 16 within 15%, 64 slower)

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
            a, d, s = x[chunk].to(acc), d_all[chunk], s_all[chunk]
            d.fill_(k)
            _add_window(d, a, a, before, after, scale)  # d = k + scale * sum of a^2 over the window
            torch.pow(d, -beta, out=s)
            torch.mul(a, s, out=out[chunk])
        ctx.save_for_backward(x, d_all, s_all)
        ctx.window = (before, after, scale, beta)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, d_all, s_all = ctx.saved_tensors
        before, after, scale, beta = ctx.window
        grad_in = torch.empty_like(x)
        acc = d_all.dtype
        for i in range(0, x.shape[0], _FastLRN.CHUNK):
            chunk = slice(i, i + _FastLRN.CHUNK)
            d, s = d_all[chunk], s_all[chunk]
            a, g = x[chunk].to(acc), grad_out[chunk].to(acc)
            q = torch.mul(g, a).mul_(s).div_(d)  # g_i a_i s_i / d_i
            t = q.clone()  # the window's centre; then its neighbours, mirrored
            _add_window(t, q, None, after, before, 1.0, skip_centre=True)
            in_place = grad_in.dtype == acc  # bf16 gradients are computed in float32, then rounded once
            gi = grad_in[chunk] if in_place else torch.empty_like(q)
            torch.mul(g, s, out=gi)
            gi.addcmul_(a, t, value=-2.0 * scale * beta)
            if not in_place:
                grad_in[chunk] = gi
        return grad_in, None, None, None, None, None


class _NativeLRN(torch.autograd.Function):
    """`_FastLRN`'s formula in C (alexnet.models.native): one pass over memory forward, one backward.

    Only x is saved: the backward recomputes the denominators from it, which costs less than writing and reading
    them back (the kernel is bound by memory, not arithmetic).
    """

    @staticmethod
    def forward(ctx, x, before: int, after: int, scale: float, beta: float, k: float):
        ctx.save_for_backward(x)
        ctx.window = (before, after, scale, beta, k)
        return native.lrn(x, before, after, scale, beta, k)

    @staticmethod
    @once_differentiable  # the C backward builds no graph: a second derivative is an error, not silently zero
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return native.lrn(x, *ctx.window, grad=grad_out), None, None, None, None, None


def _add_window(out: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None, before: int, after: int,
                value: float, skip_centre: bool = False) -> None:
    """out[:, i] += value * sum_{j=i-before}^{i+after} u[:, j] * v[:, j] (v=None: u alone), zero outside [0, C-1].

    Shifted in-place (multiply-)adds on channel slices: one pass per window position, no padded copy, any dtype,
    contiguous and channels_last alike.
    """
    channels = u.shape[1]
    # Shifts of C or more move every channel out of range: skip them here too, so that an unclamped window costs
    # at most 2C - 1 passes, not one per shift (a window of 2**31 looped for hours).
    for shift in range(-min(before, channels - 1), min(after, channels - 1) + 1):  # channel i gains channel i + shift
        n = channels - abs(shift)
        if n <= 0 or (skip_centre and shift == 0):
            continue
        dst = out.narrow(1, max(0, -shift), n)
        src = u.narrow(1, max(0, shift), n)
        if v is None:
            dst.add_(src, alpha=value)
        else:
            dst.addcmul_(src, v.narrow(1, max(0, shift), n), value=value)


class LocalResponseNorm(nn.Module):
    """Cross-channel LRN with the paper's defaults (n=5, alpha=1e-4, beta=0.75, k=2); no parameters."""

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, alpha_convention: str = "per_size"
    ) -> None:
        super().__init__()
        check_arguments(size, alpha, beta, k, alpha_convention)
        self.size = int(size)
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
        constants = f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
        return f"{constants}, alpha_convention={self.alpha_convention!r}"

