"""Is bf16 (or fp16) fast on this machine? One small probe, measured once per machine and torch version.

On CPUs the answer ranges from "faster than fp32" (AMX units) through "somewhat slower" (AVX-512 with bf16 dot
products, no AMX: about 0.6x fp32) to "crawls" (AVX2 only: PyTorch emulates bf16 and a matrix product runs tens of
times slower; benchmarks/README.md has the figures). Nothing here guesses from CPU flags: the probe times a small
matrix product and a small convolution in fp32 and in the reduced precision, in this process, and everything that
chooses or accepts a precision asks it:
- `alexnet bench` skips the modes and ceilings that would crawl, and says so;
- an explicit `--amp bf16` (train, eval, predict) on a CPU where it is clearly slower gets a one-line warning with the
  measured factor;
- automatic choices (`auto_amp`) pick a reduced precision only where it measured faster than fp32.

The probe takes well under a second (about 0.2 s where bf16 crawls) and is cached as JSON under
`$ALEXNET_CACHE/probe/`, keyed by the CPU model and flags, the torch version and the thread count. A cached file
is untrusted input like any other: one that does not parse or holds values out of range is measured again.
Accelerators are not probed: CUDA's bf16 is trusted where `torch.cuda.is_bf16_supported()` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alexnet.data.cachedir import cache_root
from alexnet.files import atomic_write_text, read_small_json

PROBE_VERSION = 1
REDUCED = ("bf16", "fp16")  # the autocast dtypes of config.AMP_MODES other than none
# A reduced precision this many times slower than fp32 "crawls": bench skips it, auto never picks it.
CRAWL_FACTOR = 2.0
# An explicit --amp this many times slower than fp32 gets a warning (below it, the difference is within noise).
WARN_FACTOR = 1.25
MAX_CACHE_BYTES = 64 * 1024  # a probe file is a few hundred bytes; anything larger is not ours


@dataclass(frozen=True)
class PrecisionSpeed:
    """How much slower one reduced precision is than fp32 here: time in it / time in fp32 (1.0 = as fast)."""

    dtype: str  # bf16 | fp16
    matmul_slowdown: float  # a 256 x 256 matrix product (the fully connected layers)
    conv_slowdown: float  # a 3x3 convolution, 64 -> 64 channels, 8 x 32 x 32, channels_last (the conv layers)

    @property
    def slowdown(self) -> float:
        """The worse of the two: AlexNet's time goes to both kinds of layer."""
        return max(self.matmul_slowdown, self.conv_slowdown)

    @property
    def crawls(self) -> bool:
        return self.slowdown >= CRAWL_FACTOR

    @property
    def faster(self) -> bool:
        return self.slowdown < 1.0


@dataclass(frozen=True)
class CPUInfo:
    model: str  # "AMD EPYC", "Intel(R) Xeon(R) ..." (/proc/cpuinfo), else platform.processor()
    capability: str  # PyTorch's CPU kernel level: DEFAULT, AVX2, AVX512 (torch.backends.cpu.get_cpu_capability())
    amx: bool  # Intel AMX tile units with bf16 (the only CPU units where bf16 beats fp32 by design)
    avx512_bf16: bool  # AVX-512 bf16 dot products (VDPBF16PS): bf16 usable but, without AMX, slower than fp32

    def describe(self) -> str:
        extras = [name for name, on in (("AMX", self.amx), ("AVX512-BF16", self.avx512_bf16)) if on]
        return f"{self.model}, {self.capability}" + (f" + {' + '.join(extras)}" if extras else ", no AMX")


@dataclass(frozen=True)
class Probe:
    cpu: CPUInfo
    torch: str
    threads: int
    speeds: dict[str, PrecisionSpeed]
    cached: bool = False  # read from the cache file rather than measured in this process

    def speed(self, amp: str) -> PrecisionSpeed | None:
        return self.speeds.get(amp)


def cpu_info() -> CPUInfo:
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return CPUInfo(model=model or "unknown CPU", capability=str(torch.backends.cpu.get_cpu_capability()),
                   amx="amx_bf16" in flags, avx512_bf16="avx512_bf16" in flags)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: kernel selection, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(amp: str, repeats: int = 3) -> PrecisionSpeed:
    """Time fp32 and `amp` on the two small workloads; about 0.1 s where `amp` crawls, milliseconds elsewhere."""
    import torch
    import torch.nn.functional as F

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 256, generator=g), torch.randn(256, 256, generator=g)
    x = torch.randn(8, 64, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, generator=g).contiguous(memory_format=torch.channels_last)
    workloads = ((torch.mm, (a, b)), (lambda x, w: F.conv2d(x, w, padding=1), (x, w)))
    ratios = []
    for op, args in workloads:
        low = tuple(t.to(dtype) for t in args)
        fp32 = _median_seconds(lambda op=op, args=args: op(*args), repeats)
        reduced = _median_seconds(lambda op=op, args=low: op(*args), repeats)
        ratios.append(reduced / max(fp32, 1e-9))
    return PrecisionSpeed(dtype=amp, matmul_slowdown=round(ratios[0], 3), conv_slowdown=round(ratios[1], 3))


