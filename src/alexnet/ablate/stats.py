"""Seeds to numbers: mean and standard deviation, the paired effect with its 95% t interval, the verdict rule, and
the number of seeds a measured effect would need. Plain Python (no scipy): the t quantiles are tabulated.

An effect is paired by seed: for each seed that both arms finished, arm - baseline (or log(arm / baseline) for a
ratio, so that the interval is taken on the log scale and mapped back). The interval is mean +- t(0.975, n-1) * s /
sqrt(n) of those differences.

The verdict rule (written into every report):
- reproduced: the measured effect has the paper's sign and its 95% interval excludes 0;
- contradicted: the opposite sign, and the interval excludes 0;
- inconclusive: the interval includes 0 (or fewer than 2 seeds): with the seeds that the measured effect and spread
  would need for the interval to exclude 0;
- no claim: the paper states no direction for this comparison (the effect is shown, not judged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# t(0.975, df) for df = 1..30; beyond, the normal approximation corrected to O(1/df^2) (within 0.001 of the exact
# quantile from df 31 on).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964
MAX_SEEDS_NEEDED = 1000

VERDICT_RULE = (
    "reproduced: the measured effect has the paper's sign and its 95% interval excludes 0; contradicted: the "
    "opposite sign and the interval excludes 0; inconclusive: the interval includes 0 or there are fewer than 2 "
    "paired seeds (with the seeds that the measured mean and spread would need); no claim: the paper states no "
    "direction. Effects are paired by seed (arm minus baseline, or arm / baseline for a ratio, on the log scale); "
    "the interval is mean +- t(0.975, n-1) s / sqrt(n)."
)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def std(values: list[float]) -> float:
    """Sample standard deviation (n - 1); 0 for one value."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Effect:
    """A paired effect over n seeds: its centre and 95% interval in the metric's unit (a ratio for op "/")."""

    n: int
    estimate: float  # mean difference, or the geometric mean ratio
    low: float | None  # None with fewer than 2 seeds
    high: float | None
    op: str = "-"
    spread: float = 0.0  # the sample std of the differences (of the log ratios)
    centre: float = 0.0  # the mean difference (of the log ratios): what the verdict's sign is read from

    @property
    def excludes_zero(self) -> bool:
        """The interval excludes no effect (0 for a difference, 1 for a ratio)."""
        if self.low is None or self.high is None:
            return False
        null = 1.0 if self.op == "/" else 0.0
        return self.low > null or self.high < null


def paired_effect(arm: dict[int, float], baseline: dict[int, float], op: str = "-") -> Effect | None:
    """The effect of `arm` against `baseline`, each {seed: value}, over the seeds both have; None if none do.

    A ratio needs positive values: a seed where either is not positive is left out."""
    seeds = sorted(set(arm) & set(baseline))
    if op == "/":
        diffs = [math.log(arm[s] / baseline[s]) for s in seeds if arm[s] > 0 and baseline[s] > 0]
    else:
        diffs = [arm[s] - baseline[s] for s in seeds]
    if not diffs:
        return None
    n, m, s = len(diffs), mean(diffs), std(diffs)
    low = high = None
    if n >= 2:
        half = t975(n - 1) * s / math.sqrt(n)
        low, high = m - half, m + half
    if op == "/":
        return Effect(n, math.exp(m), None if low is None else math.exp(low),
                      None if high is None else math.exp(high), op, s, m)
    return Effect(n, m, low, high, op, s, m)


def seeds_needed(centre: float, spread: float) -> int | None:
    """The smallest n >= 2 for which t(0.975, n-1) * spread / sqrt(n) < |centre|: how many seeds an effect of this
    size and spread needs for its interval to exclude 0. None when the effect is 0 (no number of seeds will do) or
    it would take more than MAX_SEEDS_NEEDED."""
    if centre == 0:
        return None
    if spread == 0:
        return 2
    for n in range(2, MAX_SEEDS_NEEDED + 1):
        if t975(n - 1) * spread / math.sqrt(n) < abs(centre):
            return n
    return None


def verdict(effect: Effect | None, sign: int) -> str:
    """The verdict rule (VERDICT_RULE) for a measured effect against the paper's claimed sign."""
    if sign == 0:
        return "no claim"
    if effect is None:
        return "no data"
    measured = (effect.centre > 0) - (effect.centre < 0)
    if effect.excludes_zero:
        return "reproduced" if measured == sign else "contradicted"
    return "inconclusive"
