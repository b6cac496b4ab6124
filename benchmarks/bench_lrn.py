"""LRN forward + backward cost: torch.nn.LocalResponseNorm vs our reference formula vs the fast kernel.

    python benchmarks/bench_lrn.py [--batch 64] [--repeats 7]

Shapes are the paper model's two LRN layers at 227 (after conv1: 96x55x55; after conv2: 256x27x27). Medians over
repeats; the ratio torch/fast in the same run is the figure to quote (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from alexnet.lrn import fast_local_response_norm, local_response_norm

SHAPES = {"lrn1": (96, 55, 55), "lrn2": (256, 27, 27)}
PAPER = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


def time_fwd_bwd(fn, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first run warms the allocator up and is dropped
        xg = x.detach().requires_grad_()
        start = time.perf_counter()
        y = fn(xg)
        y.backward(torch.ones_like(y))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    impls = {
        "torch": lambda x: F.local_response_norm(x, **PAPER),
        "reference": lambda x: local_response_norm(x, **PAPER),
        "fast": lambda x: fast_local_response_norm(x, **PAPER),
    }
    rows = []
    for layer, chw in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(args.batch, *chw).to(dtype).contiguous(memory_format=fmt)
                row = {"layer": layer, "dtype": str(dtype).removeprefix("torch."),
                       "channels_last": fmt is torch.channels_last}
                for name, fn in impls.items():
                    try:
                        row[f"{name}_ms"] = round(1e3 * time_fwd_bwd(fn, x, args.repeats), 1)
                    except (NotImplementedError, RuntimeError):
                        row[f"{name}_ms"] = None  # torch's LRN has no bf16 CPU kernel
                if row["torch_ms"]:
                    row["torch_over_fast"] = round(row["torch_ms"] / row["fast_ms"], 2)
                rows.append(row)
                print(json.dumps(row))


if __name__ == "__main__":
    main()
