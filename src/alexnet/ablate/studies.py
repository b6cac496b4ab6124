"""The paper's claims as data: each study is a few arms that differ in one switch, the metrics it measures, and the
claims it checks (arm against baseline, on one metric, with the paper's effect and where the paper says it).

An arm is a set of training-config overrides (dotted keys, as `alexnet train` flags set them) on top of the
profile's base run, or a non-trained arm: `tencrop` (the base run's checkpoints evaluated with the paper's 10 crops)
and the hand-crafted baselines of the features study (`pixels`, `hog`: alexnet.ablate.baselines).

A study can also come from a YAML file (`load_study_file`), so that a teacher can make their own:

    name: my-lr
    title: Does a smaller learning rate help?
    metrics: [val_top1, gap]
    arms:
      - {name: lr-1e-3, overrides: {optim: {lr: 0.001}}}
      - {name: lr-1e-4, overrides: {optim: {lr: 0.0001}}}
    claims:
      - {arm: lr-1e-4, baseline: lr-1e-3, metric: val_top1, paper: 1.0, paper_text: "my guess: +1 point"}

No torch import here: the CLI validates a study before paying for torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.config import load_yaml
from alexnet.errors import ConfigError, short

# `alexnet ablate --profile`'s choices: cli/ablate.py imports this module when the parser is built, so it stays free
# of torch (tests/test_cli.py).
PROFILES = ("quick", "paper")
ARM_KINDS = ("train", "tencrop", "pixels", "hog")  # how an arm's numbers are made
OPS = ("-", "/")  # an effect is arm - baseline (points, epochs) or arm / baseline (a ratio)
MAX_ARMS = 16
MAX_SEEDS = 100

# The metrics a study can report, each computed from a run's metrics.csv (alexnet.ablate.metrics): name -> (label,
# unit, the direction a reader calls better: +1 higher, -1 lower, 0 neither).
METRICS: dict[str, tuple[str, str, int]] = {
    "val_top1": ("val top-1", "%", +1),
    "val_top5": ("val top-5", "%", +1),
    "train_acc": ("train accuracy", "%", +1),
    "gap": ("train - val gap", "points", -1),
    "epochs_to_threshold": ("epochs to the training-error threshold", "epochs", -1),
    "epochs_to_converge": ("epochs to converge", "epochs", -1),
    "stuck": ("stuck runs (training accuracy at chance)", "runs", -1),
    "params": ("parameters", "", 0),
    "images_per_s": ("training images/s", "img/s", +1),
    "filter_structure": ("structured conv1 filters", "%", +1),
}

# The base run of each profile, as dotted train-config overrides. quick: a quarter-width paper AlexNet (LRN, two
# towers, overlapping pooling, dropout 0.5) at 67 px, the paper's crop/flip/PCA augmentation, Adam, 8 epochs: a
# study of the built-in dataset in minutes on 2 CPU cores (README). A cosine schedule, because at a constant rate
# the last epoch's val top-1 still jumps by several points from one epoch to the next, and that noise swamped the
# paper's effects (README: both measured). One deviation: PyTorch's default init,
# because the paper's N(0, 0.01) left this small net at chance for the first epochs under Adam (measured: loss at
# ln(6) after 2 epochs, against 51% val top-1 with the default init); the init study compares them. paper: the
# paper's recipe (configs/paper.yaml: SGD, 227 px, full width, paper init).
PROFILE_BASE: dict[str, dict[str, Any]] = {
    "quick": {
        "model.name": "alexnet", "model.width_mult": 0.25, "model.init": "default", "data.image_size": 67,
        "data.preset": "paper", "optim.opt": "adam", "optim.lr": 1e-3, "optim.lr_schedule": "cosine",
        "run.epochs": 8, "run.batch_size": 64, "run.amp": "none", "run.channels_last": True,
    },
    "paper": {"recipe": "paper", "model.name": "alexnet", "data.image_size": 227, "data.preset": "paper"},
}
# Overrides a study may not use: they end a run before its epochs are done, which the runner would read as a run
# to continue, or they are the runner's own.
FORBIDDEN = ("run.max_steps", "run.early_stop", "run.time_budget", "run.lr_find", "run.output_dir", "run.seed")

MAX_SWEEP = 8  # learning rates one sweep may try
FIGURES = ("", "figure1")  # what a study's report may draw besides its curves
THRESHOLD_ERROR = 0.25  # the paper's Figure 1: 25% training error


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted train-config keys
    kind: str = "train"
    label: str = ""  # what the arm is, for the report

    def describe(self) -> str:
        return self.label or (", ".join(f"{k}={v}" for k, v in self.overrides.items()) or "the base run")


@dataclass(frozen=True)
class Claim:
    """The paper says: `metric` of `arm` op `metric` of `baseline` is `paper` (a number), or has the sign of
    `direction` where the paper gives no number; `paper_text` and `section` say where."""

    arm: str
    baseline: str
    metric: str
    paper: float | None = None  # the paper's effect in the metric's unit (a ratio for op "/")
    direction: int = 0  # +1 / -1: the sign the paper claims (taken from `paper` when it is given); 0: no claim
    op: str = "-"
    paper_text: str = ""
    section: str = ""

    @property
    def sign(self) -> int:
        """The claimed sign of the effect (of its log for a ratio): +1, -1, or 0 for no claim."""
        if self.paper is not None:
            centre = math.log(self.paper) if self.op == "/" else self.paper
            return (centre > 0) - (centre < 0)
        return self.direction


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    arms: tuple[Arm, ...]
    metrics: tuple[str, ...]
    claims: tuple[Claim, ...] = ()
    base: dict[str, Any] = field(default_factory=dict)  # overrides every train arm of this study shares
    paper: str = ""  # the paper's words, for the report
    notes: str = ""  # how this study measures, for the report
    threshold_arm: str | None = None  # epochs_to_threshold: the arm whose runs choose the threshold
    # Learning rates tried for each train arm before its runs (ablate.sweep): the arm trains at the one whose
    # training error is lowest after `sweep_epochs`, as the paper chose "independently" for each net of Figure 1.
    lr_sweep: tuple[float, ...] = ()
    sweep_epochs: int = 0
    figure: str = ""  # "figure1": the report draws the paper's Figure 1 from the runs' train_curve.csv

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"study {self.name}: no arm {name!r} (arms: {', '.join(a.name for a in self.arms)})")

    def __post_init__(self):
        check_study(self)


def _train(name: str, label: str, **overrides: Any) -> Arm:
    return Arm(name, {k.replace("__", "."): v for k, v in overrides.items()}, "train", label)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


def check_study(study: Study) -> None:
    """Every name, arm, metric and claim of a study, checked before anything runs; errors name the study."""
    where = f"study {short(study.name)}"
    if not isinstance(study.name, str) or not _NAME.match(study.name):
        raise ConfigError(f"{where}: the name must be 1-40 letters, digits, '.', '_' or '-'")
    if not 1 <= len(study.arms) <= MAX_ARMS:
        raise ConfigError(f"{where}: needs 1 to {MAX_ARMS} arms, got {len(study.arms)}")
    names = [a.name for a in study.arms]
    for a in study.arms:
        if not isinstance(a.name, str) or not _NAME.match(a.name):
            raise ConfigError(f"{where}: arm name {short(a.name)} must be 1-40 letters, digits, '.', '_' or '-'")
        if a.kind not in ARM_KINDS:
            raise ConfigError(f"{where}: arm {a.name}: kind must be one of {', '.join(ARM_KINDS)}, got {short(a.kind)}")
        for key in {**study.base, **a.overrides}:
            if key in FORBIDDEN:
                raise ConfigError(f"{where}: arm {a.name} sets {key}, which a study cannot (the runner sets the "
                                  "output folder and seeds, and every run must train its whole epochs)")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: arm names must differ, got {', '.join(names)}")
    for m in study.metrics:
        if m not in METRICS:
            raise ConfigError(f"{where}: unknown metric {short(m)} (known: {', '.join(METRICS)})")
    for c in study.claims:
        for arm in (c.arm, c.baseline):
            if arm not in names:
                raise ConfigError(f"{where}: a claim names arm {short(arm)}, which is not one of {', '.join(names)}")
        if c.metric not in METRICS:
            raise ConfigError(f"{where}: a claim names unknown metric {short(c.metric)} (known: {', '.join(METRICS)})")
        if c.op not in OPS:
            raise ConfigError(f"{where}: a claim's op must be - or /, got {short(c.op)}")
        if c.paper is not None and (isinstance(c.paper, bool) or not isinstance(c.paper, (int, float))
                                    or not math.isfinite(c.paper) or (c.op == "/" and c.paper <= 0)):
            raise ConfigError(f"{where}: a claim's paper effect must be a finite number (> 0 for a ratio), got "
                              f"{short(c.paper)}")
        if c.direction not in (-1, 0, 1):
            raise ConfigError(f"{where}: a claim's direction must be -1, 0 or 1, got {short(c.direction)}")
    _check_sweep(study, where)
    if study.threshold_arm is not None and study.threshold_arm not in names:
        raise ConfigError(f"{where}: threshold_arm {short(study.threshold_arm)} is not one of its arms")


def _check_sweep(study: Study, where: str) -> None:
    rates = study.lr_sweep
    if not isinstance(rates, (tuple, list)) or len(rates) > MAX_SWEEP or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and 0 < r <= 10
            for r in rates):
        raise ConfigError(f"{where}: lr_sweep must be up to {MAX_SWEEP} learning rates in (0, 10], got "
                          f"{short(rates)}")
    if rates and (isinstance(study.sweep_epochs, bool) or not isinstance(study.sweep_epochs, int)
                  or not 1 <= study.sweep_epochs <= 100):
        raise ConfigError(f"{where}: a sweep needs sweep_epochs 1..100, got {short(study.sweep_epochs)}")
    if study.figure not in FIGURES:
        raise ConfigError(f"{where}: figure must be one of {', '.join(map(repr, FIGURES))}, got {short(study.figure)}")


_STUDIES = [
    Study(
        "relu", "ReLU trains faster than tanh",
        (_train("relu", "ReLU", model__activation="relu"), _train("tanh", "tanh", model__activation="tanh")),
        ("epochs_to_threshold", "train_acc", "val_top1"),
        (Claim("tanh", "relu", "epochs_to_threshold", 6.0, op="/", section="3.1, Figure 1",
               paper_text="a four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster "
                          "than with tanh"),),
        base={"model.norm": "none"},
        paper="ReLUs train several times faster than their tanh equivalents (section 3.1, Figure 1: 6x to 25% "
              "training error on CIFAR-10).",
        notes="No normalisation in either arm (norm none), so nothing hides the saturation; the same learning rate "
              "for both (the paper tuned each); the whole AlexNet stack, where Figure 1 used a four-layer net.",
        threshold_arm="relu",
    ),
    Study(
        "lrn", "Local response normalisation helps generalisation",
        (_train("none", "no normalisation", model__norm="none"), _train("lrn", "LRN after conv1, conv2",
                                                                         model__norm="lrn"),
         _train("bn", "BatchNorm after every conv", model__norm="bn")),
        ("val_top1", "val_top5", "gap"),
        (Claim("lrn", "none", "val_top1", 1.4, section="3.3", paper_text="LRN reduces top-1 error by 1.4 points "
               "(ImageNet); 13% vs 11% test error on CIFAR-10"),
         Claim("lrn", "none", "val_top5", 1.2, section="3.3", paper_text="LRN reduces top-5 error by 1.2 points"),
         Claim("bn", "none", "val_top1", section="(later work)", paper_text="no claim in the paper: BatchNorm (2015) "
               "replaced LRN, which later work found ineffective")),
        paper="Response normalisation reduces top-1 and top-5 error rates by 1.4% and 1.2% (section 3.3); the "
              "first note: later shown ineffective.",
    ),
    Study(
        "overlap", "Overlapping pooling overfits less",
        (_train("plain", "max-pool 2/2", model__pooling="plain"), _train("overlap", "max-pool 3/2",
                                                                         model__pooling="overlap")),
        ("val_top1", "val_top5", "gap"),
        (Claim("overlap", "plain", "val_top1", 0.4, section="3.4", paper_text="reduces top-1 error by 0.4 points"),
         Claim("overlap", "plain", "val_top5", 0.3, section="3.4", paper_text="reduces top-5 error by 0.3 points"),
         Claim("overlap", "plain", "gap", direction=-1, section="3.4", paper_text="\"slightly more difficult to "
               "overfit\"")),
        paper="Overlapping pooling (z=3, s=2) reduces top-1 and top-5 error by 0.4% and 0.3% against z=s=2, and "
              "models with it are slightly more difficult to overfit (section 3.4).",
    ),
    Study(
        "dropout", "Dropout fights overfitting, at twice the iterations",
        (_train("p0", "no dropout", model__dropout=0.0), _train("p0.5", "dropout 0.5 on fc6, fc7",
                                                                model__dropout=0.5)),
        ("gap", "val_top1", "epochs_to_converge"),
        (Claim("p0.5", "p0", "gap", direction=-1, section="4.2", paper_text="without dropout the network "
               "exhibits substantial overfitting"),
         Claim("p0.5", "p0", "val_top1", direction=+1, section="4.2", paper_text="(implied: less overfitting)"),
         Claim("p0.5", "p0", "epochs_to_converge", 2.0, op="/", section="4.2", paper_text="dropout roughly "
               "doubles the number of iterations required to converge")),
        paper="Without dropout, our network exhibits substantial overfitting. Dropout roughly doubles the number of "
              "iterations required to converge (section 4.2).",
    ),
    Study(
        "augment", "Data augmentation fights overfitting; PCA lighting adds a point",
        (_train("none", "centre crop only", data__augment=False),
         _train("cropflip", "random crops + flips", data__augment=True, data__pca_sigma=0.0),
         _train("pca", "crops + flips + PCA colour noise", data__augment=True, data__pca_sigma=0.1)),
        ("val_top1", "gap"),
        (Claim("cropflip", "none", "gap", direction=-1, section="4.1", paper_text="without augmentation the "
               "network suffers from substantial overfitting"),
         Claim("cropflip", "none", "val_top1", direction=+1, section="4.1", paper_text="(implied)"),
         Claim("pca", "cropflip", "val_top1", 1.0, section="4.1", paper_text="PCA lighting reduces top-1 error by "
               "over 1 point")),
        base={"data.preset": "paper"},
        paper="Translations and reflections (section 4.1): without them substantial overfitting; altering RGB "
              "intensities along the principal components reduces top-1 error by over 1%.",
    ),
    Study(
        "towers", "Two towers (groups=2) beat a one-tower net with half the kernels",
        (_train("half", "one tower, half the kernels (48-128-192-192-256)", model__groups=1,
                model__channels="48,128,192,192,256"),
         _train("two", "two towers (groups=2 on conv2/4/5)", model__groups=2),
         _train("full", "one tower, all the kernels (groups=1)", model__groups=1)),
        ("val_top1", "val_top5", "params", "images_per_s"),
        (Claim("two", "half", "val_top1", 1.7, section="3.2", paper_text="the two-GPU net reduces top-1 error by "
               "1.7 points against a one-GPU net with half the kernels"),
         Claim("two", "half", "val_top5", 1.2, section="3.2", paper_text="and top-5 error by 1.2 points"),
         Claim("full", "two", "val_top1", section="3.2", paper_text="no claim: the paper split the net for memory")),
        paper="The two-GPU scheme reduces top-1 and top-5 error rates by 1.7% and 1.2% compared with a net with "
              "half as many kernels in each convolutional layer trained on one GPU (section 3.2; conv5 and the fc "
              "layers were not halved).",
    ),
    Study(
        "tencrop", "Ten crops at test beat the centre crop",
        (Arm("centre", {}, "train", "centre crop (the run's own validation)"),
         Arm("tencrop", {}, "tencrop", "10 crops (4 corners + centre, and their mirrors), softmax averaged")),
        ("val_top1", "val_top5"),
        (Claim("tencrop", "centre", "val_top1", direction=+1, section="4.1", paper_text="used throughout; the paper "
               "gives no number for it alone"),),
        paper="At test time, the network makes a prediction by extracting five 224x224 patches and their "
              "horizontal reflections and averaging the softmax predictions (section 4.1).",
        notes="The same last.pt of each seed's base run, evaluated twice: no retraining.",
    ),
    Study(
        "init", "Bias 1 in conv2/4/5 and fc6/7 accelerates early learning",
        (_train("bias0", "N(0, 0.01), every bias 0", model__init="paper-bias0"),
         _train("paper", "N(0, 0.01), bias 1 in conv2/4/5, fc6/7", model__init="paper"),
         _train("default", "PyTorch's default", model__init="default")),
        ("epochs_to_threshold", "val_top1", "stuck"),
        (Claim("paper", "bias0", "epochs_to_threshold", direction=-1, section="5", paper_text="\"accelerates the "
               "early stages of learning by providing the ReLUs with positive inputs\""),
         Claim("paper", "bias0", "val_top1", section="5", paper_text="no claim; Caffe's reference model found "
               "bias 1 flat or worse"),
         Claim("default", "paper", "val_top1", section="-", paper_text="no claim (PyTorch's default)")),
        paper="We initialized the neuron biases in the second, fourth and fifth convolutional layers, as well as "
              "in the fully-connected hidden layers, with the constant 1 (section 5).",
        notes="The threshold is chosen on the default-init arm (the one that trains reliably); a run that never "
              "reaches it counts at its last epoch, a bound.",
        threshold_arm="default",
    ),
    Study(
        "features", "Learned features beat hand-crafted ones",
        (Arm("pixels", {}, "pixels", "raw pixels (24x24) + logistic regression"),
         Arm("hog", {}, "hog", "HOG (scikit-image) + logistic regression"),
         Arm("alexnet", {}, "train", "AlexNet (the profile's base run)")),
        ("val_top1", "train_acc"),
        (Claim("alexnet", "hog", "val_top1", direction=+1, section="note 2", paper_text="learned features can beat "
               "hand-crafted ones"),
         Claim("alexnet", "pixels", "val_top1", direction=+1, section="note 2", paper_text="(and raw pixels)")),
        paper="The second note's first point: learned features can beat hand-crafted ones.",
        notes="The baselines see the same train/val split, centre-cropped to the profile's image size; they are "
              "deterministic given the data, so each is fitted once and every seed reads that one fit. Their train "
              "accuracy is on the whole training split after fitting (AlexNet's is the running accuracy of its last "
              "epoch).",
    ),
]
STUDIES: dict[str, Study] = {s.name: s for s in _STUDIES}


def _flatten(raw: Any, origin: str, prefix: str = "") -> dict[str, Any]:
    """{"model": {"norm": "bn"}} or {"model.norm": "bn"} -> {"model.norm": "bn"}."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: overrides must be a mapping of sections (model, data, optim, run), got "
                          f"{short(raw)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise ConfigError(f"{origin}: override keys must be text, got {short(key)}")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, origin, dotted + "."))
        else:
            out[dotted] = value
    return out


