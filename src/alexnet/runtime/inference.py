"""The inference fast path that `alexnet eval`, `alexnet predict` and `alexnet bench` share.

Inference mode (no autograd bookkeeping at all), channels_last (oneDNN's preferred convolution layout: 1.4x the
images/s of contiguous fp32 at batch 64 on the 2-core build machine), optional bf16/fp16 autocast and optional
torch.compile with weight freezing, or ONNX Runtime in fp32 or int8 (alexnet.runtime.onnxrt). fp32 stays the default: on
CPUs without AMX units bf16 convolutions are slower than fp32 (0.6x on AVX-512, tens of times slower on AVX2:
alexnet.runtime.precision measures it and warns), and on a GPU `--amp bf16` is the switch to flip. Every PyTorch option keeps the logits within a stated tolerance of plain fp32
eager (tests/test_inference.py); int8 is checked on decisions instead (tests/test_onnxrt.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alexnet.errors import ConfigError
from alexnet.runtime.amp import AMP_DTYPES, autocast
from alexnet.runtime.onnxrt import RUNTIMES, kept_runtime_model, runtime_model
from alexnet.runtime.precision import warn_if_slow


@dataclass(frozen=True)
class InferenceOptions:
    amp: str = "none"  # none | bf16 | fp16: autocast dtype for the forward pass
    channels_last: bool = True  # NHWC activations and weights
    compile: bool = False  # torch.compile with freezing (weights folded as constants): slow first call
    runtime: str = "torch"  # torch | onnxruntime | onnxruntime-int8 (alexnet.runtime.onnxrt.RUNTIMES)
    # the ONNX runtimes: where this checkpoint's exported files are kept between runs (a key in a private cache
    # folder, onnxrt.kept_runtime_model; --runtime auto sets it); None exports afresh into a temporary folder
    kept_model: str | None = None

    def __post_init__(self) -> None:
        if self.amp not in AMP_DTYPES:
            raise ConfigError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {self.amp!r}")
        if self.runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.runtime != "torch" and (self.amp != "none" or self.compile):
            raise ConfigError(f"--amp and --compile are PyTorch switches; runtime {self.runtime} sets its own precision")

    @property
    def uses_torch(self) -> bool:
        return self.runtime == "torch"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES[self.amp]


Calibration = Callable[[], Iterable[torch.Tensor]]  # lazily produces normalised training batches for int8


def prepare_model(model: nn.Module, options: InferenceOptions, calibration: Calibration | None = None) -> nn.Module:
    """`model` in eval mode as `options` runs it (converted in place; compiled models are wrapped; the ONNX Runtime
    runtimes export it, quantize it with batches from `calibration` for int8, and return the loaded session; with
    `options.kept_model`, files kept by an earlier run are loaded instead, and `calibration` is not called)."""
    model.eval()
    if not options.uses_torch and options.kept_model:
        return kept_runtime_model(model, options.runtime, Path(options.kept_model), calibration)
    if not options.uses_torch:
        # ONNX Runtime reads the file into memory when the session is created, so the folder can go right after.
        with tempfile.TemporaryDirectory(prefix="alexnet-onnx-") as folder:
            return runtime_model(model, options.runtime, folder, calibration() if calibration else None)
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if options.compile:
        model = torch.compile(model, options={"freezing": True})
    return model


class Predictor:
    """images (B, C, S, S), already normalised -> float32 logits (B, num_classes), the fast way."""

    def __init__(self, model: nn.Module, device: torch.device, options: InferenceOptions | None = None,
                 calibration: Calibration | None = None):
        self.options = options or InferenceOptions()
        self.device = device if self.options.uses_torch else torch.device("cpu")  # ONNX Runtime runs on the CPU here
        if self.options.uses_torch:
            warn_if_slow(self.options.amp, self.device.type)  # an explicit --amp that is slow here: say so, once
        self.model = prepare_model(model.to(self.device), self.options, calibration)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        channels_last = self.options.channels_last and self.options.uses_torch
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
        with torch.inference_mode(), autocast(self.device.type, self.options.amp_dtype):
            return self.model(images).float()
