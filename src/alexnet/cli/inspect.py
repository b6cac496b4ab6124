"""`alexnet inspect gradcam|activations`: the page's pictures as PNG files, for scripts and notebooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alexnet.errors import AlexNetError, ConfigError
from alexnet.files import atomic_write_bytes


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="Grad-CAM or every layer's activations of images, as PNG files",
        description="Writes the pictures `alexnet serve` shows, as PNG files in --output-dir: `gradcam` draws the "
        "Grad-CAM map (captum's LayerGradCam, at --layer, default the last map before pool5) of --class (default: "
        "the predicted class) over each image as the model sees it (IMAGE.gradcam-CLASS.png); `activations` draws "
        "the channel grid of each spatial layer conv1 ... pool5, or of the --layer ones (IMAGE.LAYER.png). The same "
        "functions are importable: alexnet.inspect.gradcam_png, alexnet.inspect.activation_pngs.",
    )
    p.add_argument("what", choices=("gradcam", "activations"), help="which pictures")
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="checkpoint file or run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    p.add_argument("--layer", action="append", default=None, metavar="L",
                   help="layer (conv1 ... pool5); gradcam: one, activations: repeat for several (default all)")
    p.add_argument("--class", dest="target", default=None, metavar="C", help="gradcam: class name or index")
    p.add_argument("--output-dir", default=".", metavar="DIR", help="where the PNG files go (default: here)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Here, not at the top: these import torch, which `alexnet --help` must not.
    from alexnet.inspect.activations import activation_pngs, check_layers
    from alexnet.inspect.gradcam import class_index, gradcam_png
    from alexnet.inspect.loaded import open_run
    from alexnet.predict import expand_inputs

    run_ = open_run(args.checkpoint, data=False)
    if args.what == "gradcam":
        if args.layer and len(args.layer) > 1:
            raise ConfigError("gradcam takes one --layer")
        layer = args.layer[0] if args.layer else None
        if layer is not None:
            check_layers(run_, [layer])
        if args.target is not None:
            class_index(run_, args.target)  # a bad --class is refused before any image is read
    else:
        check_layers(run_, args.layer)
    out = Path(args.output_dir)
    written, failed = [], 0
    for path, error in expand_inputs(args.images):
        stem = Path(path).stem
        try:
            if error is not None:
                raise AlexNetError(f"{path}: {error}")
            image = run_.load_file(path)
            if args.what == "gradcam":
                target = args.target
                name = run_.class_names[class_index(run_, target)] if target is not None else "predicted"
                files = [(out / f"{stem}.gradcam-{_safe(name)}.png", gradcam_png(run_, image, target, layer))]
            else:
                files = [(out / f"{stem}.{layer}.png", png) for layer, png, _ in activation_pngs(run_, image, args.layer)]
        except AlexNetError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        for file, data in files:
            atomic_write_bytes(file, data)
            written.append(file)
    for file in written:
        print(file)
    if not written:
        raise AlexNetError("no picture written: no image could be read")
    return 1 if failed else 0


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "class"
