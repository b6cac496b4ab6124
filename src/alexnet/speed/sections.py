"""The sections of `alexnet bench`, one function each, registered under the name of the results they write; `run`
plans the work from one measured step and runs the chosen sections in order."""

from __future__ import annotations

import contextlib
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from alexnet.models import AlexNet, build_model
from alexnet.runtime import precision
from alexnet.speed.config import PHOTO_SIZE, SECTIONS, BenchConfig
from alexnet.speed.machine import ceilings
from alexnet.speed.photos import input_pipelines, make_photos, our_epochs, plain_epoch
from alexnet.speed.plan import WorkPlan, measure_step_seconds, plan_work
from alexnet.speed.steps import (
    OURS_BF16,
    OURS_FP32,
    PLAIN,
    Mode,
    time_inference,
    time_train_steps,
    training_flops_per_image,
)


@dataclass
class Run:
    """What the sections share: the config, the model, the plan, the results so far and the mode chosen as ours."""

    cfg: BenchConfig
    model: AlexNet
    plan: WorkPlan
    bf16_slowdown: float
    results: dict[str, Any]
    ours: Mode = OURS_FP32
    scratch: Path | None = None  # a temporary folder for the photo sections
    photos: Path | None = None  # the JPEG folder, made by the first photo section

    def photo_folder(self) -> Path:
        if self.photos is None:
            self.photos = make_photos(self.scratch / "photos", self.plan.photos)
        return self.photos

    @property
    def photo_text(self) -> str:
        return f"{self.plan.photos} JPEG files of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}"


def section_ceilings(run: Run) -> dict[str, Any]:
    return ceilings(run.cfg.repeats)


def section_train_step(run: Run) -> dict[str, Any]:
    """Plain and ours (fp32, and bf16 unless it crawls here); the faster of ours is ours from then on."""
    cfg, ceiling, flops = run.cfg, run.results.get("ceilings", {}), training_flops_per_image(run.model)
    section: dict[str, Any] = {}
    modes = [(PLAIN, "matmul_fp32_gflops"), (OURS_FP32, "matmul_fp32_gflops")]
    if run.plan.bf16:
        modes.append((OURS_BF16, "matmul_bf16_gflops"))
    else:
        section[OURS_BF16.name] = {"skipped": f"bf16 measured {run.bf16_slowdown:.1f}x slower than fp32 here"}
    for mode, ceiling_key in modes:
        rate = time_train_steps(run.model, mode, cfg, run.plan.steps)
        row = {"images_per_s": round(rate, 1), "gflops": round(rate * flops / 1e9, 3)}
        if ceiling_key in ceiling:
            row["of_ceiling"] = round(row["gflops"] / ceiling[ceiling_key], 3)
        section[mode.name] = row
    run.ours = max((m for m, _ in modes if m is not PLAIN), key=lambda m: section[m.name]["images_per_s"])
    section["ours"] = run.ours.name
    section["ours_over_plain"] = round(section[run.ours.name]["images_per_s"] / section["plain"]["images_per_s"], 2)
    return section


def section_lrn(run: Run) -> dict[str, Any]:
    """The paper model's step with and without LRN, plain and ours."""
    cfg, steps = run.cfg, run.plan.steps
    size = {"num_classes": cfg.num_classes, "image_size": cfg.image_size, "width_mult": cfg.width_mult}
    paper, without = build_model(cfg.lrn_model, **size), build_model(cfg.lrn_model, norm="none", **size)
    with_lrn, no_lrn = time_train_steps(paper, run.ours, cfg, steps), time_train_steps(without, run.ours, cfg, steps)
    plain_lrn, plain_none = time_train_steps(paper, PLAIN, cfg, steps), time_train_steps(without, PLAIN, cfg, steps)
    return {
        "ours_with_lrn": round(with_lrn, 1), "ours_without_lrn": round(no_lrn, 1),
        "ours_ratio": round(with_lrn / no_lrn, 3),
        "plain_with_lrn": round(plain_lrn, 1), "plain_without_lrn": round(plain_none, 1),
        "plain_ratio": round(plain_lrn / plain_none, 3),
    }


def section_data(run: Run) -> dict[str, Any]:
    return input_pipelines(run.photo_folder(), run.scratch / "cache-data", run.cfg)


