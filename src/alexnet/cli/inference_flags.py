"""The inference switches that `alexnet eval` and `alexnet predict` share (see alexnet.runtime.inference)."""

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
    g.add_argument("--runtime", choices=(*RUNTIMES, "auto"), default="torch",
                   help="run the model in PyTorch (default), or export it and run it in ONNX Runtime in fp32, or in "
                   "int8 (static quantization calibrated on 256 of the checkpoint's training images; several times "
                   "faster on CPUs with VNNI; needs the export extra); auto: time each on this machine for this "
                   "checkpoint (int8 only if it keeps fp32's top-1 within 1 point), run the fastest, and remember "
                   "the choice")
    g.add_argument("--refresh-runtime", action="store_true", help="with --runtime auto: measure again, ignoring "
                   "the remembered choice")


def inference_options(args: argparse.Namespace, checkpoint=None, batch_size: int = 64,
                      device=None):
    """The options the flags ask for; `--runtime auto` measures (or recalls) the fastest runtime for `checkpoint` (a
    path or a loaded alexnet.store.checkpoint.Checkpoint) at `batch_size` on `device`."""
    from alexnet.errors import ConfigError
    from alexnet.runtime.inference import InferenceOptions

    if args.runtime != "auto":
        return InferenceOptions(amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                                runtime=args.runtime)
    if args.amp != "none" or args.compile:
        raise ConfigError("--runtime auto chooses the precision itself: drop --amp and --compile, or name a runtime")
    from alexnet.runtime.auto import choose_runtime
    from alexnet.store.checkpoint import load_checkpoint

    ckpt = checkpoint if hasattr(checkpoint, "preprocessing") else load_checkpoint(checkpoint, prefer="best")
    choice = choose_runtime(ckpt.path, ckpt, device or "cpu", batch_size, refresh=args.refresh_runtime)
    return InferenceOptions(amp=choice.amp, channels_last=args.channels_last, runtime=choice.runtime,
                            kept_model=choice.kept_model)
