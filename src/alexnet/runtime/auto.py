"""`--runtime auto`: the fastest inference runtime for this machine and this checkpoint, measured once, then cached.

Which runtime is fastest depends on the CPU (int8 gains most where VNNI does four int8 multiply-adds at once, bf16
crawls on AVX2-only CPUs), on the model's width and input size, and on the batch. Nothing here guesses from CPU
flags. On a CPU, each candidate (`CANDIDATES`: PyTorch fp32 and bf16, ONNX Runtime fp32 and int8) runs the
checkpoint's own model on a batch of its own input shape, and the one with the most images per second wins:

- bf16 is timed only where the precision probe (alexnet.runtime.precision) did not find it crawling;
- the ONNX Runtime candidates need the export extra, and are skipped with the reason when it is missing;
- int8 is eligible only if its decisions hold: on up to `PARITY_IMAGES` validation images of the checkpoint's own
  data it must lose at most `INT8_MAX_TOP1_DROP` of fp32's top-1 (the check `alexnet export --format onnx-int8`
  reports); without the data, int8 is skipped and says so.

On a GPU, PyTorch runs with the precision `precision.auto_amp` picks. The choice is cached as JSON under
`$ALEXNET_CACHE/runtime/`, keyed by the checkpoint's bytes (SHA-256), the machine (CPU model and kernel level,
thread count) and the library versions, and the batch size: a second `--runtime auto` reads it in milliseconds.
A cached file is untrusted input: one that does not parse or names an unknown runtime is measured again.

The ONNX files the candidates are exported to (fp32, and int8 quantized from it) are kept beside the choice, keyed
by the same checkpoint bytes, CPU and library versions (not the batch size or thread count, which do not change
them): the runs after the first load them instead of exporting and calibrating again (onnxrt.kept_runtime_model,
which checks each against its sealed record first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alexnet.data.augment import BatchAugment
from alexnet.data.batches import EvalBatches, seeded_order
from alexnet.data.cache import cache_split
from alexnet.data.cachedir import cache_dir, cache_root
from alexnet.errors import AlexNetError
from alexnet.files import atomic_write_text, read_small_json
from alexnet.runtime.inference import InferenceOptions, Predictor
from alexnet.runtime.onnxrt import calibration_batches, checkpoint_data, compare_top1
from alexnet.runtime.precision import auto_amp, cpu_info, probe

CACHE_VERSION = 1
MAX_CACHE_BYTES = 64 * 1024
# (runtime, amp) pairs, in the order they are tried; the names `describe` and the cache use
CANDIDATES = {
    "torch fp32": ("torch", "none"),
    "torch bf16": ("torch", "bf16"),
    "onnxruntime fp32": ("onnxruntime", "none"),
    "onnxruntime int8": ("onnxruntime-int8", "none"),
}
WARMUP_CALLS = 2
TIMED_CALLS = 5
GIVE_UP_FACTOR = 4.0  # a candidate whose first call is this many times slower than the best so far is not timed on
INT8_MAX_TOP1_DROP = 0.01  # int8 may lose at most 1 point of fp32's top-1 on the validation images
PARITY_IMAGES = 500
PARITY_BATCH = 50


@dataclass
class RuntimeChoice:
    name: str  # a key of CANDIDATES
    images_per_s: dict[str, float] = field(default_factory=dict)  # every candidate timed
    skipped: dict[str, str] = field(default_factory=dict)  # candidate -> why it was not timed or not eligible
    int8_check: dict[str, float] | None = None  # compare_top1's figures, when int8 was checked
    batch_size: int = 0
    cached_at: str | None = None  # the cache file this came from, None when measured in this process
    kept_model: str | None = None  # where the ONNX files are kept between runs (InferenceOptions.kept_model)

    @property
    def runtime(self) -> str:
        return CANDIDATES[self.name][0]

    @property
    def amp(self) -> str:
        return CANDIDATES[self.name][1]

    def describe(self) -> str:
        timed = ", ".join(f"{n} {v:,.0f}" for n, v in sorted(self.images_per_s.items(), key=lambda kv: -kv[1]))
        parts = [f"runtime auto: {self.name}"]
        if timed:
            parts.append(f"(images/s at batch {self.batch_size}, measured on this machine: {timed})")
        if self.int8_check:
            c = self.int8_check
            parts.append(f"int8 top-1 {c['candidate_top1']:.4f} vs fp32 {c['reference_top1']:.4f} on "
                         f"{c['images']} validation images")
        for name, why in self.skipped.items():
            parts.append(f"{name}: {why}")
        where = f"cached in {self.cached_at}" if self.cached_at else "measured now, cached for next time"
        return "; ".join(parts) + f" [{where}]"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _onnxruntime_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _key(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def cache_path(checkpoint_file: Path, batch_size: int, device_type: str, digest: str | None = None) -> Path:
    """The cached choice's file; `digest` is the checkpoint's SHA-256 when the caller has it already."""
    import torch

    machine = [CACHE_VERSION, asdict(cpu_info()), torch.__version__, _onnxruntime_version(), torch.get_num_threads(),
               sys.platform, device_type, batch_size, digest or _file_digest(checkpoint_file)]
    return Path(cache_root()) / "runtime" / f"choice-{_key(machine)}.json"


def kept_model_stem(digest: str) -> Path:
    """Where the checkpoint's ONNX files are kept (onnxrt.kept_paths): the private runtime cache folder, keyed by
    what changes the files: the checkpoint's bytes, the library versions and the CPU (int8 quantizes with 7-bit
    weights on CPUs without VNNI)."""
    import torch

    machine = [CACHE_VERSION, "onnx", asdict(cpu_info()), torch.__version__, _onnxruntime_version(), sys.platform,
               digest]
    return Path(cache_dir("runtime")) / f"model-{_key(machine)}"


def read_cached(path: Path) -> RuntimeChoice | None:
    """The cached choice, or None when there is none or it is not one we wrote (it is then measured again)."""
    raw = read_small_json(path, MAX_CACHE_BYTES)
    if not isinstance(raw, dict) or raw.get("version") != CACHE_VERSION or raw.get("name") not in CANDIDATES:
        return None
    speeds, skipped, batch = raw.get("images_per_s"), raw.get("skipped"), raw.get("batch_size")
    if not isinstance(speeds, dict) or not isinstance(skipped, dict) or not isinstance(batch, int):
        return None
    if not all(k in CANDIDATES and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               and v > 0 for k, v in speeds.items()):
        return None
    if not all(k in CANDIDATES and isinstance(v, str) for k, v in skipped.items()):
        return None
    check = raw.get("int8_check")
    if check is not None and not (isinstance(check, dict) and all(
            isinstance(check.get(k), (int, float)) for k in ("images", "reference_top1", "candidate_top1"))):
        return None
    return RuntimeChoice(raw["name"], {k: float(v) for k, v in speeds.items()},
                         {k: v[:300] for k, v in skipped.items()}, check, batch, cached_at=str(path))


def write_cached(path: Path, choice: RuntimeChoice) -> None:
    body = {"version": CACHE_VERSION, "name": choice.name, "images_per_s": choice.images_per_s,
            "skipped": choice.skipped, "int8_check": choice.int8_check, "batch_size": choice.batch_size}
    with contextlib.suppress(OSError):  # a read-only cache costs a fresh measurement next time, nothing more
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")


def images_per_second(run: Callable[[], Any], batch_size: int, best_so_far: float | None) -> float | None:
    """Median images/s over TIMED_CALLS calls after WARMUP_CALLS; None when the first call shows it cannot win."""
    for i in range(WARMUP_CALLS):
        start = time.perf_counter()
        run()
        if i == 0 and best_so_far and batch_size / (time.perf_counter() - start) * GIVE_UP_FACTOR < best_so_far:
            return None
    times = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def _int8_check(ckpt: Any, bundle: Any, fp32: Any, int8: Any) -> dict[str, float]:
    val = cache_split(bundle, "val")
    sample = seeded_order(len(val), seed=0)[:PARITY_IMAGES]  # a seeded sample: the split is stored class by class
    batches = EvalBatches(val.images, val.labels, BatchAugment.for_checkpoint(ckpt), PARITY_BATCH, indices=sample)
    return compare_top1(fp32, int8, batches)


def measure(ckpt: Any, batch_size: int, log: Callable[[str], None] = lambda m: None,
            kept_model: str | None = None) -> RuntimeChoice:
    """Time every candidate on this CPU for this checkpoint (see the module docstring); the ONNX candidates are
    exported to (or loaded from) `kept_model` when it is given, so the run that follows reuses them."""
    import torch

    p = ckpt.preprocessing
    x = torch.randn(batch_size, p.in_channels, p.image_size, p.image_size, generator=torch.Generator().manual_seed(0))
    choice = RuntimeChoice(name="torch fp32", batch_size=batch_size)
    predictors: dict[str, Any] = {}
    bundle = None  # the checkpoint's data, read for int8 only
    for name, (runtime, amp) in CANDIDATES.items():
        if amp != "none":
            speed = probe().speed(amp)
            if speed is not None and speed.crawls:
                choice.skipped[name] = f"{amp} measured {speed.slowdown:.0f}x slower than fp32 on this CPU"
                continue
        try:
            calibration = None
            if runtime == "onnxruntime-int8":  # the data is scanned once: training images calibrate, val checks
                bundle = checkpoint_data(ckpt)
                calibration = lambda bundle=bundle: calibration_batches(ckpt, bundle)  # noqa: E731
            log(f"runtime auto: timing {name} ...")
            predictor = Predictor(ckpt.build_model("cpu"), torch.device("cpu"),
                                  InferenceOptions(amp=amp, runtime=runtime, kept_model=kept_model),
                                  calibration=calibration)
        except AlexNetError as e:  # the export extra missing, or int8 without the checkpoint's data
            choice.skipped[name] = str(e)[:300]
            continue
        best = max(choice.images_per_s.values(), default=None)
        speed_here = images_per_second(lambda predictor=predictor: predictor(x), batch_size, best)
        if speed_here is None:
            choice.skipped[name] = f"its first batch was over {GIVE_UP_FACTOR:g}x slower than the best so far"
            continue
        choice.images_per_s[name] = round(speed_here, 1)
        predictors[name] = predictor
    reference = predictors.get("onnxruntime fp32") or predictors["torch fp32"]
    return pick(choice, lambda: _int8_check(ckpt, bundle, reference, predictors["onnxruntime int8"]))


def pick(choice: RuntimeChoice, int8_check: Callable[[], dict[str, float]]) -> RuntimeChoice:
    """The fastest timed candidate, int8 only when `int8_check()` (compare_top1's figures) shows it keeps fp32's
    top-1 within INT8_MAX_TOP1_DROP; the reasons a faster one was passed over go into `skipped`."""
    for name in sorted(choice.images_per_s, key=lambda n: -choice.images_per_s[n]):
        if name == "onnxruntime int8":
            try:
                choice.int8_check = int8_check()
            except AlexNetError as e:
                choice.skipped[name] = f"not checked against fp32 ({str(e)[:200]}), so not chosen"
                continue
            drop = choice.int8_check["reference_top1"] - choice.int8_check["candidate_top1"]
            if drop > INT8_MAX_TOP1_DROP:
                choice.skipped[name] = (f"the fastest, but it loses {100 * drop:.1f} points of top-1 on the "
                                        f"validation images (at most {100 * INT8_MAX_TOP1_DROP:g} allowed)")
                continue
        choice.name = name
        return choice
    choice.name = "torch fp32"  # nothing timed (cannot happen: torch fp32 always runs); the plain default
    return choice


def choose_runtime(checkpoint_file: str | Path, ckpt: Any, device: Any, batch_size: int, *, refresh: bool = False,
                   log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> RuntimeChoice:
    """The runtime `--runtime auto` runs `ckpt` with on `device` (see the module docstring); says which on `log`."""
    import torch

    device = torch.device(device)
    if device.type != "cpu":
        name = "torch bf16" if auto_amp(device.type) == "bf16" else "torch fp32"
        choice = RuntimeChoice(name, batch_size=batch_size,
                               skipped={"onnxruntime fp32": f"runs on the CPU; this run is on {device}",
                                        "onnxruntime int8": f"runs on the CPU; this run is on {device}"})
        log(f"runtime auto: {name} on {device}")
        return choice
    digest = _file_digest(Path(checkpoint_file))
    path = cache_path(Path(checkpoint_file), batch_size, device.type, digest)
    try:
        kept = str(kept_model_stem(digest))
    except (OSError, AlexNetError) as e:  # no private cache folder: the ONNX files are exported on every run
        log(f"runtime auto: ONNX files not kept between runs ({e})")
        kept = None
    choice = None if refresh else read_cached(path)
    if choice is None:
        choice = measure(ckpt, batch_size, log=log, kept_model=kept)
        write_cached(path, choice)
    choice.kept_model = kept
    log(choice.describe())
    return choice


