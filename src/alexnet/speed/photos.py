"""Real JPEG files: a folder of photo-like images, the images/s each input path feeds, and one epoch over them,
plain (the note's ImageFolder loop) and ours (the trainer)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from alexnet.data import BatchAugment, build_datasets, cache_split
from alexnet.models import AlexNet
from alexnet.runtime.distributed import DistInfo
from alexnet.speed.config import PHOTO_SIZE, BenchConfig
from alexnet.speed.steps import PLAIN, Mode, TrainerRun, optimizer_for, prepare, train_step
from alexnet.training.batches import BatchPlan, TrainBatches, resolve_prefetch


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


def input_pipelines(folder: Path, cache_folder: Path, cfg: BenchConfig) -> dict[str, float]:
    """images/s each input path feeds at the working size: the PIL loader with 0, 1, 2 workers (what the notes do
    every epoch), the one-time build of the uint8 cache, and batches from the cache through BatchAugment."""
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
    """What `alexnet train` does: scan + decode once into the uint8 cache, then its own batch source (TrainBatches:
    whole-batch augmentation into reused buffers), epoch function and optimizer."""
    start = time.perf_counter()
    bundle = build_datasets(str(folder), image_size=cfg.image_size, in_channels=model.config.in_channels,
                            preset="seed", val_split=0.0, seed=0)
    cached = cache_split(bundle, "train", folder=str(cache_folder))
    prepare_s = time.perf_counter() - start
    generator = torch.Generator()
    augment = BatchAugment("seed", cfg.image_size, bundle.mean, bundle.std, train=True, generator=generator,
                           in_channels=model.config.in_channels)
    cpu = torch.device("cpu")
    source = TrainBatches(cached.images, cached.labels, augment, generator,
                          BatchPlan(min(cfg.batch_size, len(cached)), seed=0, info=DistInfo(), device=cpu),
                          prefetch=resolve_prefetch(None, cpu),
                          memory_format=torch.channels_last if mode.channels_last else torch.contiguous_format)
    trainer = TrainerRun(prepare(model, mode).train(), mode)
    rates = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        images = trainer.epoch_over(source)
        rates.append(images / (time.perf_counter() - start))
    return {"images_per_s": statistics.median(rates), "decode_and_cache_s": prepare_s, "images": len(cached)}