def cache_path(cpu: CPUInfo | None = None) -> Path:
    """The probe's file for this machine, torch and thread count (a change of any of them measures again)."""
    import torch

    cpu = cpu or cpu_info()
    key = json.dumps([PROBE_VERSION, asdict(cpu), str(torch.__version__), torch.get_num_threads(), sys.platform])
    return Path(cache_root()) / "probe" / f"precision-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def probe(refresh: bool = False) -> Probe:
    """This CPU's probe: from the cache when there is a valid one, else measured now and cached."""
    import torch

    cpu = cpu_info()
    path = cache_path(cpu)
    if not refresh:
        cached = _read_cache(path)
        if cached is not None:
            return Probe(cpu=cpu, torch=str(torch.__version__), threads=torch.get_num_threads(), speeds=cached,
                         cached=True)
    speeds = {amp: measure(amp) for amp in REDUCED}
    _write_cache(path, speeds)
    return Probe(cpu=cpu, torch=str(torch.__version__), threads=torch.get_num_threads(), speeds=speeds)


def _read_cache(path: Path) -> dict[str, PrecisionSpeed] | None:
    raw = read_small_json(path, MAX_CACHE_BYTES)
    if not isinstance(raw, dict) or raw.get("version") != PROBE_VERSION or not isinstance(raw.get("speeds"), dict):
        return None
    speeds = {}
    for amp in REDUCED:
        entry = raw["speeds"].get(amp)
        if not isinstance(entry, dict):
            return None
        values = [entry.get("matmul_slowdown"), entry.get("conv_slowdown")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 < v < 1e6
                   for v in values):
            return None
        speeds[amp] = PrecisionSpeed(dtype=amp, matmul_slowdown=float(values[0]), conv_slowdown=float(values[1]))
    return speeds


def _write_cache(path: Path, speeds: dict[str, PrecisionSpeed]) -> None:
    body = {"version": PROBE_VERSION, "speeds": {amp: asdict(s) for amp, s in speeds.items()}}
    with contextlib.suppress(OSError):  # a read-only cache costs a fresh probe next time, nothing more
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")


def amp_warning(amp: str, device_type: str) -> str | None:
    """A one-line warning when an explicit `--amp` is clearly slower than fp32 on this CPU, else None."""
    if amp not in REDUCED or device_type != "cpu":
        return None
    result = probe()
    speed = result.speed(amp)
    if speed is None or speed.slowdown < WARN_FACTOR:
        return None
    return (f"warning: --amp {amp} measured {speed.slowdown:.1f}x slower than fp32 on this CPU "
            f"({result.cpu.describe()}; matrix product {speed.matmul_slowdown:.1f}x, convolution "
            f"{speed.conv_slowdown:.1f}x); use --amp none (fp32) here")


_warned: set[tuple[str, str]] = set()  # (amp, device type) already warned about in this process


def warn_if_slow(amp: str, device_type: str, emit=None) -> str | None:
    """Print `amp_warning` to stderr (or pass it to `emit`), once per process and precision; returns it."""
    if (amp, device_type) in _warned:
        return None
    message = amp_warning(amp, device_type)
    if message:
        _warned.add((amp, device_type))
        (emit or (lambda m: print(m, file=sys.stderr)))(message)
    return message


def auto_amp(device_type: str) -> str:
    """The precision an automatic choice uses: a reduced one only where it measured faster than fp32."""
    if device_type == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    if device_type != "cpu":
        return "none"
    speeds = probe().speeds
    fastest = min((s for s in speeds.values() if s.faster), key=lambda s: s.slowdown, default=None)
    return fastest.dtype if fastest is not None else "none"


def precision_line(device_type: str) -> str:
    """What `auto_amp` went by, for a run's log: each reduced precision's speed against fp32 on this CPU."""
    if device_type != "cpu":
        return "bf16 where the GPU supports it" if device_type == "cuda" else "fp32 on this device"
    result = probe()
    speeds = ", ".join(f"{amp} {1 / s.slowdown:.2f}x fp32's speed" for amp, s in result.speeds.items())
    return f"{speeds}; {result.cpu.describe()}"


def summary(result: Probe) -> dict[str, Any]:
    """Plain values for JSON (alexnet bench --json)."""
    return {"cpu": asdict(result.cpu), "torch": result.torch, "threads": result.threads, "cached": result.cached,
            "speeds": {amp: {**asdict(s), "slowdown": s.slowdown, "crawls": s.crawls}
                       for amp, s in result.speeds.items()}}
