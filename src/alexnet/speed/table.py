"""The printed table of `alexnet bench` (and its JSON): ratios of figures measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alexnet.files import atomic_write_text


def format_table(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [f"alexnet bench: {cfg['model']} at {cfg['image_size']}, batch {cfg['batch_size']}, "
             f"torch {results['torch']}, {results['threads']} threads; medians of {cfg['repeats']}"]
    if "precision" in results:
        p = results["precision"]
        cpu, b16 = p["cpu"], p["speeds"]["bf16"]
        extras = [n for n, on in (("AMX", cpu["amx"]), ("AVX512-BF16", cpu["avx512_bf16"])) if on]
        lines.append(f"CPU: {cpu['model']}, capability {cpu['capability']}" + (f" + {' + '.join(extras)}" if extras
                     else ", no AMX") + f"; bf16 takes {b16['slowdown']:.1f}x the time of fp32 (precision probe)"
                     + (": bf16 skipped" if b16["crawls"] else ""))
    if "ceilings" in results:
        c = results["ceilings"]
        lines.append(f"machine ceilings: matmul fp32 {c['matmul_fp32_gflops']} GFLOP/s, bf16 {c['matmul_bf16_gflops']} "
                     f"GFLOP/s, memory copy {c['memcopy_gbs']} GB/s")
    lines.append(f"{'measure':<34}{'plain':>12}{'ours':>12}{'ours/plain':>12}")

    def row(label: str, plain: float, ours: float, ratio: float) -> None:
        lines.append(f"{label:<34}{plain:>12,.1f}{ours:>12,.1f}{ratio:>11.2f}x")

    if "train_step" in results:
        t = results["train_step"]
        o = t[t["ours"]]
        row("train step, images/s", t["plain"]["images_per_s"], o["images_per_s"], t["ours_over_plain"])
        row("train step, GFLOP/s", t["plain"]["gflops"], o["gflops"], t["ours_over_plain"])
        if "of_ceiling" in o:
            lines.append(f"{'  share of the dtype ceiling':<34}{t['plain']['of_ceiling']:>12.0%}{o['of_ceiling']:>12.0%}")
        f32, b16 = t["ours-fp32"], t["ours-bf16"]
        bf16_rate = f"{b16['images_per_s']} images/s" if "images_per_s" in b16 else f"not timed ({b16['skipped']})"
        lines.append(f"  ours = {t['ours']}, the faster here: fp32 + channels_last {f32['images_per_s']} images/s, "
                     f"bf16 + channels_last {bf16_rate}")
    if "data" in results:
        d = results["data"]
        lines.append("input pipelines, images/s fed at the working size: PIL loader with 0/1/2 workers "
                     f"{d['pil_loader_0_workers']:,.0f}/{d['pil_loader_1_workers']:,.0f}/{d['pil_loader_2_workers']:,.0f}; "
                     f"uint8 cache build {d['cache_build']:,.0f}; cache + BatchAugment {d['cache_batch_augment']:,.0f}")
    if "end_to_end" in results:
        e = results["end_to_end"]
        row("end to end on JPEGs, images/s", e["plain_images_per_s"], e["ours_images_per_s"], e["ours_over_plain"])
        lines.append(f"{'  one-time decode into the cache':<34}{'':>12}{e['ours_decode_and_cache_s']:>11.1f}s")
    if "inference" in results:
        i = results["inference"]
        row(f"inference batch {cfg['batch_size']}, images/s", i["plain_images_per_s"], i["ours_images_per_s"], i["throughput_ratio"])
        row("inference batch 1, latency ms", i["plain_latency_ms"], i["ours_latency_ms"], i["latency_ratio"])
        if "int8_images_per_s" in i:
            row(f"  ONNX Runtime int8, batch {cfg['batch_size']}", i["plain_images_per_s"], i["int8_images_per_s"],
                i["int8_throughput_ratio"])
            row("  ONNX Runtime int8, batch 1 ms", i["plain_latency_ms"], i["int8_latency_ms"], i["int8_latency_ratio"])
    if "lrn" in results:
        r = results["lrn"]
        lines.append(f"LRN cost ({cfg['lrn_model']}): with LRN / without, train images/s: plain "
                     f"{r['plain_with_lrn']}/{r['plain_without_lrn']} = {r['plain_ratio']:.0%}, ours "
                     f"{r['ours_with_lrn']}/{r['ours_without_lrn']} = {r['ours_ratio']:.0%} (target >= 85%)")
    if "section_seconds" in results:
        spent = ", ".join(f"{k} {v:.0f}" for k, v in results["section_seconds"].items())
        lines.append(f"time spent, s: {spent}; total {results['total_seconds']:.0f} s")
    lines.append(f"peak resident memory of the run: {results['peak_rss_mb']:,} MB")
    return "\n".join(lines)


def to_json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=2)


def write_json(results: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, to_json(results) + "\n")  # whole or not at all, as every file the package writes
