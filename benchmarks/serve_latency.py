"""alexnet serve's latency: a prediction with Grad-CAM and every layer's activations, and the page's first paint.

    .venv/bin/python benchmarks/serve_latency.py RUN [--repeats 20] [--paints 10] [--json FILE]

RUN is a trained run folder (`alexnet demo` makes the demo model: alexnet-bn x0.25 at 96 px, 6 classes). The app
is served by uvicorn on the loopback, as `alexnet serve` does, and measured from outside over HTTP:

- the index: built once (first start, with the cache removed), then read back (second start);
- predict: GET /api/runs/RUN/predict?image=val:i (top-5, Grad-CAM of the top class, all 18 channel grids as PNG,
  the 8 nearest training images in fc7), and an upload followed by its predict; median and p90 of --repeats;
- Grad-CAM of another class alone (GET /gradcam);
- first paint: a fresh page in headless Chromium (/usr/bin/chromium), `first-contentful-paint` from the Paint
  Timing API and the time until the page has loaded its runs (body[data-ready]); median of --paints fresh pages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
        "--no-first-run"]


def timed(fn, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {"median_ms": round(statistics.median(ms), 1), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
            "n": len(ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a trained run folder")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--paints", type=int, default=10)
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()

    import httpx
    import torch

    from alexnet.inspect.index import index_path
    from alexnet.inspect.loaded import open_run
    from alexnet.serve.app import Background, create_app

    results: dict[str, object] = {"threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    run = open_run(args.run)
    cache = index_path(run.ckpt.path)
    cache.unlink(missing_ok=True)
    start = time.perf_counter()
    create_app([run], progress=False)
    results["index_build_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    app = create_app([args.run], progress=False)
    results["second_start_s"] = round(time.perf_counter() - start, 2)
    server = Background(app)
    rid = next(iter(app.state.runs))
    base = f"{server.url}/api/runs/{rid}"
    info = app.state.runs[rid].describe()
    results.update(model=info["model"], image_size=info["image_size"], classes=len(info["classes"]),
                   val_images=info["num_val"], layers=len(info["layers"]))
    try:
        with httpx.Client(timeout=60) as client:
            client.get(f"{base}/predict", params={"image": "val:0"}).raise_for_status()  # warm-up: first call
            n = max(info["num_val"], 1)
            results["predict_val"] = summary(timed(
                lambda i: client.get(f"{base}/predict", params={"image": f"val:{(7 * i + 1) % n}"}).raise_for_status(),
                args.repeats))
            photo = client.get(f"{base}/image/val:0").content

            def upload_and_predict(_i):
                up = client.post(f"{base}/upload", content=photo, headers={"X-Filename": "x.png"}).json()
                client.get(f"{base}/predict", params={"image": up["image"]}).raise_for_status()

            results["upload_and_predict"] = summary(timed(upload_and_predict, args.repeats))
            k = len(info["classes"])
            results["gradcam_other_class"] = summary(timed(
                lambda i: client.get(f"{base}/gradcam",
                                     params={"image": "val:1", "class": str(i % k)}).raise_for_status(),
                args.repeats))
        if os.path.exists("/usr/bin/chromium"):
            results.update(paint(server.url, args.paints))
    finally:
        server.stop()
    for key, value in results.items():
        print(f"{key:24} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def paint(url: str, paints: int) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    fcp, ready = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for i in range(paints + 1):
            context = browser.new_context(viewport={"width": 1280, "height": 900})  # a fresh page: no cache
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url + "/")
            page.wait_for_selector("body[data-ready='1']")
            elapsed = time.perf_counter() - start
            value = page.evaluate(
                "() => (performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime")
            context.close()
            if i:  # the first page also starts the browser's own caches: left out
                fcp.append(value / 1000)
                ready.append(elapsed)
        browser.close()
    return {"first_contentful_paint": summary(fcp), "page_ready": summary(ready)}


if __name__ == "__main__":
    sys.exit(main())
