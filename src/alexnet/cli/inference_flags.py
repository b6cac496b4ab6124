"""The inference switches that `alexnet eval` and `alexnet predict` share (see alexnet.inference)."""

from __future__ import annotations

import argparse

from alexnet.config import AMP_MODES, RUNTIMES


def add_inference_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inference speed")
    g.add_argument("--amp", choices=AMP_MODES, default="none",
                   help="autocast dtype (default none = fp32: bf16 is slower than fp32 on CPUs without AMX)")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep activations contiguous (NCHW) instead of channels_last")
    g.add_argument("--compile", action="store_true", help="torch.compile with frozen weights (slow first batch)")
    g.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="run the model in PyTorch (default), or export it and run it in ONNX Runtime in fp32, or in "
                   "int8 (static quantization calibrated on 256 of the checkpoint's training images; several times "
                   "faster on CPUs with VNNI; needs the export extra)")


def inference_options(args: argparse.Namespace):
    from alexnet.inference import InferenceOptions

    return InferenceOptions(amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                            runtime=args.runtime)
