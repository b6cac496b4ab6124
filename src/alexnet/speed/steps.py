"""Training steps and inference, two ways: the notes' plain loop, and ours (the trainer and the Predictor that
`alexnet train`, `eval` and `predict` run)."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.config import OptimSpec
from alexnet.errors import ConfigError
from alexnet.models import AlexNet
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.summary import summarize
from alexnet.runtime.amp import autocast
from alexnet.runtime.distributed import DistInfo
from alexnet.runtime.inference import InferenceOptions, Predictor
from alexnet.speed.config import BenchConfig

# The trainer's own functions, looked up on their modules at each call: the benchmark times the trainer as it is
# (tests/test_bench.py counts the calls through them).
from alexnet.training import epoch as training_epoch
from alexnet.training import optim as training_optim
from alexnet.training.epoch import EpochSettings, EpochTotals, WeightUpdate
from alexnet.training.optim import LRSchedule

BENCH_OPTIM = OptimSpec(opt="adam", lr=1e-4)  # both loops: the cats-vs-dogs note's optimizer, a small lr


@dataclass(frozen=True)
class Mode:
    """How a step runs: the notes' plain loop, or ours."""

    name: str
    amp: bool  # bf16 autocast
    channels_last: bool
    torch_lrn: bool  # torch.nn.LocalResponseNorm instead of our fast kernel
    fused_optimizer: bool  # Adam's fused kernel (what alexnet train uses) instead of one op per tensor and step
    trainer: bool  # steps through alexnet.training (train_one_epoch, build_optimizer), as `alexnet train` does


PLAIN = Mode("plain", amp=False, channels_last=False, torch_lrn=True, fused_optimizer=False, trainer=False)
# Ours in both precisions: which is faster depends on the CPU (AMX, AVX-512 bf16 dot products, AVX2 only:
# benchmarks/README.md). The train-step section times both and every later section uses the faster, named in the
# results.
OURS_FP32 = Mode("ours-fp32", amp=False, channels_last=True, torch_lrn=False, fused_optimizer=True, trainer=True)
OURS_BF16 = Mode("ours-bf16", amp=True, channels_last=True, torch_lrn=False, fused_optimizer=True, trainer=True)


def prepare(model: AlexNet, mode: Mode) -> nn.Module:
    """A copy of `model` as `mode` runs it (same weights)."""
    model = copy.deepcopy(model)
    if mode.torch_lrn:
        for name, module in list(model.features.named_children()):
            if isinstance(module, LocalResponseNorm):
                if module.alpha_convention != "per_size":
                    raise ConfigError("the plain loop's torch.nn.LocalResponseNorm only has the per_size convention")
                model.features.register_module(name, nn.LocalResponseNorm(module.size, module.alpha, module.beta, module.k))
    if mode.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def optimizer_for(net: nn.Module, mode: Mode) -> torch.optim.Optimizer:
    """Ours: the trainer's own optimizer (fused Adam); plain: the notes' Adam, one op per tensor and step."""
    if mode.trainer:
        return training_optim.build_optimizer(BENCH_OPTIM, net)
    return torch.optim.Adam(net.parameters(), lr=BENCH_OPTIM.lr, fused=mode.fused_optimizer or None)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, mode: Mode) -> float:
    """The notes' training step, as written there."""
    if mode.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast("cpu", torch.bfloat16 if mode.amp else None):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


class TrainerRun:
    """`alexnet train`'s own epoch function (`train_one_epoch`) and optimizer on `net`, fed by `source` (a batch
    source of alexnet.training.batches, or any object with len() and batches(epoch, start)): what a trainer change
    changes, the benchmark measures."""

    def __init__(self, net: nn.Module, mode: Mode):
        self.net, self.mode = net, mode
        self.optimizer = optimizer_for(net, mode)
        self.epoch = 0

    def epoch_over(self, source: Any) -> int:
        totals = EpochTotals()
        training_epoch.train_one_epoch(
            self.net, WeightUpdate(self.optimizer, LRSchedule(BENCH_OPTIM, 1, len(source))), source, self.epoch, 0,
            totals, EpochSettings(seed=0, info=DistInfo(), device=torch.device("cpu"),
                                  amp_dtype=torch.bfloat16 if self.mode.amp else None,
                                  channels_last=self.mode.channels_last, label_smoothing=0.0, sync_every=1),
        )
        self.epoch += 1
        return totals.count