def section_end_to_end(run: Run) -> dict[str, Any]:
    folder = run.photo_folder()
    plain = statistics.median(plain_epoch(run.model, folder, run.cfg) for _ in range(run.cfg.repeats))
    mine = our_epochs(run.model, run.ours, folder, run.scratch / "cache", run.cfg)
    return {
        "photos": run.plan.photos,
        "plain_images_per_s": round(plain, 1),
        "ours_images_per_s": round(mine["images_per_s"], 1),
        "ours_over_plain": round(mine["images_per_s"] / plain, 2),
        "ours_decode_and_cache_s": round(mine["decode_and_cache_s"], 1),
    }


def section_inference(run: Run) -> dict[str, Any]:
    model, cfg = run.model, run.cfg
    plain, mine = time_inference(model, PLAIN, cfg), time_inference(model, run.ours, cfg)
    out = {
        "plain_images_per_s": round(plain["images_per_s"], 1),
        "ours_images_per_s": round(mine["images_per_s"], 1),
        "throughput_ratio": round(mine["images_per_s"] / plain["images_per_s"], 2),
        "plain_latency_ms": round(plain["latency_ms"], 1), "ours_latency_ms": round(mine["latency_ms"], 1),
        "latency_ratio": round(mine["latency_ms"] / plain["latency_ms"], 2),
    }
    if _has_onnxruntime():
        q = time_inference(model, run.ours, cfg, runtime="onnxruntime-int8")
        out.update({
            "int8_images_per_s": round(q["images_per_s"], 1), "int8_latency_ms": round(q["latency_ms"], 1),
            "int8_throughput_ratio": round(q["images_per_s"] / plain["images_per_s"], 2),
            "int8_latency_ratio": round(q["latency_ms"] / plain["latency_ms"], 2),
        })
    return out


@dataclass(frozen=True)
class Section:
    measure: Callable[[Run], dict[str, Any]]
    describe: Callable[[Run], str]  # the progress line
    photos: bool = False  # needs the JPEG folder


REGISTRY: dict[str, Section] = {  # keyed by the results' name, in SECTIONS order
    "ceilings": Section(section_ceilings, lambda r: "measuring the machine's ceilings"),
    "train_step": Section(section_train_step, lambda r: f"training steps: {r.cfg.model} at {r.cfg.image_size}, "
                                                        f"batch {r.cfg.batch_size}"),
    "lrn": Section(section_lrn, lambda r: f"LRN cost: {r.cfg.lrn_model} with and without LRN, plain and ours"),
    "data": Section(section_data, lambda r: f"input pipelines: {r.photo_text}", photos=True),
    "end_to_end": Section(section_end_to_end, lambda r: f"end to end: one epoch over {r.photo_text}, plain and ours",
                          photos=True),
    "inference": Section(section_inference, lambda r: f"inference: batch {r.cfg.batch_size} and batch 1, PyTorch "
                                                      "and ONNX Runtime"),
}
assert tuple(REGISTRY) == SECTIONS, "config.SECTIONS names the registered sections, in order"


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Progress:
    """`[2/7] training steps ...` before each section and its time after, so a slow machine is never silent."""

    total: int
    log: Callable[[str], None]
    done: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def section(self, name: str, what: str):
        self.done += 1
        self.log(f"[{self.done}/{self.total}] {what} ...")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        self.log(f"      {name} done in {self.seconds[name]:.1f} s")


def run(cfg: BenchConfig, log=print) -> dict[str, Any]:
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
    results["train_flop_per_image"] = int(training_flops_per_image(model))
    progress = Progress(1 + len(cfg.sections), log)
    with progress.section("plan", "timing one training step to size the run"):
        plan = plan_work(cfg, measure_step_seconds(model, cfg), bf16=not bf16.crawls)
    log(f"      plan: {plan.note}")
    results["plan"] = asdict(plan)
    state = Run(cfg, model, plan, bf16.slowdown, results)
    with tempfile.TemporaryDirectory() as tmp:
        state.scratch = Path(tmp)
        for name in (s for s in SECTIONS if s in cfg.sections):
            section = REGISTRY[name]
            with progress.section(name, section.describe(state)):
                results[name] = section.measure(state)
    results["ours"] = state.ours.name
    results["section_seconds"] = progress.seconds
    results["total_seconds"] = round(time.perf_counter() - start, 1)
    results["peak_rss_mb"] = round(peak_rss_mb())
    return results