def load_study_file(path: str | Path) -> Study:
    """A study YAML (see the module docstring) -> Study; every mistake is a ConfigError naming the file."""
    origin = str(path)
    raw = load_yaml(path)  # bounded, alias-free, UTF-8; errors name the file
    known = {"name", "title", "arms", "metrics", "claims", "base", "paper", "notes", "threshold_arm", "lr_sweep",
             "sweep_epochs", "figure"}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"{origin}: unknown key {short(unknown[0])} (known: {', '.join(sorted(known))})")
    arms_raw = raw.get("arms")
    if not isinstance(arms_raw, list) or not arms_raw:
        raise ConfigError(f"{origin}: 'arms' must be a list of {{name, overrides}} mappings")
    arms = []
    for i, a in enumerate(arms_raw):
        if not isinstance(a, dict) or "name" not in a:
            raise ConfigError(f"{origin}: arm {i + 1} must be a mapping with a name, got {short(a)}")
        extra = sorted(str(k) for k in a if k not in ("name", "overrides", "kind", "label"))
        if extra:
            raise ConfigError(f"{origin}: arm {short(a['name'])}: unknown key {short(extra[0])} (known: name, "
                              "overrides, kind, label)")
        arms.append(Arm(str(a["name"]), _flatten(a.get("overrides") or {}, f"{origin}: arm {a['name']}"),
                        str(a.get("kind", "train")), str(a.get("label", ""))))
    claims = []
    for i, c in enumerate(raw.get("claims") or []):
        if not isinstance(c, dict):
            raise ConfigError(f"{origin}: claim {i + 1} must be a mapping, got {short(c)}")
        extra = sorted(str(k) for k in c if k not in ("arm", "baseline", "metric", "paper", "direction", "op",
                                                       "paper_text", "section"))
        if extra:
            raise ConfigError(f"{origin}: claim {i + 1}: unknown key {short(extra[0])}")
        try:
            claims.append(Claim(arm=str(c["arm"]), baseline=str(c["baseline"]), metric=str(c.get("metric",
                                "val_top1")), paper=c.get("paper"), direction=c.get("direction", 0),
                                op=str(c.get("op", "-")), paper_text=str(c.get("paper_text", "")),
                                section=str(c.get("section", ""))))
        except KeyError as e:
            raise ConfigError(f"{origin}: claim {i + 1} needs {e.args[0]!r}") from None
    metrics = raw.get("metrics") or ["val_top1", "gap"]
    if not isinstance(metrics, list):
        raise ConfigError(f"{origin}: 'metrics' must be a list (known: {', '.join(METRICS)})")
    name = raw.get("name") or Path(path).stem
    try:
        return Study(str(name), str(raw.get("title") or name), tuple(arms), tuple(str(m) for m in metrics),
                     tuple(claims), _flatten(raw.get("base") or {}, f"{origin}: base"), str(raw.get("paper", "")),
                     str(raw.get("notes", "")), raw.get("threshold_arm"), _rates(raw.get("lr_sweep", ())),
                     raw.get("sweep_epochs", 0), raw.get("figure", ""))
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None


def _rates(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # YAML's list as the tuple a Study holds