class RepeatedBatch:
    """A batch source of one batch in memory, `steps` times: the model step alone, without data loading."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int):
        self.x, self.y, self.steps = x, y, steps

    def __len__(self) -> int:
        return self.steps

    def describe(self) -> str:
        return "one batch in memory"

    def batches(self, epoch: int, start: int):
        for step in range(start, self.steps):
            yield step, self.x, self.y, len(self.y)


def training_flops_per_image(model: AlexNet) -> float:
    """Forward FLOPs x 3: the backward pass costs about two forwards (input and weight gradients)."""
    return 3 * 2 * summarize(model.config).macs


def time_train_steps(model: AlexNet, mode: Mode, cfg: BenchConfig, steps: int | None = None) -> float:
    """Median images/s of the model step alone, on a batch already in memory: `steps` per pass (default
    cfg.steps, else 1), `cfg.repeats` passes, after one warm-up step. Ours steps through the trainer."""
    steps = steps or cfg.steps or 1
    net = prepare(model, mode).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, model.config.in_channels, cfg.image_size, cfg.image_size, generator=gen)
    y = torch.randint(0, model.config.num_classes, (cfg.batch_size,), generator=gen)
    if mode.trainer:
        trainer = TrainerRun(net, mode)
        # Laid out as the trainer's batch source lays its buffers out (its .contiguous() is then free).
        x = x.contiguous(memory_format=torch.channels_last if mode.channels_last else torch.contiguous_format)

        def run(n: int) -> None:
            trainer.epoch_over(RepeatedBatch(x, y, n))
    else:
        optimizer = optimizer_for(net, mode)

        def run(n: int) -> None:
            for _ in range(n):
                train_step(net, optimizer, x, y, mode)
    run(1)  # warm-up: oneDNN primitive creation, allocator growth
    rates = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        run(steps)
        rates.append(steps * cfg.batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def time_inference(model: AlexNet, mode: Mode, cfg: BenchConfig, runtime: str = "torch") -> dict[str, float]:
    """Median batch-`batch_size` images/s and batch-1 latency in ms. Plain: fp32 eager under no_grad, as the
    note's TestNet.py; ours: the Predictor that `alexnet eval` and `alexnet predict` run, in PyTorch or, with
    `runtime`, in ONNX Runtime (int8 calibrated on the same random batches: values do not change int8 speed)."""
    gen = torch.Generator().manual_seed(0)
    shape = (model.config.in_channels, cfg.image_size, cfg.image_size)
    batch, single = torch.randn(cfg.batch_size, *shape, generator=gen), torch.randn(1, *shape, generator=gen)
    if mode is PLAIN:
        net = prepare(model, PLAIN).eval()

        def forward(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return net(x)
    elif runtime != "torch":
        forward = Predictor(copy.deepcopy(model), torch.device("cpu"), InferenceOptions(runtime=runtime),
                            calibration=lambda: batch.split(16))
    else:
        forward = Predictor(prepare(model, mode), torch.device("cpu"),
                            InferenceOptions(amp="bf16" if mode.amp else "none", channels_last=mode.channels_last))

    def run(x: torch.Tensor, times: int) -> float:
        forward(x)  # warm-up
        start = time.perf_counter()
        for _ in range(times):
            forward(x)
        return (time.perf_counter() - start) / times

    batch_s = statistics.median(run(batch, 1) for _ in range(cfg.repeats))
    single_s = statistics.median(run(single, 5) for _ in range(cfg.repeats))
    return {"images_per_s": cfg.batch_size / batch_s, "latency_ms": 1e3 * single_s}


# --- end to end on JPEG files ----------------------------------------------------------------------------------
