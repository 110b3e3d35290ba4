"""Evidence recall vs kept share per pruner, summarised as the area under that curve.

Why: a single budget flatters whichever pruner was tuned for it; recall against the share of
tokens kept, swept over budgets, shows the whole trade-off, and its area is one number per
pruner that includes the cost. Points are the runs' means (``summary_table``: evidence_recall,
evidence_kept_share); the curve is anchored at (0, 0) (nothing kept, nothing recalled) and at
(1, recall of the unpruned run of the same model and benchmark), and integrated with the
trapezoid rule. Random masks are the reference: their curve is the chance level (above the
diagonal when the evidence spans several frame groups: a pixel need only be kept once).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.plots import pruner_style  # noqa: E402

X, Y = "evidence_kept_share", "evidence_recall"


def _curves(summary: pd.DataFrame) -> list[tuple[str, str, str, np.ndarray, np.ndarray, float]]:
    """(model, benchmark, pruner, shares, recalls, keep-all recall) per pruner that was swept."""
    if X not in summary or Y not in summary:
        return []
    data = summary[summary[X].notna() & summary[Y].notna()]
    out = []
    for (model, bench), group in data.groupby(["model", "benchmark"], sort=False):
        base = group[group["pruner"] == "none"]
        full = float(base[Y].iloc[0]) if len(base) else math.nan
        for pruner, runs in group[group["pruner"] != "none"].groupby("pruner", sort=False):
            runs = runs.sort_values(X)
            out.append((model, bench, pruner, runs[X].to_numpy(float), runs[Y].to_numpy(float), full))
    return out


def evidence_auc_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, benchmark, pruner): budgets swept, kept-share range, area under recall vs share."""
    rows = []
    for model, bench, pruner, xs, ys, full in _curves(summary):
        auc = math.nan
        if not math.isnan(full):
            px = np.concatenate([[0.0], xs, [1.0]])
            py = np.concatenate([[0.0], ys, [full]])
            auc = float(np.sum((px[1:] - px[:-1]) * (py[1:] + py[:-1]) / 2))
        rows.append({"model": model, "benchmark": bench, "pruner": pruner, "budgets": len(xs),
                     "min_kept_share": float(xs.min()), "max_kept_share": float(xs.max()),
                     "recall_auc": auc})
    return pd.DataFrame(rows)


def plot_evidence_curve(summary: pd.DataFrame, out: Path, title: str = "") -> Path | None:
    """Recall vs kept share, one line per pruner (None when no run has budget-aware evidence scores)."""
    curves = _curves(summary)
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    several = len({(c[0], c[1]) for c in curves}) > 1
    others = sorted({c[2] for c in curves})
    for model, bench, pruner, xs, ys, _full in curves:
        marker, colour = pruner_style(pruner, others)
        ax.plot(xs, ys, marker=marker, color=None if several else colour,
                label=f"{model}/{bench}: {pruner}" if several else pruner)
    fulls = {c[5] for c in curves if not math.isnan(c[5])}
    if len(fulls) == 1:
        ax.axhline(fulls.pop(), color="black", linestyle=":", label="unpruned")
    ax.set_xlabel("kept share of visual tokens")
    ax.set_ylabel("evidence recall (share of answer pixels legibly kept)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "evidence recall vs kept share (no model involved)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
