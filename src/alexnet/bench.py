"""Speed, measured: this machine's ceilings, then the notes' plain loop and ours side by side on the same data.

    alexnet bench [--model alexnet-bn] [--image-size 227] [--batch-size 64] [--repeats 3] [--json FILE]

Every figure is a median over `repeats` timed passes taken in this one process, and the headline is a ratio of
two figures taken in the same run (ours / plain), because absolute numbers move with the machine's load.

Before anything else it asks the precision probe (alexnet.precision) whether bf16 is fast on this CPU, and times
one training step to size the rest (`plan_work`): on a CPU where bf16 crawls (AVX2 only) the bf16 mode is skipped
and said so, and the default run ends in minutes on the slowest machine seen here. Each section prints its
progress and its time.

- ceilings: a large fp32 and bf16 matrix product (oneDNN/MKL) and a memory copy: what the hardware gives.
- train step: images/s of forward + backward + Adam on batches already in memory. "plain" is the notes' loop:
  fp32, contiguous, eager, torch.nn.LocalResponseNorm where the model has LRN, Adam one op at a time. "ours" is
  channels_last with the fast LRN kernel and Adam's fused kernel, as alexnet train runs, in fp32 and in bf16 autocast: the faster of the two on this machine is used from then on. Achieved FLOP/s = images/s x 3 x the forward
  FLOPs (forward + backward ~ 3 forwards), against the ceiling of the same dtype.
- LRN cost: the paper model's step vs the same model with norm="none", ours; the target is >= 85%.
- data paths: images/s fed by the PIL loader (0, 1, 2 workers), the cache build, and cache + BatchAugment.
- end to end: one epoch over real 500x375 JPEG files. Plain: torchvision's ImageFolder + PIL transforms (the note's
  Resize(227) / ToTensor / Normalize), a DataLoader with no workers, the plain step. Ours: the uint8 cache (decoded
  once, timed apart) + whole-batch augmentation + our step.
- inference: batch-64 images/s and batch-1 latency, plain (fp32 eager, no_grad) vs ours (the Predictor of
  `alexnet eval` / `alexnet predict`: inference mode, channels_last, in the precision chosen above), and vs
  `--runtime onnxruntime-int8` (static int8 in ONNX Runtime; its accuracy is checked by `alexnet export`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alexnet.config import BENCH_SECTIONS
from alexnet.errors import ConfigError
from alexnet.lrn import LocalResponseNorm
from alexnet.models import AlexNet, build_model
from alexnet.shapes import summarize

PHOTO_SIZE = (500, 375)  # (width, height) of a typical Kaggle cats-vs-dogs photo


@dataclass(frozen=True)
class BenchConfig:
    model: str = "alexnet-bn"  # the cats-vs-dogs note's model: the workload users bring
    image_size: int = 227
    batch_size: int = 64
    num_classes: int = 2
    width_mult: float = 1.0  # < 1 only for quick checks: the headline figures are at full width
    steps: int | None = None  # timed training steps per pass, after one warm-up step (None: planned, see plan_work)
    repeats: int = 3  # passes; every figure is the median over them
    photos: int | None = None  # JPEG files in the end-to-end epoch (None: planned, at most MAX_PHOTOS)
    lrn_model: str = "alexnet"  # the paper model, for the LRN cost
    sections: tuple[str, ...] = BENCH_SECTIONS

    def __post_init__(self) -> None:
        for name in ("image_size", "batch_size", "num_classes", "steps", "repeats", "photos"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"bench {name} must be >= 1, got {getattr(self, name)}")
        unknown = set(self.sections) - set(BenchConfig.sections)
        if unknown:
            raise ConfigError(f"unknown bench section(s) {', '.join(sorted(unknown))}; valid: {', '.join(BenchConfig.sections)}")


# --- the machine's ceilings ----------------------------------------------------------------------------------------


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


# --- plain and ours -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """How a step runs: the notes' plain loop, or ours."""

    name: str
    amp: bool  # bf16 autocast
    channels_last: bool
    torch_lrn: bool  # torch.nn.LocalResponseNorm instead of our fast kernel
    fused_optimizer: bool  # Adam's fused kernel (what alexnet train uses) instead of one op per tensor and step


