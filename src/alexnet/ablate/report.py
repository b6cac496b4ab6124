"""A study's report from whatever has finished: report.md, a self-contained report.html (the curves inlined as a
PNG), report.json (every number, for a program), and curves.png; `alexnet ablate all` adds summary.md/html.

Every number is recomputed from the runs' own metrics.csv (alexnet.ablate.metrics says how), so a reader can check
it: the report lists each run's folder. A run that has not finished is listed as pending; a run whose metrics.csv
is damaged is named, with the cause, and left out.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.ablate import metrics as m
from alexnet.ablate import stats
from alexnet.ablate.figure1 import plot_figure1
from alexnet.ablate.plan import StudyPlan
from alexnet.ablate.runner import DONE, eval_dir, job_status, run_dir
from alexnet.ablate.studies import METRICS, Claim
from alexnet.errors import AlexNetError, plural
from alexnet.files import atomic_write, atomic_write_text
from alexnet.inspect.plots import _figure
from alexnet.training.curve import CURVE_FILE, read_curve

Block = tuple  # ("h1"|"h2"|"p"|"table"|"img", ...)


@dataclass
class ClaimResult:
    claim: Claim
    effect: stats.Effect | None
    verdict: str
    seeds_needed: int | None
    censored: int = 0  # seeds whose value is a bound (the run never reached the threshold)


@dataclass
class StudyResult:
    plan: StudyPlan
    values: dict[str, dict[str, dict[int, float]]]  # arm -> metric -> seed -> value
    censored: set[tuple[str, int]]  # (arm, seed) whose epochs_to_threshold is a bound
    rows: dict[str, list[dict[str, float]]]  # run name -> metrics.csv rows, for the curves
    runs: list[dict[str, Any]]  # one per run: arm, seed, name, status, file
    pending: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file: cause"
    threshold: float | None = None
    threshold_why: str = ""
    claims: list[ClaimResult] = field(default_factory=list)
    seconds: float = 0.0  # training and validation time of the finished runs (metrics.csv's `seconds`)
    classes: int = 0  # the most classes of any finished run


def metrics_file(plan: StudyPlan, run) -> Path:
    return (eval_dir(plan.root, run.name) if run.kind == "tencrop" else run_dir(plan.root, run.name)) / "metrics.csv"


def _info(plan: StudyPlan, run) -> dict[str, Any]:
    if run.kind == "train":
        return m.run_info(plan.root, run.name)
    if run.kind == "tencrop":
        return m.run_info(plan.root, run.source)
    meta = json.loads((run_dir(plan.root, run.name) / "baseline.json").read_text(encoding="utf-8"))
    return {"classes": len(meta["classes"]), "params": None}


def _damaged(path: Path) -> str | None:
    """The complaint about a metrics.csv that exists and cannot be read (an unfinished run's file is fine)."""
    if not path.is_file():
        return None
    try:
        m.read_rows(path)
    except m.MetricsError as e:
        return str(e)
    return None


def collect(plan: StudyPlan) -> StudyResult:
    """Read every finished run of the plan and compute the study's numbers."""
    study = plan.study
    result = StudyResult(plan, {a.name: {k: {} for k in METRICS} for a in study.arms}, set(), {}, [])
    loaded: list[tuple[Any, list[dict[str, float]], dict[str, Any]]] = []
    for run in plan.runs:
        path = metrics_file(plan, run)
        status = job_status(plan.root, run.name, run.kind, run.source)
        entry = {"arm": run.arm, "seed": run.seed, "name": run.name, "status": status, "file": str(path)}
        result.runs.append(entry)
        if status != DONE:
            damaged = _damaged(path)
            if damaged:
                result.skipped.append(damaged)
                entry["status"] = "skipped"
            else:
                result.pending.append(f"{run.arm} seed {run.seed}: {run.name} ({status})")
            continue
        try:
            rows = m.read_rows(path)
            info = _info(plan, run)
        except (AlexNetError, OSError, ValueError, KeyError, TypeError) as e:
            result.skipped.append(f"{path}: {e}" if str(path) not in str(e) else str(e))
            entry["status"] = "skipped"
            continue
        if run.kind == "train":  # a finer training curve where the run wrote one (epochs_to_threshold reads it)
            info = {**info, "curve": read_curve(run_dir(plan.root, run.name) / CURVE_FILE)}
        loaded.append((run, rows, info))
        result.classes = max(result.classes, int(info.get("classes") or 0))
        result.rows[run.name] = rows
        if run.kind == "train":
            result.seconds += sum(r.get("seconds", 0.0) for r in rows)
    uses_threshold = "epochs_to_threshold" in study.metrics or any(c.metric == "epochs_to_threshold"
                                                                  for c in study.claims)
    if uses_threshold:
        arm = study.threshold_arm or study.arms[0].name
        chosen = [(rows, info) for run, rows, info in loaded if run.arm == arm]
        classes = min((int(info["classes"]) for _, info in chosen), default=2)
        result.threshold, result.threshold_why = m.choose_threshold([rows for rows, _ in chosen], classes)
    for run, rows, info in loaded:
        values = m.run_values(rows, info, result.threshold)
        if uses_threshold and result.threshold is not None and values["epochs_to_threshold"] is None:
            values["epochs_to_threshold"] = float(rows[-1]["epoch"])  # a bound: it needs more than that
            result.censored.add((run.arm, run.seed))
        for key, value in values.items():
            if value is not None:
                result.values[run.arm][key][run.seed] = value
    for claim in study.claims:
        result.claims.append(judge(result, claim))
    return result


NOT_APPLICABLE = "not applicable (top-5 of 5 classes or fewer is 100%)"


def judge(result: StudyResult, claim: Claim) -> ClaimResult:
    """The claim's paired effect, verdict (stats.VERDICT_RULE) and the seeds an inconclusive one would need.

    A censored value (a run that never reached the threshold, counted at its last epoch) makes the arm's value a
    lower bound: censored arm runs pull the effect toward lower values, censored baseline runs toward higher, so
    a verdict that such a bias could have produced is downgraded to inconclusive."""
    arm, base = result.values[claim.arm][claim.metric], result.values[claim.baseline][claim.metric]
    effect = stats.paired_effect(arm, base, claim.op)
    verdict = stats.verdict(effect, claim.sign)
    seeds = sorted(set(arm) & set(base))
    censored_arm = sum((claim.arm, s) in result.censored for s in seeds) if claim.metric == "epochs_to_threshold" else 0
    censored_base = (sum((claim.baseline, s) in result.censored for s in seeds)
                     if claim.metric == "epochs_to_threshold" else 0)
    if censored_base and verdict == "reproduced" and claim.sign > 0 or censored_arm and verdict == "reproduced" \
            and claim.sign < 0:
        verdict = "inconclusive"
    if censored_arm and verdict == "contradicted" and claim.sign > 0 or censored_base and \
            verdict == "contradicted" and claim.sign < 0:
        verdict = "inconclusive"
    if effect is None and claim.metric == "val_top5" and 0 < result.classes <= 5:
        verdict = NOT_APPLICABLE
    needed = (stats.seeds_needed(effect.centre, effect.spread)
              if effect is not None and effect.n >= 2 and verdict == "inconclusive" else None)
    return ClaimResult(claim, effect, verdict, needed, censored_arm + censored_base)


# --- formatting ----------------------------------------------------------------------------------------------------


def _num(x: float, metric: str) -> str:
    if metric == "params":
        return f"{x:,.0f}"
    if metric == "stuck":
        return f"{x:.2f}"
    return f"{x:.1f}" if abs(x) >= 100 or metric == "images_per_s" else f"{x:.2f}"


def cell(result: StudyResult, arm: str, metric: str) -> str:
    """mean +- std (n) of one arm's metric over seeds; a bound where runs never reached the threshold."""
    values = result.values[arm][metric]
    if not values:
        return "n/a" if metric == "val_top5" else "-"
    v = list(values.values())
    if metric == "stuck":
        return f"{int(sum(v))} of {len(v)}"
    bound = ">= " if metric == "epochs_to_threshold" and any((arm, s) in result.censored for s in values) else ""
    spread = f" +- {_num(stats.std(v), metric)}" if len(v) > 1 else ""
    return f"{bound}{_num(stats.mean(v), metric)}{spread} (n={len(v)})"


def effect_text(c: ClaimResult) -> str:
    effect, claim = c.effect, c.claim
    if c.verdict == NOT_APPLICABLE:
        return "n/a"
    if effect is None:
        return "no paired seeds yet"
    if claim.op == "/":
        ci = "" if effect.low is None else f" [{effect.low:.2f}, {effect.high:.2f}]"
        return f"{effect.estimate:.2f}x{ci}"
    ci = "" if effect.low is None else f" [{effect.low:+.2f}, {effect.high:+.2f}]"
    return f"{effect.estimate:+.2f}{ci}"


def paper_text(claim: Claim) -> str:
    unit = METRICS[claim.metric][1]
    unit = "points" if unit == "%" else unit
    if claim.paper is not None:
        value = f"{claim.paper:.1f}x" if claim.op == "/" else f"{claim.paper:+.1f} {unit}"
    elif claim.direction:
        value = ("> 1" if claim.direction > 0 else "< 1") if claim.op == "/" else ("> 0" if claim.direction > 0
                                                                                      else "< 0")
    else:
        value = "no claim"
    section = claim.section.strip(" ()-")
    where = f" (section {section})" if section[:1].isdigit() else f" ({section})" if section else ""
    return f"{value}{where}: {claim.paper_text}" if claim.paper_text else f"{value}{where}"


def claim_label(claim: Claim) -> str:
    what = METRICS[claim.metric][0]
    return f"{what}: {claim.arm} {'/' if claim.op == '/' else '-'} {claim.baseline}"


def verdict_text(c: ClaimResult) -> str:
    text = c.verdict
    if c.verdict == "inconclusive" and c.effect is not None and c.effect.n < 2:
        text += " (one seed: no interval; run more seeds)"
    elif c.verdict == "inconclusive":
        text += (f" (about {c.seeds_needed} seeds would settle it)" if c.seeds_needed
                 else " (the measured effect is 0 or tiny: no number of seeds within 1000 would settle it)")
    paper, effect = c.claim.paper, c.effect
    if c.verdict == "reproduced" and paper is not None and effect is not None and not effect.low <= paper <= effect.high:
        text += (f" in direction only: the paper's {paper:g}{'x' if c.claim.op == '/' else ''} is outside the "
                 "interval")
    if c.censored:
        text += f"; {c.censored} value(s) are bounds"
    return text


def describe_settings(plan: StudyPlan) -> str:
    cfgs = list(plan.configs.values())
    cfg = cfgs[0] if cfgs else {}
    mdl, data, opt, run = (cfg.get(k, {}) for k in ("model", "data", "optim", "run"))
    source = plan.settings.data or "the built-in shapes dataset"
    pixels = ", pixels 0-255 less the mean" if data.get("pixel_scale") == "255" else ""
    return (f"Data: {source}. Profile {plan.settings.profile}: {mdl.get('name')} at width x{mdl.get('width_mult')}, "
            f"init {mdl.get('init')}, {data.get('image_size')} px, preset {data.get('preset')}{pixels}, "
            f"{opt.get('opt')} lr {opt.get('lr')} ({opt.get('lr_schedule')} schedule), "
            f"{plural(int(run.get('epochs') or 0), 'epoch')}, batch {run.get('batch_size')}. Seeds: {plan.seeds}. "
            f"User overrides: {json.dumps(plan.settings.overrides) if plan.settings.overrides else 'none'}.")


def blocks(result: StudyResult, curves: Path | None) -> list[Block]:
    plan, study = result.plan, result.plan.study
    out: list[Block] = [("h1", f"alexnet ablate {study.name}: {study.title}")]
    if study.paper:
        out.append(("p", f"The paper: {study.paper}"))
    out.append(("p", describe_settings(plan)))
    if study.notes:
        out.append(("p", study.notes))
    done = sum(r["status"] == DONE for r in result.runs)
    out.append(("p", f"{done} of {len(result.runs)} runs finished; {result.seconds:.0f} s of training and validation "
                     f"in them (their metrics.csv). Made {time.strftime('%Y-%m-%d %H:%M')}."))
    if result.threshold is not None or result.threshold_why:
        thr = "none" if result.threshold is None else f"{100 * result.threshold:.0f}%"
        out.append(("p", f"Training-error threshold: {thr}: {result.threshold_why}."))
    if curves is not None:
        what = ("the paper's Figure 1, measured: training error against epochs, 10 points per epoch, the mean over "
                "seeds thick and each seed thin; ReLU solid, tanh dashed" if study.figure == "figure1" else
                "training error and val top-1 per epoch, mean over seeds with a band of one std")
        out += [("h2", "Learning curves"), ("img", curves, what)]
    out.append(("h2", "Metrics (mean +- std over seeds)"))
    shown = study.metrics + tuple(k for k in ("filter_structure",) if k not in study.metrics and any(
        result.values[a.name][k] for a in study.arms))  # every trained run's conv1 is measured (issue 25)
    header = ["arm", "what it is"] + [f"{METRICS[k][0]}{f' ({METRICS[k][1]})' if METRICS[k][1] else ''}"
                                      for k in shown]
    out.append(("table", header, [[a.name, a.describe()] + [cell(result, a.name, k) for k in shown]
                                  for a in study.arms]))
    if result.claims:
        out.append(("h2", "Effects against the paper"))
        out.append(("table", ["comparison", "measured effect [95% interval]", "seeds", "the paper", "verdict"],
                    [[claim_label(c.claim), effect_text(c), str(c.effect.n if c.effect else 0),
                      paper_text(c.claim), verdict_text(c)] for c in result.claims]))
    out += [("h2", "How the numbers are made"), ("p", "Verdict rule: " + stats.VERDICT_RULE),
            ("p", "Metrics: " + m.DEFINITIONS)]
    out.append(("h2", "Runs"))
    out.append(("table", ["arm", "seed", "status", "metrics file"],
                [[r["arm"], str(r["seed"]), r["status"], r["file"]] for r in result.runs]))
    if result.pending:
        out += [("h2", "Pending"), ("p", "Not finished yet (run the study again to continue them): "
                                         + "; ".join(result.pending))]
    if result.skipped:
        out += [("h2", "Skipped"), ("p", "Left out of every number above: " + "; ".join(result.skipped))]
    return out


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(items: list[Block]) -> str:
    lines: list[str] = []
    for b in items:
        if b[0] == "h1":
            lines += [f"# {b[1]}", ""]
        elif b[0] == "h2":
            lines += [f"## {b[1]}", ""]
        elif b[0] == "p":
            lines += [b[1], ""]
        elif b[0] == "img":
            lines += [f"![{b[2]}]({b[1].name})", ""]
        elif b[0] == "table":
            lines.append("| " + " | ".join(_md_cell(h) for h in b[1]) + " |")
            lines.append("|" + "---|" * len(b[1]))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b[2]]
            lines.append("")
    return "\n".join(lines)


