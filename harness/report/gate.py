"""The regression gate's decision rule: paired one-sided tests, Holm across splits, a power check.

Why this rule (docs/regression.md has the figures):

- **Paired, one-sided, exact.** Two runs over the same samples differ only where their answers
  differ: ``worse`` pairs (right before, wrong now) and ``better`` pairs. Under "no drop" a
  discordant pair is worse with probability at most 1/2, so the exact binomial (McNemar) tail
  ``P(X >= worse | worse + better, 1/2)`` is a valid one-sided p-value for "the drop exceeds 0".
- **Family-wise error control.** A gate that fails when *any* of many split tests fails would
  fail often by chance (51 VideoMME split values at 5% each). Every test the gate judges
  (overall and each split value, of every run) forms one family; Holm's step-down procedure
  keeps the chance of any false alarm at most ``alpha`` whatever the dependence between tests.
- **The tolerance is a minimum detectable effect, not a threshold.** Failing only when the
  observed drop exceeds the tolerance makes a true drop of exactly the tolerance a coin flip.
  Instead the gate fails on any significant drop, and before judging it checks that a drop of
  ``tolerance`` points would be detected with probability ``power``: the smallest such drop
  (MDE) is computed at the test's ``n``, its noise discordance and the Holm family's strictest
  level ``alpha / m``. A required test whose MDE exceeds the tolerance makes the verdict
  UNDERPOWERED (its own exit code), never a silent pass.

Power model: the noise part of the discordance, ``d0``, is estimated as ``2 min(worse, better) / n``
(flips in both directions that cancel); a drop of ``delta`` adds ``delta`` worse pairs. The number
of discordant pairs is then Binomial(n, d0 + delta), and given them the worse count is
Binomial(D, (d0/2 + delta) / (d0 + delta)); power sums the exact test's rejection probability
over D.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom

VERDICT_EXIT = {"OK": 0, "REGRESSION": 1, "UNDERPOWERED": 3, "NOT_COMPARABLE": 4}


def one_sided_p(worse: int, better: int) -> float:
    """Exact McNemar p-value for "the new run is worse": P(X >= worse), X ~ Bin(worse + better, 1/2)."""
    n = worse + better
    if n == 0:
        return 1.0
    return float(binom.sf(worse - 1, n, 0.5))


def holm_adjust(pvalues: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (reject where adjusted < alpha): FWER <= alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def _critical_counts(discordant: np.ndarray, level: float) -> np.ndarray:
    """Per number of discordant pairs D: the smallest worse count the exact test rejects at ``level``."""
    k = binom.isf(level, discordant, 0.5) + 1
    # guard the discrete boundary against floating error: sf(k-1) must be <= level
    k = np.where(binom.sf(k - 1, discordant, 0.5) > level, k + 1, k)
    return k


def power(n: int, d0: float, delta: float, level: float, critical: np.ndarray | None = None) -> float:
    """Probability that the one-sided exact test at ``level`` rejects when the true drop is ``delta``.

    ``critical`` (optional) is ``_critical_counts(arange(N + 1), level)`` for some N >= n, to reuse.
    """
    if n <= 0 or delta <= 0:
        return 0.0
    disc = min(d0 + delta, 1.0)
    q = min((d0 / 2 + delta) / disc, 1.0)
    # only the discordant counts with any probability mass (the rest add < 1e-12)
    lo, hi = (int(x) for x in binom.ppf([1e-13, 1 - 1e-13], n, disc))
    counts = np.arange(max(lo - 1, 0), min(hi + 1, n) + 1)
    k = critical[counts] if critical is not None else _critical_counts(counts, level)
    reject = binom.sf(k - 1, counts, q)
    return float(np.sum(binom.pmf(counts, n, disc) * reject))


def min_detectable_drop(n: int, worse: int, better: int, level: float, target: float = 0.8) -> float:
    """Smallest drop (accuracy points) detected with probability ``target`` at ``level``; inf if none.

    ``d0 = 2 min(worse, better) / n`` is the noise discordance observed in this comparison.
    """
    if n <= 0:
        return math.inf
    critical = _critical_counts(np.arange(n + 1), level)
    d0 = 2 * min(worse, better) / n
    hi = 1.0 - d0 / 2  # the largest drop possible: every non-noise pair turns worse
    if power(n, d0, hi, level, critical) < target:
        return math.inf
    lo = 0.0
    for _ in range(24):  # 6e-8 of the range: far below a printed figure
        mid = (lo + hi) / 2
        if power(n, d0, mid, level, critical) >= target:
            hi = mid
        else:
            lo = mid
    return 100 * hi


def decide(worse: np.ndarray, better: np.ndarray, n: np.ndarray, required: np.ndarray, tolerance: float,
           alpha: float, target_power: float = 0.8) -> dict[str, np.ndarray]:
    """Judge a family of paired tests at once.

    Returns per test: ``p`` (one-sided), ``p_holm`` (Holm-adjusted over the family), ``regressed``
    (p_holm < alpha), ``mde_pts`` (at alpha / m) and ``underpowered`` (required and MDE > tolerance).
    """
    worse, better, n = (np.asarray(a, dtype=int) for a in (worse, better, n))
    required = np.asarray(required, dtype=bool)
    m = len(worse)
    p = np.array([one_sided_p(int(w), int(b)) for w, b in zip(worse, better)])
    p_holm = holm_adjust(p)
    level = alpha / max(m, 1)
    mde = np.array([min_detectable_drop(int(k), int(w), int(b), level, target_power) if r else math.nan
                    for k, w, b, r in zip(n, worse, better, required)])
    return {
        "p": p,
        "p_holm": p_holm,
        "regressed": p_holm < alpha,
        "mde_pts": mde,
        "underpowered": required & ~(mde <= tolerance),
    }


def verdict(regressed: np.ndarray, underpowered: np.ndarray, missing_runs: bool = False) -> str:
    """REGRESSION beats UNDERPOWERED (a drop was shown even so); OK only when neither holds."""
    if bool(np.any(regressed)) or missing_runs:
        return "REGRESSION"
    if bool(np.any(underpowered)):
        return "UNDERPOWERED"
    return "OK"
