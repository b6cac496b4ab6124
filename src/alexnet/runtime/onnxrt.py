"""Everything ONNX, in one low-level module: export to ONNX checked by ONNX Runtime, static int8 quantization with
its parity check, and ONNX Runtime as an inference runtime for `alexnet eval`, `alexnet predict` and `alexnet bench`.

It imports nothing from alexnet.export: `alexnet export` (the verified set of files) builds on these pieces, and
the runtimes (alexnet.runtime.inference) use them without the exporter.

int8 is the one way to inference several times faster than fp32 on a CPU without AMX: the build machine's AVX-512
VNNI instructions do 4 int8 multiply-adds where fp32 does one, and int8 weights are a quarter of the bytes, which is
what batch-1 latency waits for (AlexNet's fully connected layers are 58 of its 61 million parameters). The model is
quantized statically in the usual way (ONNX Runtime's `quantize_static`, QDQ format): weights per output channel in
int8, activations in uint8 with ranges calibrated on a few hundred *training* images with the evaluation
transform. Quantization changes the logits by more than float tolerance, so its check is on decisions:
`compare_top1` gives the share of images whose top-1 class is unchanged, and `alexnet export --format onnx-int8`
reports it together with both accuracies on the validation split (`export_int8`).

`--runtime auto` keeps its exported files between runs (`kept_runtime_model`): the fp32 and int8 ONNX files of one
checkpoint in the private runtime cache, each with a sealed JSON record of its size and SHA-256 written after it.
An ONNX file is code for ONNX Runtime, so a kept one is never trusted on its name: it is loaded from the very bytes
that were checked against the record, and one that is missing its record, damaged, or another file's is exported
again with a one-line warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from alexnet.config import RUNTIMES
from alexnet.data import build_from_description
from alexnet.data.augment import BatchAugment
from alexnet.data.batches import EvalBatches, seeded_order
from alexnet.data.cache import cache_split
from alexnet.data.cachedir import build_lock
from alexnet.data.limits import SealBroken, open_sealed_json, sealed_json
from alexnet.errors import AlexNetError
from alexnet.files import FileWriteError, atomic_write, atomic_write_text, describe_os_error

if TYPE_CHECKING:  # the record is only annotated here: this module reads no checkpoint file itself
    from alexnet.store.checkpoint import Checkpoint

ONNX_FILE, INT8_FILE = "model.onnx", "model.int8.onnx"
CALIBRATION_IMAGES = 256  # ranges settle well before this on AlexNet; more only costs calibration time
CALIBRATION_BATCH = 32
PARITY_IMAGES = 1000  # validation images the int8 model is compared on (all of them if fewer)
PARITY_BATCH = 64
# ONNX Runtime and PyTorch reorder float sums differently; logits of a trained AlexNet agree far better than this.
ONNX_TOLERANCE = 1e-3
MAX_BATCH = 4096  # the upper end of an exported graph's dynamic batch axis
KEPT_FILE_MODE = 0o600

log = logging.getLogger("alexnet.runtime")


class OnnxRuntimeError(AlexNetError):
    """ONNX Runtime is missing, or a model could not be exported, quantized or loaded."""


class ExportError(AlexNetError):
    """An export could not be written or did not reproduce the model's outputs."""


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise OnnxRuntimeError("the onnxruntime runtimes need the export extra: pip install 'alexnet[export]'") from None
    return onnxruntime


def has_vnni() -> bool:
    """Whether this x86 CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX). Without them ONNX
    Runtime's uint8 x int8 kernels can saturate, and its documentation asks for `reduce_range` (7-bit weights)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def example_input(model: nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A seeded random float batch (batch, C, S, S) of the size `model` (an AlexNet) takes."""
    c, s = model.config.in_channels, model.config.image_size
    return torch.randn(batch, c, s, s, generator=torch.Generator().manual_seed(seed))


