"""LRN forward + backward cost: torch.nn.LocalResponseNorm vs our reference formula vs the fast kernels.

    python benchmarks/bench_lrn.py [--batch 64] [--repeats 7]
    python benchmarks/bench_lrn.py --whole-model [--batch 64] [--repeats 5] [--steps 2]

Shapes are the paper model's two LRN layers at 227 (after conv1: 96x55x55; after conv2: 256x27x27). Medians over
repeats; the ratios in the same run are the figures to quote (the machine is shared and noisy). *fast* is the
Python kernel (`_FastLRN`, ALEXNET_NATIVE_LRN=0), *native* the C kernel the model runs on float32 (csrc/lrn.c).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from alexnet.models.lrn import fast_local_response_norm, local_response_norm, lrn_kernel

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


def python_kernel(x: torch.Tensor) -> torch.Tensor:
    """The Python `_FastLRN`, with the native kernel switched off for this call only."""
    before = os.environ.get("ALEXNET_NATIVE_LRN")
    os.environ["ALEXNET_NATIVE_LRN"] = "0"
    try:
        return fast_local_response_norm(x, **PAPER)
    finally:
        if before is None:
            os.environ.pop("ALEXNET_NATIVE_LRN")
        else:
            os.environ["ALEXNET_NATIVE_LRN"] = before


def native_kernel(x: torch.Tensor) -> torch.Tensor:
    if lrn_kernel(x) != "native":
        raise NotImplementedError("the native kernel does not take this tensor (bf16) or could not be built")
    return fast_local_response_norm(x, **PAPER)


def whole_model(batch: int, repeats: int, steps: int) -> None:
    """The paper model's training step (forward + backward + Adam, fp32, channels_last, as `alexnet bench` runs
    "ours") with LRN on the native kernel, on the Python kernel, and with norm="none"; the arms interleave within each
    repeat, in a rotating order, so that the machine's other load falls on all of them alike."""
    from alexnet.models import build_model
    from alexnet.speed.steps import OURS_FP32, prepare, train_step

    torch.manual_seed(0)
    paper = build_model("alexnet", image_size=227)
    arms = {"native": paper, "python": paper, "no_lrn": build_model("alexnet", image_size=227, norm="none")}
    x, y = torch.randn(batch, 3, 227, 227), torch.randint(0, paper.config.num_classes, (batch,))
    nets = {name: prepare(model, OURS_FP32).train() for name, model in arms.items()}
    optimizers = {name: torch.optim.Adam(net.parameters(), lr=1e-4) for name, net in nets.items()}

    def run(name: str, n: int) -> float:
        if name == "python":
            os.environ["ALEXNET_NATIVE_LRN"] = "0"
        try:
            start = time.perf_counter()
            for _ in range(n):
                train_step(nets[name], optimizers[name], x, y, OURS_FP32)
            return n * batch / (time.perf_counter() - start)
        finally:
            os.environ.pop("ALEXNET_NATIVE_LRN", None)

    for name in nets:
        run(name, 1)  # warm-up: oneDNN primitives, allocator
    rates: dict[str, list[float]] = {name: [] for name in nets}
    names = list(nets)
    for r in range(repeats):
        for name in names[r % 3 :] + names[: r % 3]:
            rates[name].append(run(name, steps))
        row = {name: round(v[-1], 2) for name, v in rates.items()}
        row |= {
            "native_over_no_lrn": round(row["native"] / row["no_lrn"], 3),
            "python_over_no_lrn": round(row["python"] / row["no_lrn"], 3),
        }
        print(json.dumps({"repeat": r, "images_per_s": row}), flush=True)
    ratios = {arm: [a / b for a, b in zip(rates[arm], rates["no_lrn"], strict=True)] for arm in ("native", "python")}
    print(
        json.dumps(
            {
                "median_images_per_s": {name: round(statistics.median(v), 2) for name, v in rates.items()},
                "median_native_over_no_lrn": round(statistics.median(ratios["native"]), 3),
                "median_python_over_no_lrn": round(statistics.median(ratios["python"]), 3),
                "threads": torch.get_num_threads(),
                "batch": batch,
                "steps_per_repeat": steps,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--whole-model", action="store_true", help="time the paper model's training step instead")
    parser.add_argument("--steps", type=int, default=2, help="training steps per repeat and arm (--whole-model)")
    args = parser.parse_args()
    if args.whole_model:
        whole_model(args.batch, args.repeats, args.steps)
        return
    impls = {
        "torch": lambda x: F.local_response_norm(x, **PAPER),
        "reference": lambda x: local_response_norm(x, **PAPER),
        "fast": python_kernel,
        "native": native_kernel,
    }
    rows = []
    for layer, chw in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = torch.randn(args.batch, *chw).to(dtype).contiguous(memory_format=fmt)
                row = {
                    "layer": layer,
                    "dtype": str(dtype).removeprefix("torch."),
                    "channels_last": fmt is torch.channels_last,
                }
                for name, fn in impls.items():
                    try:
                        row[f"{name}_ms"] = round(1e3 * time_fwd_bwd(fn, x, args.repeats), 1)
                    except (NotImplementedError, RuntimeError):
                        row[f"{name}_ms"] = None  # torch's LRN has no bf16 CPU kernel, nor has the native one
                if row["torch_ms"]:
                    row["torch_over_fast"] = round(row["torch_ms"] / row["fast_ms"], 2)
                if row["native_ms"]:
                    row["fast_over_native"] = round(row["fast_ms"] / row["native_ms"], 2)
                rows.append(row)
                print(json.dumps(row))


if __name__ == "__main__":
    main()
