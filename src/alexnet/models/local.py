"""A locally-connected layer: a convolution whose weights and biases differ at every output position.

cuda-convnet's `type=local` (its conv-local CIFAR-10 nets, section 3.3's footnote): each output position (y, x) has
its own filters, so the layer is built for one input size. The forward pass unfolds the input into patches
(F.unfold, as a convolution's im2col would) and multiplies each position's patches by that position's filters in
one batched product; autograd gives the backward. Tested against a loop over positions (tests/test_cuda_convnet.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.errors import ConfigError


class LocallyConnected2d(nn.Module):
    """(B, C_in, H, W) -> (B, C_out, H_out, W_out) with unshared weights (positions, C_out, C_in*k*k) and unshared
    biases (C_out, H_out, W_out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, input_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.input_size = input_size
        self.output_size = (input_size + 2 * padding - kernel_size) // stride + 1
        if self.output_size < 1:
            raise ConfigError(f"a {kernel_size}x{kernel_size} locally-connected layer (stride {stride}, padding "
                              f"{padding}) has no output position on a {input_size}x{input_size} input")
        positions = self.output_size ** 2
        self.weight = nn.Parameter(torch.empty(positions, out_channels, in_channels * kernel_size ** 2))
        self.bias = nn.Parameter(torch.empty(out_channels, self.output_size, self.output_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Each position's filters as a Conv2d's would start (Kaiming-uniform, a=sqrt(5)); biases from fan-in."""
        fan_in = self.weight.shape[-1]
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        if self.weight.is_meta:
            return
        nn.init.uniform_(self.weight, -bound, bound)  # = kaiming_uniform_(a=sqrt(5)) on this fan-in
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            raise ConfigError(f"this locally-connected layer was built for {self.input_size}x{self.input_size} "
                              f"inputs (its weights differ at each position), got {x.shape[-2]}x{x.shape[-1]}")
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)  # (B, C_in*k*k, L)
        out = torch.einsum("bkl,lok->bol", patches, self.weight)  # (B, C_out, L): position l's own filters
        out = out.reshape(x.shape[0], self.out_channels, self.output_size, self.output_size)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, input_size={self.input_size}, bias={self.bias is not None}")
