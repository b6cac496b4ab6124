"""`alexnet export`: a checkpoint as a Hub-style folder (safetensors + config.json), ONNX (checked against ONNX
Runtime), int8 ONNX (calibrated on training images, checked on validation images) and a torch.export program."""

from __future__ import annotations

import argparse
import json

from alexnet.config import EXPORT_FORMATS

DEFAULT_FORMATS = ("hub", "onnx", "torch-export")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint: safetensors + config.json, ONNX, torch.export",
                              description=__doc__)
    p.add_argument("--checkpoint", required=True, metavar="RUN", help="a checkpoint file or a run folder (its best.pt)")
    p.add_argument("--format", nargs="+", choices=[*EXPORT_FORMATS, "all"], default=list(DEFAULT_FORMATS), dest="formats",
                   help="formats to write (default: %(default)s, which need only the checkpoint; onnx-int8 also "
                   "reads the checkpoint's training and validation images)")
    p.add_argument("--output-dir", metavar="DIR", help="where to write (default: the run folder's export/)")
    p.add_argument("--force", action="store_true", help="write into an existing export folder: the files of the "
                   "formats asked are replaced once the new set is verified, every other file is kept")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from alexnet.export import export_checkpoint

    formats = list(EXPORT_FORMATS) if "all" in args.formats else args.formats
    report = export_checkpoint(args.checkpoint, args.output_dir, formats, force=args.force)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"exported {report['checkpoint']} to {report['output_dir']}")
    if "hub" in report:
        print(f"  hub folder: model.safetensors + config.json (reloaded: max |diff| {report['hub']['max_abs_diff']:.2g})")
    if "onnx" in report:
        print(f"  ONNX: {report['onnx']['path']} (ONNX Runtime vs PyTorch: max |diff| "
              f"{report['onnx']['onnxruntime_max_abs_diff']:.2g}, dynamic batch)")
    if "onnx_int8" in report:
        v = report["onnx_int8"]["validation"]
        print(f"  ONNX int8: {report['onnx_int8']['path']} (on {v['images']} validation images: top-1 agreement with "
              f"PyTorch fp32 {v['top1_agreement']:.2%}, accuracy {v['candidate_top1']:.4f} vs {v['reference_top1']:.4f})")
    if "torch_export" in report:
        print(f"  torch.export: {report['torch_export']['path']} (max |diff| {report['torch_export']['max_abs_diff']:.2g})")
    if report["kept"]:
        print(f"  kept from the earlier export: {', '.join(report['kept'])}")
    return 0
