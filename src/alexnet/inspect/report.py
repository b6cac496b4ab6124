"""`alexnet report RUN`: one self-contained HTML file to hand in or share.

No scripts and no network: styles are inline, every picture is a PNG in a data: URI, every text from the run
(class names, config, file names) is HTML-escaped. Sections: the training curves (metrics.csv), the per-class table
and the confusion matrix of the validation set (from the run's inspect index), conv1's filters (Figure 3), a seeded
sample of right and wrong validation predictions with their top-3 and Grad-CAM, and the resolved config.
"""

from __future__ import annotations

import csv
import html
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from alexnet.errors import AlexNetError
from alexnet.files import atomic_write_text
from alexnet.inspect import pictures
from alexnet.inspect.filter_structure import measure_filters
from alexnet.inspect.gradcam import cam_on, default_layer
from alexnet.inspect.index import load_index
from alexnet.inspect.loaded import open_run
from alexnet.inspect.plots import plot_curves, plot_filters
from alexnet.store.runfolder import REPORT_NAME

SEED = 0
NO_STRUCTURE = "no structure measure: conv1's filters are smaller than 5x5 (too few frequencies to tell from noise)"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;max-width:1100px;margin:24px auto;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #d9dde3;padding-bottom:4px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}td,th{border:1px solid #d9dde3;padding:3px 8px;text-align:right}
th{background:#f3f5f8;font-weight:600}td.name,th.name{text-align:left}.muted{color:#69707d}
.samples{display:flex;flex-wrap:wrap;gap:10px}.sample{border:1px solid #d9dde3;border-radius:6px;padding:6px;width:250px;font-size:12px}
.sample img{width:118px;height:118px;image-rendering:auto}.wrong{border-color:#e2a29c}
pre{background:#f6f7f9;padding:10px;font-size:12px;white-space:pre-wrap}img.plot{max-width:100%}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png_of(draw) -> bytes:
    """Bytes of a PNG that a plots.py function writes to a path."""
    with tempfile.TemporaryDirectory(prefix="alexnet-report-") as folder:
        path = os.path.join(folder, "figure.png")
        draw(path)
        return Path(path).read_bytes()


def _img(png: bytes, alt: str, cls: str = "") -> str:
    return f'<img src="{pictures.data_uri(png)}" alt="{e(alt)}"' + (f' class="{cls}"' if cls else "") + ">"


def metrics_rows(run_dir: Path) -> list[dict[str, float]]:
    rows = []
    try:
        with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    rows.append({k: float(v) for k, v in row.items() if k and v not in ("", None)})
                except ValueError:
                    continue  # a damaged row is left out of the picture, not a reason to fail the report
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    needed = ("epoch", "train_loss", "val_loss", "train_acc", "val_top1")
    return [r for r in rows if all(k in r for k in needed)]


def per_class(matrix: np.ndarray, names: list[str]) -> str:
    out = ['<table><tr><th class="name">class</th><th>images</th><th>recall (top-1)</th><th>precision</th></tr>']
    for i, name in enumerate(names):
        n, hit, col = int(matrix[i].sum()), int(matrix[i, i]), int(matrix[:, i].sum())
        recall = f"{hit / n:.3f}" if n else "-"
        precision = f"{hit / col:.3f}" if col else "-"
        out.append(f'<tr><td class="name">{e(name)}</td><td>{n}</td><td>{recall}</td><td>{precision}</td></tr>')
    out.append("</table>")
    return "".join(out)


def confusion_table(matrix: np.ndarray, names: list[str]) -> str:
    peak = max(int(matrix.max()), 1)
    out = ['<table><tr><th class="name">true \\ predicted</th>' + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            v = int(matrix[i, j])
            colour = "47,111,222" if i == j else "179,38,30"
            shade = 0.12 + 0.6 * v / peak if v else 0
            cells.append(f'<td style="background:rgba({colour},{shade:.2f})">{v}</td>')
        out.append(f'<tr><th class="name">{e(name)}</th>{"".join(cells)}</tr>')
    out.append("</table>")
    return "".join(out)


def samples_html(run, index, n: int) -> str:
    """Up to n right and n wrong validation predictions (seeded), each with its top-3 and Grad-CAM."""
    probs, labels, rows = index["val_probs"], index["val_labels"], index["val_rows"]
    pred = probs.argmax(dim=1)
    rng = np.random.default_rng(SEED)
    parts = []
    layer = default_layer(run)
    for title, mask in (("right", pred == labels), ("wrong", pred != labels)):
        hits = mask.nonzero().flatten().numpy()
        chosen = np.sort(rng.choice(hits, min(n, len(hits)), replace=False)) if len(hits) else []
        parts.append(f"<h3>{title} ({len(hits)} of {len(labels)})</h3><div class='samples'>")
        for i in chosen:
            image_id = f"val:{int(rows[i])}"
            x = run.to_input(run.dataset_image(image_id))
            view = run.view(x)
            with run.model() as model:
                heat = cam_on(model, x, [int(pred[i])], layer)[0]
            top = probs[i].topk(min(3, probs.shape[1]))
            text = " · ".join(f"{e(run.class_names[int(c)])} {100 * float(p):.1f}%" for p, c in zip(*top, strict=True))
            parts.append(
                f"<div class='sample{' wrong' if title == 'wrong' else ''}'>{_img(pictures.png_bytes(view), image_id)}"
                f"{_img(pictures.png_bytes(pictures.overlay(view, heat)), f'Grad-CAM {image_id}')}"
                f"<div>{e(image_id)}: true <b>{e(run.class_names[int(labels[i])])}</b></div><div>{text}</div></div>")
        parts.append("</div>")
    return "".join(parts) + f"<p class='muted'>Grad-CAM of the predicted class at {e(layer)} (captum LayerGradCam).</p>"


def build_report(run, index, samples: int = 8) -> str:
    import yaml

    ckpt = run.ckpt
    names = run.class_names
    sections = [f"<h1>{e(run.name)}: {e(ckpt.model_name)}</h1>",
                f"<p class='muted'>checkpoint {e(ckpt.path)} · {len(names)} classes · input {run.image_size} px · "
                f"preset {e(ckpt.preprocessing.preset)}</p>"]
    rows = metrics_rows(ckpt.run_dir)
    sections.append("<h2>Training curves</h2>")
    if rows:
        sections.append(_img(_png_of(lambda p: plot_curves(rows, p, title=run.name)), "training curves", "plot"))
    else:
        sections.append("<p class='muted'>no readable metrics.csv in the run folder</p>")
    if index is not None:
        matrix = index.confusion()
        total = int(matrix.sum())
        acc = np.trace(matrix) / total if total else 0.0
        sections += [f"<h2>Validation: top-1 {acc:.3f} on {total} images</h2>", per_class(matrix, names),
                     "<h2>Confusion matrix</h2>", confusion_table(matrix, names)]
    else:
        sections.append(f"<h2>Validation</h2><p class='muted'>the run's data is not available: {e(run.data_problem)}</p>")
    with run.model() as model:
        weight, towers = model.conv1.weight.detach().clone(), model.towers
    structure = measure_filters(weight, towers)
    sections += ["<h2>conv1 filters (the paper's Figure 3)</h2>",
                 _img(_png_of(lambda p: plot_filters(weight, p, towers=towers)), "conv1 filters", "plot"),
                 f"<p class='filter-structure'>{e(structure.describe()) if structure else NO_STRUCTURE}</p>"]
    if index is not None and samples:
        sections += ["<h2>Validation predictions with Grad-CAM</h2>", samples_html(run, index, samples)]
    config = yaml.safe_dump(ckpt.config, sort_keys=False)
    sections += ["<h2>Resolved config</h2>", f"<pre>{e(config)}</pre>"]
    body = "\n".join(sections)
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{e(run.name)}: alexnet report</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(run_path: str | os.PathLike, output: str | os.PathLike | None = None, *, samples: int = 8,
                 progress: bool = True) -> Path:
    """report.html for a run (default: in the run folder), written whole or not at all."""
    run = open_run(run_path)
    index = None
    if run.bundle is not None:
        try:
            index = load_index(run, progress=progress)
        except AlexNetError as err:
            run.data_problem = str(err)
    path = Path(output) if output is not None else run.ckpt.run_dir / REPORT_NAME
    atomic_write_text(path, build_report(run, index, samples))
    return path