def export_onnx(model: nn.Module, path: Path) -> dict[str, Any]:
    """ONNX through torch.export (dynamic batch), then run by ONNX Runtime and compared with PyTorch."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("ONNX export needs the export extra: pip install 'alexnet[export]'") from None
    x = example_input(model)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False,
                                    input_names=["images"], output_names=["logits"])
    except ImportError as e:
        raise ExportError(f"ONNX export needs the export extra (pip install 'alexnet[export]'): {e}") from None
    atomic_write(path, lambda tmp: program.save(tmp), suffix=path.suffix)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # A batch size other than the traced one proves the batch axis really is dynamic.
    check = example_input(model, batch=3, seed=1)
    with torch.inference_mode():
        expected = model(check).numpy()
    got = session.run(None, {session.get_inputs()[0].name: check.numpy()})[0]
    max_abs_diff = float(abs(got - expected).max())
    if not max_abs_diff <= ONNX_TOLERANCE:
        raise ExportError(f"{path}: ONNX Runtime's logits differ from PyTorch's by {max_abs_diff:.3g} (> {ONNX_TOLERANCE})")
    return {"path": str(path), "onnxruntime_max_abs_diff": max_abs_diff, "checked_batch": 3}


class OnnxRuntimeModel(nn.Module):
    """An ONNX file behind the interface of the PyTorch model: float images (B, C, S, S) in, float32 logits out.

    It holds no parameters; `evaluate` and `Predictor` call it as they call an AlexNet."""

    def __init__(self, path: str | Path, threads: int | None = None, data: bytes | None = None):
        super().__init__()
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:  # `data`: the file's bytes, already read and checked (a kept file); `path` then only names it
            self.session = ort.InferenceSession(data if data is not None else str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime raises its own exception types, one per failure
            raise OnnxRuntimeError(f"{path}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
        self.path = Path(path)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader protocol over an iterable of float batches."""

    def __init__(self, input_name: str, batches: Iterable[torch.Tensor]):
        self.input_name, self.batches = input_name, iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: np.ascontiguousarray(batch.float().numpy())}


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration: Iterable[torch.Tensor]) -> Path:
    """Static int8 quantization of an fp32 ONNX file: per-channel int8 weights, uint8 activations calibrated
    (min/max) on `calibration`, a few batches of normalised training images. Written atomically."""
    _onnxruntime()
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and graph folding first, as ONNX Runtime's quantization guide asks.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        import onnx

        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name

        def write(target: str) -> None:
            quantize_static(str(prepared), target, _Calibration(input_name, calibration),
                            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=not has_vnni(),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)

        atomic_write(int8_path, write, suffix=".onnx")
    return int8_path


def checkpoint_data(ckpt: Checkpoint):
    """The data bundle the checkpoint was trained on, or a one-line error that says int8 needs it."""
    try:
        return build_from_description(ckpt.data_description(), statistics=False)
    except AlexNetError as e:
        raise OnnxRuntimeError(f"int8 calibration reads the checkpoint's training images, which failed: {e} "
                               "(use --runtime onnxruntime for fp32, which needs no data)") from None


def calibration_batches(ckpt: Checkpoint, bundle: Any = None, images: int = CALIBRATION_IMAGES,
                        batch: int = CALIBRATION_BATCH, workers: int | None = None) -> list[torch.Tensor]:
    """A seeded sample of the checkpoint's own training images (from `bundle`, default: the checkpoint's data),
    with the evaluation transform, as float batches."""
    bundle = bundle if bundle is not None else checkpoint_data(ckpt)
    cached = cache_split(bundle, "train", workers=workers)
    if len(cached) == 0:
        raise OnnxRuntimeError(f"{bundle.source}: no training images to calibrate int8 ranges on")
    sample = seeded_order(len(cached), seed=0)[:images]
    batches = EvalBatches(cached.images, cached.labels, BatchAugment.for_checkpoint(ckpt), batch, indices=sample)
    return [x for x, _ in batches]


def export_int8(model: nn.Module, ckpt: Checkpoint, fp32_path: Path, path: Path) -> dict[str, Any]:
    """Static int8 quantization of the ONNX file, calibrated on the checkpoint's training images, then compared with
    the PyTorch model on (up to PARITY_IMAGES of) its validation images: top-1 agreement and both accuracies."""
    bundle = checkpoint_data(ckpt)  # scanned once: training images calibrate, validation images check
    quantize_int8(fp32_path, path, calibration_batches(ckpt, bundle))
    val = cache_split(bundle, "val")
    first = torch.arange(min(len(val), PARITY_IMAGES))
    batches = EvalBatches(val.images, val.labels, BatchAugment.for_checkpoint(ckpt), PARITY_BATCH, indices=first)
    return {"path": str(path), "validation": compare_top1(model, OnnxRuntimeModel(path), batches)}


def runtime_model(model: nn.Module, runtime: str, folder: str | Path,
                  calibration: Iterable[torch.Tensor] | None = None) -> OnnxRuntimeModel:
    """`model` exported to ONNX in `folder` (and quantized to int8 for "onnxruntime-int8"), loaded in ONNX Runtime."""
    if runtime not in RUNTIMES[1:]:
        raise OnnxRuntimeError(f"runtime must be one of {', '.join(RUNTIMES[1:])}, got {runtime!r}")
    folder = Path(folder)
    fp32_path = folder / ONNX_FILE
    export_onnx(model.to("cpu").float().eval(), fp32_path)
    if runtime == "onnxruntime":
        return OnnxRuntimeModel(fp32_path)
    if calibration is None:
        raise OnnxRuntimeError("int8 quantization needs calibration images")
    return OnnxRuntimeModel(quantize_int8(fp32_path, folder / INT8_FILE, calibration))


