"""This machine's ceilings: a large fp32 and bf16 matrix product (oneDNN/MKL) and a memory copy."""

from __future__ import annotations

import statistics
import time

import torch


def matmul_gflops(dtype: torch.dtype, n: int | None = None, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n matrix product: the most this machine does in this dtype.

    n None: the largest of 256, 512, 1024, 2048 whose product takes at most CEILING_PRODUCT_S here, so that a
    dtype that crawls (bf16 on AVX2: about 1 GFLOP/s) costs a second, not minutes, and a fast one is measured on
    a product large enough to reach the peak."""
    if n is None:
        n = 256
        while n < 2048 and _product_seconds(dtype, n) * 8 <= CEILING_PRODUCT_S:  # doubling n costs 8x
            n *= 2
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


CEILING_PRODUCT_S = 0.25  # at most this long for one product of the ceiling measurement


def _product_seconds(dtype: torch.dtype, n: int) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    torch.mm(a, b)
    return time.perf_counter() - start


def memcopy_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Median GB/s of copying a large buffer (read + write counted once each)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / statistics.median(times) / 1e9


def ceilings(repeats: int) -> dict[str, float]:
    return {
        "matmul_fp32_gflops": round(matmul_gflops(torch.float32, repeats=repeats), 1),
        "matmul_bf16_gflops": round(matmul_gflops(torch.bfloat16, repeats=repeats), 1),
        "memcopy_gbs": round(memcopy_gbs(repeats=repeats), 1),
    }