PLAIN = Mode("plain", amp=False, channels_last=False, torch_lrn=True, fused_optimizer=False)
# Ours in both precisions: bf16 is the fast one where the CPU has AMX (or on a GPU), fp32 where it has only
# AVX-512 bf16 dot products (bf16 convolutions measured 0.6x fp32 on the build machine). The train-step section
# times both and every later section uses the faster, named in the results.
OURS_FP32 = Mode("ours-fp32", amp=False, channels_last=True, torch_lrn=False, fused_optimizer=True)
OURS_BF16 = Mode("ours-bf16", amp=True, channels_last=True, torch_lrn=False, fused_optimizer=True)


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
    return torch.optim.Adam(net.parameters(), lr=1e-4, fused=mode.fused_optimizer or None)


def autocast(mode: Mode):
    return torch.autocast("cpu", dtype=torch.bfloat16) if mode.amp else contextlib.nullcontext()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, mode: Mode) -> float:
    if mode.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(mode):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def training_flops_per_image(model: AlexNet) -> float:
    """Forward FLOPs x 3: the backward pass costs about two forwards (input and weight gradients)."""
    return 3 * 2 * summarize(model.config).macs


def time_train_steps(model: AlexNet, mode: Mode, cfg: BenchConfig, steps: int | None = None) -> float:
    """Median images/s of the model step alone, on a batch already in memory: `steps` per pass (default
    cfg.steps, else 1), `cfg.repeats` passes, after one warm-up step."""
    steps = steps or cfg.steps or 1
    net = prepare(model, mode).train()
    optimizer = optimizer_for(net, mode)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(cfg.batch_size, model.config.in_channels, cfg.image_size, cfg.image_size, generator=gen)
    y = torch.randint(0, model.config.num_classes, (cfg.batch_size,), generator=gen)
    train_step(net, optimizer, x, y, mode)  # warm-up: oneDNN primitive creation, allocator growth
    rates = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        for _ in range(steps):
            train_step(net, optimizer, x, y, mode)
        rates.append(steps * cfg.batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def time_inference(model: AlexNet, mode: Mode, cfg: BenchConfig, runtime: str = "torch") -> dict[str, float]:
    """Median batch-`batch_size` images/s and batch-1 latency in ms. Plain: fp32 eager under no_grad, as the
    note's TestNet.py; ours: the Predictor that `alexnet eval` and `alexnet predict` run, in PyTorch or, with
    `runtime`, in ONNX Runtime (int8 calibrated on the same random batches: values do not change int8 speed)."""
    from alexnet.inference import InferenceOptions, Predictor

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


def make_photos(root: Path, n: int, seed: int = 0, class_folders: bool = True) -> Path:
    """`n` photo-like 500x375 JPEGs (smooth colour fields, a few discs, sensor noise, quality 90), as cat/ and dog/
    class folders (what ImageFolder reads) or flat Kaggle names (cat.0.jpg)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = PHOTO_SIZE
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(5):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 120)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        pixels = np.asarray(img).astype(np.int16) + rng.normal(0, 6, (h, w, 3)).astype(np.int16)
        label = ("cat", "dog")[i % 2]
        path = root / label / f"{i}.jpg" if class_folders else root / f"{label}.{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def time_loader(dataset, batch_size: int, workers: int, batches: int, repeats: int) -> list[float]:
    """images/s a DataLoader over `dataset` feeds, worker start-up (the first batch) excluded; one rate per pass."""
    rates = []
    for r in range(repeats):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                             generator=torch.Generator().manual_seed(r))
        it = iter(loader)
        next(it)
        start, n = time.perf_counter(), 0
        for _ in range(batches):
            try:
                x, _ = next(it)
            except StopIteration:
                break
            n += x.shape[0]
        rates.append(n / (time.perf_counter() - start))
        del it, loader
    return rates


def time_batch_augment(cached, augment, batch_size: int, batches: int, repeats: int, reuse: bool) -> list[float]:
    """images/s of random batches from the uint8 cache through whole-batch augmentation; `reuse` writes every batch
    into one float buffer (what the trainer does) instead of a new tensor."""
    rates = []
    for r in range(repeats):
        gen = torch.Generator().manual_seed(r)
        out = augment(cached.images[:batch_size])  # warm-up
        start, n = time.perf_counter(), 0
        for _ in range(batches):
            index = torch.randint(0, len(cached), (batch_size,), generator=gen)
            n += augment(cached.images[index], out=out if reuse else None).shape[0]
        rates.append(n / (time.perf_counter() - start))
    return rates


def data_paths(folder: Path, cache_folder: Path, cfg: BenchConfig) -> dict[str, float]:
    """images/s each input path feeds at the working size: the PIL loader with 0, 1, 2 workers (what the notes do
    every epoch), the one-time build of the uint8 cache, and batches from the cache through BatchAugment."""
    from alexnet.data import BatchAugment, build_datasets, cache_split

    bundle = build_datasets(str(folder), image_size=cfg.image_size, preset="seed", val_split=0.0, seed=0)
    batches = max(1, min(4, len(bundle.train) // cfg.batch_size - 1))
    rates = {}
    for workers in (0, 1, 2):
        rates[f"pil_loader_{workers}_workers"] = statistics.median(
            time_loader(bundle.train, cfg.batch_size, workers, batches, cfg.repeats))
    start = time.perf_counter()
    cached = cache_split(bundle, "train", folder=str(cache_folder))
    rates["cache_build"] = len(cached) / (time.perf_counter() - start)
    augment = BatchAugment("seed", cfg.image_size, bundle.mean, bundle.std, train=True,
                           generator=torch.Generator().manual_seed(0))
    rates["cache_batch_augment"] = statistics.median(
        time_batch_augment(cached, augment, cfg.batch_size, 4 * batches, cfg.repeats, reuse=True))
    return {k: round(v, 1) for k, v in rates.items()}


def plain_epoch(model: AlexNet, folder: Path, cfg: BenchConfig) -> float:
    """The note's TrainingNet.py: ImageFolder + Resize/ToTensor/Normalize, DataLoader(shuffle), fp32 eager Adam."""
    import torchvision
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.Resize(size=(cfg.image_size, cfg.image_size)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    dataset = torchvision.datasets.ImageFolder(root=str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, num_workers=0)
    net = prepare(model, PLAIN).train()
    optimizer = optimizer_for(net, PLAIN)
    start = time.perf_counter()
    for x, y in loader:
        train_step(net, optimizer, x, y, PLAIN)
    return len(dataset) / (time.perf_counter() - start)


def our_epochs(model: AlexNet, mode: Mode, folder: Path, cache_folder: Path, cfg: BenchConfig) -> dict[str, float]:
    """What `alexnet train` does: scan + decode once into the uint8 cache, then batches augmented as tensors."""
    from alexnet.data import BatchAugment, build_datasets, cache_split

    start = time.perf_counter()
    bundle = build_datasets(str(folder), image_size=cfg.image_size, in_channels=model.config.in_channels,
                            preset="seed", val_split=0.0, seed=0)
    cached = cache_split(bundle, "train", folder=str(cache_folder))
    prepare_s = time.perf_counter() - start
    augment = BatchAugment("seed", cfg.image_size, bundle.mean, bundle.std, train=True, generator=torch.Generator().manual_seed(0))
    net = prepare(model, mode).train()
    optimizer = optimizer_for(net, mode)
    n = len(cached.labels)
    # As alexnet train: one reused float buffer, laid out as the model wants its input.
    memory_format = torch.channels_last if mode.channels_last else torch.contiguous_format
    buffer = torch.empty(min(cfg.batch_size, n), model.config.in_channels, cfg.image_size, cfg.image_size,
                         memory_format=memory_format)
    rates = []
    for epoch in range(cfg.repeats):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        start = time.perf_counter()
        for i in range(0, n, cfg.batch_size):
            index = order[i : i + cfg.batch_size]
            batch = torch.index_select(cached.images, 0, index)
            out = buffer if len(index) == len(buffer) else None
            train_step(net, optimizer, augment(batch, out=out), torch.index_select(cached.labels, 0, index), mode)
        rates.append(n / (time.perf_counter() - start))
    return {"images_per_s": statistics.median(rates), "decode_and_cache_s": prepare_s, "images": n}


# --- planning the work --------------------------------------------------------------------------------------------

# One `alexnet bench` with the defaults must end within about BUDGET_S on the slowest CPU seen here (AVX2 only,
# 2 cores: a 227 px training step of alexnet-bn at batch 64 takes several seconds there). The bench times one
# training step first and sizes the rest from it: timed steps per pass and photos in the end-to-end epoch.
BUDGET_S = 480.0
PASS_S = 3.0  # a timed pass of training steps lasts at least this long where the step allows (fewer, noisier)
MAX_STEPS = 5
MAX_PHOTOS = 192
DECODE_S = 0.01  # seconds to decode and resize one 500x375 JPEG with PIL (benchmarks/README.md, data paths)
E2E_SHARE = 0.3  # of the budget, for the end-to-end section (plain and ours, each cfg.repeats epochs)


@dataclass(frozen=True)
class WorkPlan:
    step_s: float  # one plain training step of the main model, measured
    steps: int  # timed steps per pass
    photos: int  # JPEG files in the end-to-end epoch
    bf16: bool  # the bf16 mode is timed (not where the precision probe says it crawls)
    note: str  # what was planned and why, for the log


def plan_work(cfg: BenchConfig, step_s: float, bf16: bool) -> WorkPlan:
    """Steps per pass and photos from one measured step; what the user gave explicitly is kept as given."""
    steps = cfg.steps or max(1, min(MAX_STEPS, round(PASS_S / max(step_s, 1e-6))))
    per_photo = cfg.repeats * (2 * step_s / cfg.batch_size + DECODE_S)  # plain and ours, repeats epochs each
    fits = int(E2E_SHARE * BUDGET_S / per_photo)
    photos = cfg.photos or max(min(cfg.batch_size, MAX_PHOTOS), min(MAX_PHOTOS, fits))
    note = (f"one training step takes {step_s:.2f} s here: {steps} timed step(s) per pass, {cfg.repeats} passes, "
            f"{photos} photos in the end-to-end epoch" + ("" if bf16 else "; bf16 is not timed (see above)"))
    return WorkPlan(step_s=step_s, steps=steps, photos=photos, bf16=bf16, note=note)


def measure_step_seconds(model: AlexNet, cfg: BenchConfig) -> float:
    """One plain training step after a warm-up step: the unit every later section is sized in."""
    rate = time_train_steps(model, PLAIN, BenchConfig(**{**asdict(cfg), "repeats": 1}), steps=1)
    return cfg.batch_size / rate


# --- the whole run ----------------------------------------------------------------------------------------------


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Progress:
    """`[2/6] training steps ...` before each section and its time after, so a slow machine is never silent."""

    def __init__(self, sections: tuple[str, ...], log):
        self.total, self.done, self.log = len(sections), 0, log
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def section(self, name: str, what: str):
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {what} ...")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        self.log(f"      {name} done in {self.seconds[name]:.1f} s")


def run(cfg: BenchConfig, log=print) -> dict[str, Any]:
    from alexnet import precision

    start = time.perf_counter()
    torch.manual_seed(0)
    results: dict[str, Any] = {"config": asdict(cfg), "torch": torch.__version__, "threads": torch.get_num_threads()}
    probe = precision.probe()
    results["precision"] = precision.summary(probe)
    bf16 = probe.speed("bf16")
    log(f"CPU: {probe.cpu.describe()}; bf16 measured {bf16.slowdown:.1f}x the time of fp32 "
        f"(precision probe{', cached' if probe.cached else ''})"
        + (": bf16 crawls here, so its training mode is skipped" if bf16.crawls else ""))
    model = build_model(cfg.model, num_classes=cfg.num_classes, image_size=cfg.image_size, width_mult=cfg.width_mult)
    flops = training_flops_per_image(model)
    results["train_flop_per_image"] = int(flops)
    progress = Progress(("plan", *cfg.sections), log)

    with progress.section("plan", "timing one training step to size the run"):
        plan = plan_work(cfg, measure_step_seconds(model, cfg), bf16=not bf16.crawls)
    log(f"      plan: {plan.note}")
    results["plan"] = asdict(plan)

    if "ceilings" in cfg.sections:
        with progress.section("ceilings", "measuring the machine's ceilings"):
            results["ceilings"] = ceilings(cfg.repeats)
    ceiling = results.get("ceilings", {})

    ours = OURS_FP32
    if "train" in cfg.sections:
        with progress.section("train", f"training steps: {cfg.model} at {cfg.image_size}, batch {cfg.batch_size}"):
            section: dict[str, Any] = {}
            modes = [(PLAIN, "matmul_fp32_gflops"), (OURS_FP32, "matmul_fp32_gflops")]
            if plan.bf16:
                modes.append((OURS_BF16, "matmul_bf16_gflops"))
            else:
                section[OURS_BF16.name] = {"skipped": f"bf16 measured {bf16.slowdown:.1f}x slower than fp32 here"}
            for mode, ceiling_key in modes:
                rate = time_train_steps(model, mode, cfg, plan.steps)
                row = {"images_per_s": round(rate, 1), "gflops": round(rate * flops / 1e9, 3)}
                if ceiling_key in ceiling:
                    row["of_ceiling"] = round(row["gflops"] / ceiling[ceiling_key], 3)
                section[mode.name] = row
            timed = [m for m, _ in modes if m is not PLAIN]
            ours = max(timed, key=lambda m: section[m.name]["images_per_s"])
            section["ours"] = ours.name
            section["ours_over_plain"] = round(section[ours.name]["images_per_s"] / section["plain"]["images_per_s"], 2)
            results["train_step"] = section
    results["ours"] = ours.name

    if "lrn" in cfg.sections:
        with progress.section("lrn", f"LRN cost: {cfg.lrn_model} with and without LRN, plain and ours"):
            size = {"num_classes": cfg.num_classes, "image_size": cfg.image_size, "width_mult": cfg.width_mult}
            paper, without = build_model(cfg.lrn_model, **size), build_model(cfg.lrn_model, norm="none", **size)
            with_lrn, no_lrn = (time_train_steps(paper, ours, cfg, plan.steps),
                                time_train_steps(without, ours, cfg, plan.steps))
            plain_lrn, plain_none = (time_train_steps(paper, PLAIN, cfg, plan.steps),
                                     time_train_steps(without, PLAIN, cfg, plan.steps))
            results["lrn"] = {
                "ours_with_lrn": round(with_lrn, 1), "ours_without_lrn": round(no_lrn, 1),
                "ours_ratio": round(with_lrn / no_lrn, 3),
                "plain_with_lrn": round(plain_lrn, 1), "plain_without_lrn": round(plain_none, 1),
                "plain_ratio": round(plain_lrn / plain_none, 3),
            }

    if {"data", "end_to_end"} & set(cfg.sections):
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_photos(Path(tmp) / "photos", plan.photos)
            photos = f"{plan.photos} JPEG files of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}"
            if "data" in cfg.sections:
                with progress.section("data", f"data paths: {photos}"):
                    results["data"] = data_paths(folder, Path(tmp) / "cache-data", cfg)
            if "end_to_end" in cfg.sections:
                with progress.section("end_to_end", f"end to end: one epoch over {photos}, plain and ours"):
                    plain = statistics.median(plain_epoch(model, folder, cfg) for _ in range(cfg.repeats))
                    mine = our_epochs(model, ours, folder, Path(tmp) / "cache", cfg)
                    results["end_to_end"] = {
                        "photos": plan.photos,
                        "plain_images_per_s": round(plain, 1),
                        "ours_images_per_s": round(mine["images_per_s"], 1),
                        "ours_over_plain": round(mine["images_per_s"] / plain, 2),
                        "ours_decode_and_cache_s": round(mine["decode_and_cache_s"], 1),
                    }

    if "inference" in cfg.sections:
        with progress.section("inference", f"inference: batch {cfg.batch_size} and batch 1, PyTorch and ONNX Runtime"):
            plain, mine = time_inference(model, PLAIN, cfg), time_inference(model, ours, cfg)
            results["inference"] = {
                "plain_images_per_s": round(plain["images_per_s"], 1),
                "ours_images_per_s": round(mine["images_per_s"], 1),
                "throughput_ratio": round(mine["images_per_s"] / plain["images_per_s"], 2),
                "plain_latency_ms": round(plain["latency_ms"], 1), "ours_latency_ms": round(mine["latency_ms"], 1),
                "latency_ratio": round(mine["latency_ms"] / plain["latency_ms"], 2),
            }
            if _has_onnxruntime():
                q = time_inference(model, ours, cfg, runtime="onnxruntime-int8")
                results["inference"].update({
                    "int8_images_per_s": round(q["images_per_s"], 1), "int8_latency_ms": round(q["latency_ms"], 1),
                    "int8_throughput_ratio": round(q["images_per_s"] / plain["images_per_s"], 2),
                    "int8_latency_ratio": round(q["latency_ms"] / plain["latency_ms"], 2),
                })
    results["section_seconds"] = progress.seconds
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    results["peak_rss_mb"] = round(peak_rss_mb())
    return results


def format_table(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [f"alexnet bench: {cfg['model']} at {cfg['image_size']}, batch {cfg['batch_size']}, "
             f"torch {results['torch']}, {results['threads']} threads; medians of {cfg['repeats']}"]
    if "precision" in results:
        p = results["precision"]
        cpu, b16 = p["cpu"], p["speeds"]["bf16"]
        extras = [n for n, on in (("AMX", cpu["amx"]), ("AVX512-BF16", cpu["avx512_bf16"])) if on]
        lines.append(f"CPU: {cpu['model']}, capability {cpu['capability']}" + (f" + {' + '.join(extras)}" if extras
                     else ", no AMX") + f"; bf16 takes {b16['slowdown']:.1f}x the time of fp32 (precision probe)"
                     + (": bf16 skipped" if b16["crawls"] else ""))
    if "ceilings" in results:
        c = results["ceilings"]
        lines.append(f"machine ceilings: matmul fp32 {c['matmul_fp32_gflops']} GFLOP/s, bf16 {c['matmul_bf16_gflops']} "
                     f"GFLOP/s, memory copy {c['memcopy_gbs']} GB/s")
    lines.append(f"{'measure':<34}{'plain':>12}{'ours':>12}{'ours/plain':>12}")

    def row(label: str, plain: float, ours: float, ratio: float) -> None:
        lines.append(f"{label:<34}{plain:>12,.1f}{ours:>12,.1f}{ratio:>11.2f}x")

    if "train_step" in results:
        t = results["train_step"]
        o = t[t["ours"]]
        row("train step, images/s", t["plain"]["images_per_s"], o["images_per_s"], t["ours_over_plain"])
        row("train step, GFLOP/s", t["plain"]["gflops"], o["gflops"], t["ours_over_plain"])
        if "of_ceiling" in o:
            lines.append(f"{'  share of the dtype ceiling':<34}{t['plain']['of_ceiling']:>12.0%}{o['of_ceiling']:>12.0%}")
        f32, b16 = t["ours-fp32"], t["ours-bf16"]
        bf16_rate = f"{b16['images_per_s']} images/s" if "images_per_s" in b16 else f"not timed ({b16['skipped']})"
        lines.append(f"  ours = {t['ours']}, the faster here: fp32 + channels_last {f32['images_per_s']} images/s, "
                     f"bf16 + channels_last {bf16_rate}")
    if "data" in results:
        d = results["data"]
        lines.append("data paths, images/s fed at the working size: PIL loader with 0/1/2 workers "
                     f"{d['pil_loader_0_workers']:,.0f}/{d['pil_loader_1_workers']:,.0f}/{d['pil_loader_2_workers']:,.0f}; "
                     f"uint8 cache build {d['cache_build']:,.0f}; cache + BatchAugment {d['cache_batch_augment']:,.0f}")
    if "end_to_end" in results:
        e = results["end_to_end"]
        row("end to end on JPEGs, images/s", e["plain_images_per_s"], e["ours_images_per_s"], e["ours_over_plain"])
        lines.append(f"{'  one-time decode into the cache':<34}{'':>12}{e['ours_decode_and_cache_s']:>11.1f}s")
    if "inference" in results:
        i = results["inference"]
        row(f"inference batch {cfg['batch_size']}, images/s", i["plain_images_per_s"], i["ours_images_per_s"], i["throughput_ratio"])
        row("inference batch 1, latency ms", i["plain_latency_ms"], i["ours_latency_ms"], i["latency_ratio"])
        if "int8_images_per_s" in i:
            row(f"  ONNX Runtime int8, batch {cfg['batch_size']}", i["plain_images_per_s"], i["int8_images_per_s"],
                i["int8_throughput_ratio"])
            row("  ONNX Runtime int8, batch 1 ms", i["plain_latency_ms"], i["int8_latency_ms"], i["int8_latency_ratio"])
    if "lrn" in results:
        r = results["lrn"]
        lines.append(f"LRN cost ({cfg['lrn_model']}): with LRN / without, train images/s: plain "
                     f"{r['plain_with_lrn']}/{r['plain_without_lrn']} = {r['plain_ratio']:.0%}, ours "
                     f"{r['ours_with_lrn']}/{r['ours_without_lrn']} = {r['ours_ratio']:.0%} (target >= 85%)")
    if "section_seconds" in results:
        spent = ", ".join(f"{k} {v:.0f}" for k, v in results["section_seconds"].items())
        lines.append(f"time spent, s: {spent}; total {results['total_seconds']:.0f} s")
    lines.append(f"peak resident memory of the run: {results['peak_rss_mb']:,} MB")
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(results, indent=2) + "\n")