_CSS = ("body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}")


def to_html(items: list[Block], title: str) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>"
             "</head><body>"]
    for b in items:
        if b[0] in ("h1", "h2"):
            parts.append(f"<{b[0]}>{e(b[1])}</{b[0]}>")
        elif b[0] == "p":
            parts.append(f"<p>{e(b[1])}</p>")
        elif b[0] == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
            parts.append(f"<img alt='{e(b[2])}' src='data:image/png;base64,{data}'>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b[2])
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def plot_study(result: StudyResult, path: Path) -> Path | None:
    """Training error and val top-1 per epoch for each trained arm: the mean over seeds, a band of one std."""
    import numpy as np

    series = []
    for arm in result.plan.study.arms:
        runs = [result.rows[r.name] for r in result.plan.runs_of(arm.name) if r.name in result.rows
                and len(result.rows[r.name]) > 1]
        if runs:
            series.append((arm.name, runs))
    if not series:
        return None
    fig = _figure(11, 4)
    ax_err, ax_val = fig.subplots(1, 2)
    for name, runs in series:
        for ax, key, flip in ((ax_err, "train_acc", True), (ax_val, "val_top1", False)):
            length = min(len(r) for r in runs)
            ys = np.array([[100 * (1 - row.get(key, math.nan)) if flip else 100 * row.get(key, math.nan)
                            for row in r[:length]] for r in runs])
            x = np.arange(1, length + 1)
            mu, sd = ys.mean(axis=0), ys.std(axis=0, ddof=1) if len(ys) > 1 else np.zeros(length)
            line = ax.plot(x, mu, "o-", ms=3, label=f"{name} (n={len(runs)})")[0]
            ax.fill_between(x, mu - sd, mu + sd, color=line.get_color(), alpha=0.2)
    if result.threshold is not None:
        ax_err.axhline(100 * result.threshold, color="grey", ls="--", lw=1, label="threshold")
    ax_err.set(xlabel="epoch", ylabel="training error (%)", title="training error")
    ax_val.set(xlabel="epoch", ylabel="val top-1 (%)", title="validation top-1")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_err, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"alexnet ablate {result.plan.study.name}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp), suffix=".png")
    return path


def result_json(result: StudyResult) -> dict[str, Any]:
    return {
        "study": result.plan.study.name,
        "threshold": result.threshold,
        "values": {arm: {k: {str(s): v for s, v in seeds.items()} for k, seeds in ms.items() if seeds}
                   for arm, ms in result.values.items()},
        "censored": sorted([list(c) for c in result.censored]),
        "claims": [{"arm": c.claim.arm, "baseline": c.claim.baseline, "metric": c.claim.metric, "op": c.claim.op,
                    "paper": c.claim.paper, "direction": c.claim.sign, "verdict": c.verdict,
                    "seeds_needed": c.seeds_needed,
                    "effect": None if c.effect is None else {"n": c.effect.n, "estimate": c.effect.estimate,
                                                             "low": c.effect.low, "high": c.effect.high}}
                   for c in result.claims],
        "runs": result.runs, "pending": result.pending, "skipped": result.skipped, "seconds": result.seconds,
    }


def write_report(plan: StudyPlan) -> StudyResult:
    """report.md, report.html, report.json and curves.png in DIR/STUDY, from the runs that have finished."""
    result = collect(plan)
    folder = plan.folder
    folder.mkdir(parents=True, exist_ok=True)
    if plan.study.figure == "figure1":  # the paper's own figure, from the runs' train_curve.csv
        curves = plot_figure1(result, folder / "figure1.png")
    else:
        curves = plot_study(result, folder / "curves.png")
    items = blocks(result, curves)
    atomic_write_text(folder / "report.md", to_markdown(items))
    atomic_write_text(folder / "report.html", to_html(items, f"alexnet ablate {plan.study.name}"))
    atomic_write_text(folder / "report.json", json.dumps(result_json(result), indent=1) + "\n")
    return result


def write_summary(root: Path, results: list[StudyResult]) -> Path:
    """DIR/summary.md and summary.html: one row per claim of every study."""
    rows = []
    for r in results:
        for c in r.claims:
            rows.append([r.plan.study.name, claim_label(c.claim), effect_text(c),
                         str(c.effect.n if c.effect else 0), paper_text(c.claim), verdict_text(c)])
    seconds = sum(r.seconds for r in results)
    items: list[Block] = [
        ("h1", "alexnet ablate: the paper's claims, measured"),
        ("p", describe_settings(results[0].plan) if results else "No studies."),
        ("p", f"{seconds:.0f} s of training and validation in the finished runs (runs shared between studies are "
              "counted once per study). Each study's report.md has the curves, the metrics and every run."),
        ("table", ["study", "comparison", "measured effect [95% interval]", "seeds", "the paper", "verdict"], rows),
        ("p", "Verdict rule: " + stats.VERDICT_RULE),
    ]
    filters = [[r.plan.study.name, arm, f"{sum(v.values()) / len(v):.0f}%", str(len(v))] for r in results
               for arm, metrics in r.values.items() if (v := metrics["filter_structure"])]
    if filters:
        items += [("h2", "Are conv1's filters structure or noise?"),
                  ("p", "Each arm's mean share of conv1 filters whose spectral energy sits in few frequencies (above "
                        "99% of random filters: about 1% for random weights; alexnet.inspect.filter_structure)."),
                  ("table", ["study", "arm", "structured conv1 filters", "seeds"], filters)]
    atomic_write_text(root / "summary.md", to_markdown(items))
    atomic_write_text(root / "summary.html", to_html(items, "alexnet ablate summary"))
    return root / "summary.md"
