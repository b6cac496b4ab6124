"""Layer arithmetic for `alexnet summary`: output shapes with their formulas, parameters, MACs, receptive fields.

Shapes are computed from the model's own modules (built on the meta device, so no memory and no init cost),
with W_out = floor((W + 2P - K) / S) + 1 as PyTorch does, or with ceil as the authors' cuda-convnet does. MACs
count the multiply-accumulates of convolutions and fully-connected layers, as `torch.utils.flop_counter` does
(its FLOPs are 2 x MACs); ReLU, LRN, pooling, BatchNorm and dropout are not counted (they are under 0.1%).
The tests hold every number here to a real forward pass and to the flop counter.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from alexnet.errors import ConfigError
from alexnet.models.alexnet import AlexNet, build_from_config
from alexnet.models.architecture import AlexNetConfig
from alexnet.models.cuda_convnet import FILTER_KINDS, POOL_KINDS, CudaConvnetConfig, out_side
from alexnet.models.lrn import LocalResponseNorm
from alexnet.models.shapes import feature_size, feature_windows, min_input_size, out_size, seen_input


@dataclass(frozen=True)
class LayerRow:
    """One layer of the summary."""

    name: str  # the paper's name: conv1, lrn1, pool1, ..., fc8
    type: str  # the module's class: Conv2d, LocalResponseNorm, ...
    out_shape: tuple[int, ...]  # per image: (C, H, W) in the conv stack, (features,) after flatten
    params: int
    macs: int  # per image
    formula: str  # the size arithmetic with the numbers filled in; "" where the shape does not change
    receptive_field: int | None  # input pixels (per side) seen by one output unit; None after the spatial layers
    groups: int = 1


@dataclass
class Summary:
    """Every layer of one model at one input size, with totals and what the user should know about the size."""

    model: str
    input: tuple[int, int, int]  # (C, H, W)
    ceil: bool
    layers: list[LayerRow]
    warnings: list[str] = field(default_factory=list)  # sizes that silently truncate
    notes: list[str] = field(default_factory=list)  # e.g. the 224 vs 227 explanation

    @property
    def params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """The `--json` object: {model, input, params, macs, layers: [{name, type, out_shape, params, macs, formula}]}."""
        return {
            "model": self.model,
            "input": list(self.input),
            "params": self.params,
            "macs": self.macs,
            "layers": [
                {
                    "name": r.name,
                    "type": r.type,
                    "out_shape": list(r.out_shape),
                    "params": r.params,
                    "macs": r.macs,
                    "formula": r.formula,
                }
                for r in self.layers
            ],
        }

    def format(self) -> str:
        c, h, w = self.input
        rounding = "ceil, as cuda-convnet" if self.ceil else "floor, as PyTorch"
        header = ("layer", "type", "out shape", "size formula", "params", "MACs", "RF")
        rows = [
            (
                r.name,
                r.type + (f" g={r.groups}" if r.groups > 1 else ""),
                "x".join(map(str, r.out_shape)),
                r.formula,
                f"{r.params:,}",
                f"{r.macs:,}",
                "-" if r.receptive_field is None else str(r.receptive_field),
            )
            for r in self.layers
        ]
        total = ("total", "", "", "", f"{self.params:,}", f"{self.macs:,}", "")
        widths = [max(len(row[i]) for row in [header, *rows, total]) for i in range(len(header))]
        right = {4, 5, 6}  # numbers are right-aligned

        def line(row: tuple[str, ...]) -> str:
            cells = [cell.rjust(wd) if i in right else cell.ljust(wd) for i, (cell, wd) in enumerate(zip(row, widths, strict=True))]
            return "  ".join(cells).rstrip()

        rule = "-" * len(line(tuple("-" * wd for wd in widths)))
        out = [f"{self.model}: input {c}x{h}x{w}, sizes rounded with {rounding}", "", line(header), rule]
        out += [line(r) for r in rows]
        out += [rule, line(total), ""]
        out.append(f"{self.params:,} parameters, {self.macs / 1e9:.3f} GMACs per image ({2 * self.macs / 1e9:.3f} GFLOPs).")
        out.append("RF: receptive field, in input pixels per side. MACs: conv and fc multiply-accumulates per image.")
        if self.warnings:
            out.append("")
            out += [f"warning: {warning}" for warning in self.warnings]
        for note in self.notes:
            out += ["", note]
        return "\n".join(out)


def _meta_model(cfg: AlexNetConfig) -> AlexNet:
    with torch.device("meta"):  # shapes only: no memory, no random init
        return AlexNet(cfg)


def _check_size(cfg: AlexNetConfig, size: int, ceil: bool) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"input size must be a positive int, got {size!r}")
    smallest = min_input_size(cfg, ceil)
    if size < smallest:
        raise ConfigError(
            f"input size {size} is too small for {cfg.name}: the smallest valid input is {smallest}x{smallest}"
            + (" (with ceil rounding)" if ceil else "")
        )


def summarize(cfg: AlexNetConfig | CudaConvnetConfig, input_size: int | None = None, ceil: bool = False) -> Summary:
    """Per-layer shapes, formulas, parameters, MACs and receptive fields for a square input of input_size."""
    if isinstance(cfg, CudaConvnetConfig):
        return _summarize_cuda_convnet(cfg, input_size)
    size = cfg.image_size if input_size is None else input_size
    _check_size(cfg, size, ceil)
    if cfg.head == "flatten" and not ceil:
        cfg = dataclasses.replace(cfg, image_size=size)  # fc6's in_features follows the input, as in the notes
    model = _meta_model(cfg)
    op = "ceil" if ceil else "floor"

    rows: list[LayerRow] = []
    warnings: list[str] = []
    c, s = cfg.in_channels, size  # channels and side of the current map
    flat: int | None = None  # features after flatten
    rf, jump = 1, 1  # receptive field and the distance (in input pixels) between neighbouring units
    for name, m in model.named_layers():
        kind = type(m).__name__
        params = sum(p.numel() for p in m.parameters())
        macs, formula, groups = 0, "", 1
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            k, st, p = (_side(m.kernel_size), _side(m.stride), _side(m.padding))
            s_out = out_size(s, k, st, p, ceil)
            pad = f" + 2*{p}" if isinstance(m, nn.Conv2d) or p else ""  # the note writes pools without P
            formula = f"{op}(({s}{pad} - {k}) / {st}) + 1 = {s_out}"
            rem = (s + 2 * p - k) % st
            if rem:
                warnings.append(_truncation(name, s, p, k, st, rem, ceil))
            rf, jump = rf + (k - 1) * jump, jump * st
            if isinstance(m, nn.Conv2d):
                groups = m.groups
                macs = m.out_channels * s_out * s_out * (c // m.groups) * k * k
                c = m.out_channels
            s = s_out
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            target = _side(m.output_size)
            formula = f"adaptive average: {s}x{s} -> {target}x{target}"
            s, rf = target, None
        elif isinstance(m, nn.Flatten):
            flat = c * s * s
            formula = f"{c}*{s}*{s} = {flat}"
            rf = None
        elif isinstance(m, nn.Linear):
            assert flat is not None
            # Computed, not read from the module: under --ceil the map (and so fc6) can differ from PyTorch's.
            params = flat * m.out_features + (m.out_features if m.bias is not None else 0)
            macs = flat * m.out_features
            formula = f"{flat} -> {m.out_features}"
            flat = m.out_features
        elif not isinstance(m, (nn.ReLU, nn.Tanh, nn.BatchNorm2d, LocalResponseNorm, nn.Dropout)):
            raise TypeError(f"shapes.summarize does not know layer {name} ({kind})")  # a new layer type: teach it here
        shape = (c, s, s) if flat is None else (flat,)
        rows.append(LayerRow(name, kind, shape, params, macs, formula, rf, groups))

    summary = Summary(cfg.name, (cfg.in_channels, size, size), ceil, rows, warnings)
    summary.notes += _size_notes(cfg, size, ceil)
    if warnings and not ceil:
        summary.notes.append(_exact_sizes_note(cfg, size))
        summary.notes += _seen_note(cfg, size)
    return summary


def _summarize_cuda_convnet(cfg: CudaConvnetConfig, input_size: int | None) -> Summary:
    """The summary of one of the authors' CIFAR-10 nets, from its file's layers with cuda-convnet's rounding (pools
    round up); its fc and locally-connected layers are built for cfg.image_size, the only size it takes."""
    if input_size not in (None, cfg.image_size):
        raise ConfigError(f"{cfg.name} takes {cfg.image_size}x{cfg.image_size} inputs only (its fc and "
                          f"locally-connected layers are built for that size), not {input_size}")
    with torch.device("meta"):
        model = build_from_config(cfg)
    by_name = {x.name: x for x in cfg.layers()}
    rows, c, s, flat, rf, jump = [], cfg.in_channels, cfg.image_size, None, 1, 1
    for name, m in model.named_layers():
        x, params, macs, formula = by_name.get(name), sum(p.numel() for p in m.parameters()), 0, ""
        if x is not None and x.kind in (*FILTER_KINDS, *POOL_KINDS):
            s_out = out_side(x, s)
            op, pad = ("ceil", "") if x.kind in POOL_KINDS else ("floor", f" + 2*{x.padding}")
            formula = f"{op}(({s}{pad} - {x.size}) / {x.stride}) + 1 = {s_out}"
            rf, jump = rf + (x.size - 1) * jump, jump * x.stride
            if x.kind in FILTER_KINDS:
                macs, c = x.filters * s_out * s_out * c * x.size ** 2, x.filters
            s = s_out
        elif name == "flatten":
            flat, rf = c * s * s, None
            formula = f"{c}*{s}*{s} = {flat}"
        elif x is not None and x.kind == "fc":
            macs, formula, flat = flat * x.filters, f"{flat} -> {x.filters}", x.filters
        rows.append(LayerRow(name, type(m).__name__, (c, s, s) if flat is None else (flat,), params, macs, formula,
                             rf))
    summary = Summary(cfg.name, (cfg.in_channels, cfg.image_size, cfg.image_size), True, rows)
    summary.notes.append("Sizes as cuda-convnet computes them: convolutions floor, pools round up "
                         "(ceil((S - 3) / 2) + 1), the layers-*.cfg files' outputsX=0.")
    return summary


def _side(v: int | tuple[int, ...]) -> int:
    return v if isinstance(v, int) else v[0]


def _truncation(name: str, s: int, p: int, k: int, st: int, rem: int, ceil: bool) -> str:
    span = s + 2 * p - k
    if ceil:
        return (
            f"{name}: ({s} + 2*{p} - {k}) = {span} is not a multiple of the stride {st}: ceil adds one more window "
            f"that reaches {st - rem} pixel(s) past the (padded) edge, read as zeros"
        )
    return (
        f"{name}: ({s} + 2*{p} - {k}) = {span} is not a multiple of the stride {st}: floor drops the last {rem} "
        f"row(s) and column(s) of its {s}x{s} input, silently"
    )


def _size_notes(cfg: AlexNetConfig, size: int, ceil: bool) -> list[str]:
    conv1 = feature_windows(cfg)[0]
    if size not in (224, 227) and not ceil:
        return []
    k, st, p = conv1.kernel, conv1.stride, conv1.padding
    f224, c224, f227 = out_size(224, k, st, p), out_size(224, k, st, p, ceil=True), out_size(227, k, st, p)
    return [
        "224 vs 227: the paper says its inputs are 224x224, and its Figure 2 shows 55x55 after conv1. "
        f"Here floor((224 + 2*{p} - {k}) / {st}) + 1 = {f224}, but the authors' cuda-convnet rounds up: "
        f"ceil((224 + 2*{p} - {k}) / {st}) + 1 = {c224} (see --ceil). With PyTorch's floor, "
        f"floor((227 + 2*{p} - {k}) / {st}) + 1 = {f227} with no pixel dropped, which is why the notes use 227; "
        "torchvision instead pads conv1 by 2 so that 224 gives 55 (alexnet-owt)."
    ]


def exact_sizes(cfg: AlexNetConfig, lo: int, hi: int, upto: str = "pool5") -> list[int]:
    """Input sizes in [lo, hi] for which no layer up to `upto` drops a pixel under floor rounding."""
    windows = feature_windows(cfg)
    names = [w.name for w in windows]
    windows = windows[: names.index(upto) + 1]
    sizes = []
    for size in range(max(lo, 1), hi + 1):
        s, ok = size, True
        for w in windows:
            span = s + 2 * w.padding - w.kernel
            if span < 0 or span % w.stride:
                ok = False
                break
            s = span // w.stride + 1
        if ok:
            sizes.append(size)
    return sizes


def _exact_sizes_note(cfg: AlexNetConfig, size: int) -> str:
    # With pool5's map of each (and so fc6's input): an exact size nearby is another network, not a free fix, and a
    # size that drops a few border pixels can be the better trade (the demo and fast recipes keep 96, see demo.yaml).
    below = exact_sizes(cfg, size - 64, size)
    above = exact_sizes(cfg, size, size + 64)
    near = ([below[-1]] if below else []) + ([above[0]] if above else [])
    if not near:
        return "No input size within 64 pixels of this one goes through the conv stack without dropping pixels."
    shown = ", ".join(f"{n} (pool5 {feature_size(cfg, n)}x{feature_size(cfg, n)})" for n in near)
    pool5 = feature_size(cfg, size)
    return (f"Input sizes near this one that drop no pixel anywhere in the conv stack: {shown}; this one: pool5 "
            f"{pool5}x{pool5}")


def _seen_note(cfg: AlexNetConfig, size: int) -> list[str]:
    """What the warnings above cost all told: a layer's dropped row is often still covered by a later window, so
    the count of input pixels never seen is the measure, not the number of warnings."""
    seen = seen_input(cfg, size)
    if seen >= size:
        return ["All told, every input pixel still reaches the output: later windows cover what these layers drop."]
    return [f"All told, the last {size - seen} rows and columns of the {size}x{size} input reach no output: the "
            f"network sees its first {seen}x{seen} pixels ({100 * seen**2 / size**2:.0f}% of them)."]


def target_map(cfg: AlexNetConfig, n: int, ceil: bool = False) -> dict[str, Any]:
    """Which square input sizes give an n x n map after conv1, and after the whole conv stack (pool5).

    The output side never decreases as the input grows, so each answer is one range [lo, hi] (or none).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"target map size must be a positive int, got {n!r}")
    conv1 = feature_windows(cfg)[0]
    after = {
        "conv1": lambda size: out_size(size, conv1.kernel, conv1.stride, conv1.padding, ceil),
        "pool5": lambda size: feature_size(cfg, size, ceil),
    }
    smallest = min_input_size(cfg, ceil)
    answer: dict[str, Any] = {"model": cfg.name, "target_map": n, "rounding": "ceil" if ceil else "floor"}
    for where, side_of in after.items():
        sizes = []
        size = 1
        while True:
            side = side_of(size)
            if side > n:
                break
            if side == n:
                sizes.append(size)
            size += 1
        entry: dict[str, Any] = {"sizes": [sizes[0], sizes[-1]] if sizes else None}
        entry["exact"] = [] if ceil or not sizes else exact_sizes(cfg, sizes[0], sizes[-1], upto=where)
        entry["valid_for_model"] = [s for s in range(sizes[0], sizes[-1] + 1) if s >= smallest] if sizes else []
        answer[where] = entry
    answer["min_input_size"] = smallest
    return answer


def format_target_map(answer: dict[str, Any]) -> str:
    n = answer["target_map"]
    out = [f"{answer['model']}: input sizes that give a {n}x{n} map ({answer['rounding']} rounding)"]
    for where, label in (("conv1", "after conv1"), ("pool5", "after the conv stack (pool5)")):
        entry = answer[where]
        if entry["sizes"] is None:
            out.append(f"  {label}: none (the map side jumps past {n})")
            continue
        lo, hi = entry["sizes"]
        text = f"  {label}: {lo}" + (f"..{hi}" if hi > lo else "")
        if entry["exact"]:
            text += f"; dropping no pixel: {', '.join(map(str, entry['exact']))}"
        elif answer["rounding"] == "floor":
            text += "; every one of them drops pixels somewhere"
        if not entry["valid_for_model"]:
            text += f" (but the whole network needs at least {answer['min_input_size']})"
        out.append(text)
    return "\n".join(out)