class _NotKept(Exception):
    """Why a kept ONNX file cannot be used; `existed` is False when there simply is none yet (no warning then)."""

    def __init__(self, reason: str, existed: bool = True):
        super().__init__(reason)
        self.existed = existed


def kept_paths(stem: Path) -> tuple[Path, Path]:
    """The fp32 and int8 ONNX files kept under `stem` (a key in a private cache folder)."""
    return stem.with_name(f"{stem.name}.onnx"), stem.with_name(f"{stem.name}.int8.onnx")


def kept_runtime_model(model: nn.Module, runtime: str, stem: Path,
                       calibration: Callable[[], Iterable[torch.Tensor]] | None = None) -> OnnxRuntimeModel:
    """`runtime_model`, kept between runs at `kept_paths(stem)`: a file that checks against its record is loaded
    as it is (no export, no calibration); otherwise it is exported (and quantized, with `calibration()`, called
    only then) under a lock, so that two processes build it once."""
    if runtime not in RUNTIMES[1:]:
        raise OnnxRuntimeError(f"runtime must be one of {', '.join(RUNTIMES[1:])}, got {runtime!r}")
    fp32_path, int8_path = kept_paths(stem)
    target = int8_path if runtime == "onnxruntime-int8" else fp32_path
    try:
        return OnnxRuntimeModel(target, data=_kept_bytes(target))
    except _NotKept:
        pass
    with build_lock(stem.parent, stem.name):
        try:  # another process may have exported it while this one waited for the lock
            return OnnxRuntimeModel(target, data=_kept_bytes(target))
        except _NotKept as bad:
            if bad.existed:
                log.warning("kept ONNX model %s: %s; exporting it again", target, bad)
        try:
            _kept_bytes(fp32_path)  # int8 is quantized from the fp32 file: reused when it is sound
        except _NotKept:
            _keep(fp32_path, lambda path: export_onnx(model.to("cpu").float().eval(), path))
        if runtime == "onnxruntime-int8":
            if calibration is None:
                raise OnnxRuntimeError("int8 quantization needs calibration images")
            _keep(int8_path, lambda path: quantize_int8(fp32_path, path, calibration()))
        return OnnxRuntimeModel(target, data=_kept_bytes(target))


def _kept_record(path: Path, data: bytes) -> dict[str, Any]:
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _kept_bytes(path: Path) -> bytes:
    """The kept file's bytes, when they are what its sealed record says; _NotKept (why) otherwise."""
    record = path.with_name(path.name + ".json")
    if not os.path.lexists(path) and not os.path.lexists(record):
        raise _NotKept("not exported yet", existed=False)
    try:
        expected = open_sealed_json(str(record), max_bytes=4096)
    except SealBroken as e:
        raise _NotKept(f"its record {record.name} is {e}") from None
    try:  # O_NOFOLLOW: a symlink planted at the name is refused, not followed
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            data = f.read()
    except OSError as e:
        raise _NotKept(f"unreadable ({e.strerror or e})") from None
    if expected != _kept_record(path, data):
        raise _NotKept("it does not match its record (changed, damaged or another model's file)")
    return data


def _keep(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(path)` (an atomic writer), then its sealed record; the old record goes first, so that it never
    describes the new file."""
    record = path.with_name(path.name + ".json")
    try:
        record.unlink(missing_ok=True)
    except OSError as e:
        raise FileWriteError(describe_os_error(e, record)) from None
    write(path)
    try:
        os.chmod(path, KEPT_FILE_MODE)  # private, like every cache file
    except OSError as e:
        raise FileWriteError(describe_os_error(e, path)) from None
    atomic_write_text(record, sealed_json(_kept_record(path, path.read_bytes())), mode=KEPT_FILE_MODE)


def compare_top1(reference: nn.Module, candidate: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
                 ) -> dict[str, float]:
    """Top-1 agreement of two models on labelled batches, and each one's accuracy: the parity check of int8."""
    agree = correct_ref = correct_cand = total = 0
    max_abs_diff = 0.0
    with torch.inference_mode():
        for images, labels in batches:
            a, b = reference(images).float(), candidate(images).float()
            agree += int((a.argmax(1) == b.argmax(1)).sum())
            correct_ref += int((a.argmax(1) == labels).sum())
            correct_cand += int((b.argmax(1) == labels).sum())
            max_abs_diff = max(max_abs_diff, float((a - b).abs().max()))
            total += len(labels)
    if total == 0:
        raise OnnxRuntimeError("no images to compare the models on")
    return {"images": total, "top1_agreement": agree / total, "reference_top1": correct_ref / total,
            "candidate_top1": correct_cand / total, "max_abs_logit_diff": max_abs_diff}

