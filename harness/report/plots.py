"""PNG plots (matplotlib Agg, no display): accuracy-vs-tokens Pareto per pruner, latency breakdown.

Why a Pareto view: a pruner wins only if no other reaches the same accuracy with fewer tokens;
the frontier line across all runs makes that visible at a glance.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.report.load import STAGES  # noqa: E402


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points not dominated by another with fewer-or-equal tokens and higher-or-equal score, by tokens."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


METRICS = {"accuracy": "accuracy (%)", "evidence_recall": "evidence recall (share of answer pixels legibly kept)"}


def plot_pareto(summary: pd.DataFrame, out: Path, title: str = "", metric: str = "accuracy") -> Path | None:
    """``metric`` (accuracy or evidence_recall) vs mean visual tokens, one line per pruner."""
    col, ylabel = metric, METRICS[metric]
    data = summary[summary[col].notna() & summary["visual_tokens"].notna()]
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (model, pruner), group in data.groupby(["model", "pruner"], sort=False):
        group = group.sort_values("visual_tokens")
        ax.plot(group["visual_tokens"], group[col], marker="o", linestyle="-" if len(group) > 1 else "",
                label=f"{pruner}" if data["model"].nunique() == 1 else f"{model}: {pruner}")
    front = pareto_front(list(zip(data["visual_tokens"], data[col])))
    if len(front) > 1:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", color="black", alpha=0.3, linewidth=3, label="Pareto frontier")
    ax.set_xlabel("mean visual tokens seen by the LLM")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} vs visual tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_latency(summary: pd.DataFrame, out: Path, title: str = "") -> Path | None:
    cols = [f"lat_{s}_s" for s in STAGES]
    data = summary[summary[cols].notna().any(axis=1)]
    if data.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(data) + 3), 4.5))
    bottom = pd.Series(0.0, index=data.index)
    labels = [lbl if data["model"].nunique() == 1 else f"{m}/{lbl}" for m, lbl in zip(data["model"],
                                                                                        data["pruner_label"])]
    for stage, col in zip(STAGES, cols):
        values = data[col].fillna(0.0)
        ax.bar(labels, values, bottom=bottom, label=stage)
        bottom = bottom + values
    ax.set_ylabel("mean seconds per sample")
    ax.set_title(title or "latency breakdown per stage")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
