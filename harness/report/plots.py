"""PNG plots (matplotlib Agg, no display): accuracy-vs-tokens Pareto per pruner, latency breakdown.

Why a Pareto view: a pruner wins only if no other reaches the same accuracy with fewer tokens;
the frontier line across all runs makes that visible at a glance. Every run gets its own marker
and a 95% error bar (the legend says which interval), and runs that share a token count (the
budget-matched baselines sit on AutoGaze's) are spread sideways so none hides another.
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


#: metric -> (axis label, interval columns, what the error bars are: said in the legend)
METRICS = {
    "accuracy": ("accuracy (%)", ("wilson95_low", "wilson95_high"), "95% Wilson interval"),
    "evidence_recall": ("evidence recall (share of answer tokens kept)",
                        ("evidence_recall_t95_low", "evidence_recall_t95_high"), "95% Student-t interval over samples"),
}
#: fixed styles so a pruner looks the same in every report: (marker, colour)
STYLES = {"none": ("*", "black"), "autogaze": ("o", "tab:red")}
_MARKERS = ["s", "^", "D", "v", "P", "X", "<", ">", "h", "p"]
_COLOURS = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
            "tab:cyan", "tab:gray", "gold"]


def pruner_style(pruner: str, others: list[str]) -> tuple[str, str]:
    """Marker and colour of a pruner; baselines take distinct ones in the order given."""
    if pruner in STYLES:
        return STYLES[pruner]
    i = others.index(pruner) if pruner in others else len(others)
    return _MARKERS[i % len(_MARKERS)], _COLOURS[i % len(_COLOURS)]


def dodge(xs: list[float], step: float) -> list[float]:
    """Spread points whose x lie within ``step`` of a neighbour symmetrically, ``step`` apart.

    Why: budget-matched baselines sit on exactly AutoGaze's token count, so their markers and
    error bars would be drawn on top of each other. Points alone at their x keep their true x.
    """
    order = sorted(range(len(xs)), key=lambda i: (xs[i], i))
    out = list(xs)
    cluster: list[int] = []

    def flush() -> None:
        centre = sum(xs[i] for i in cluster) / len(cluster)
        for j, i in enumerate(cluster):
            out[i] = centre + (j - (len(cluster) - 1) / 2) * step if len(cluster) > 1 else xs[i]

    for i in order:
        if cluster and xs[i] - xs[cluster[-1]] > step:
            flush()
            cluster = []
        cluster.append(i)
    if cluster:
        flush()
    return out


def plot_pareto(summary: pd.DataFrame, out: Path, title: str = "", metric: str = "accuracy") -> Path | None:
    """``metric`` (accuracy or evidence_recall) vs mean visual tokens: one marker per run, 95% error
    bars, one thin line per pruner across its settings, and the Pareto frontier (on the true x)."""
    col = metric
    ylabel, (lo_col, hi_col), interval = METRICS[metric]
    data = summary[summary[col].notna() & summary["visual_tokens"].notna()].reset_index(drop=True)
    if data.empty:
        return None
    many_models = data["model"].nunique() > 1
    span = float(data["visual_tokens"].max() - data["visual_tokens"].min()) or float(data["visual_tokens"].max()) or 1.0
    step = 0.02 * span
    xs = dodge(data["visual_tokens"].astype(float).tolist(), step)
    data = data.assign(_x=xs)
    spread = max((abs(a - b) for a, b in zip(xs, data["visual_tokens"])), default=0.0)
    lows = data[lo_col] if lo_col in data else pd.Series(math.nan, index=data.index)
    highs = data[hi_col] if hi_col in data else pd.Series(math.nan, index=data.index)
    data = data.assign(_lo=(data[col] - lows).clip(lower=0), _hi=(highs - data[col]).clip(lower=0))

    fig, ax = plt.subplots(figsize=(9, 5))
    front = pareto_front(list(zip(data["visual_tokens"], data[col])))
    right = float(data["visual_tokens"].max())
    if front[-1][0] < right:  # the best score holds up to the largest token count: draw it there too
        front.append((right, front[-1][1]))
    if len(front) > 1:
        fx, fy = zip(*front)
        ax.step(fx, fy, where="post", color="0.55", alpha=0.5, linewidth=6, zorder=1,
                label="Pareto frontier (best at <= tokens)")
    baselines = [p for p in dict.fromkeys(data["pruner"]) if p not in STYLES]
    for (model, pruner), group in data.groupby(["model", "pruner"], sort=False):
        group = group.sort_values("_x")
        marker, colour = pruner_style(str(pruner), baselines)
        z = 4 if pruner == "autogaze" else 3
        label = f"{model}: {pruner}" if many_models else str(pruner)
        if len(group) > 1:
            ax.plot(group["_x"], group[col], color=colour, linewidth=1, alpha=0.35, zorder=2)
        yerr = [group["_lo"].fillna(0).to_numpy(), group["_hi"].fillna(0).to_numpy()]
        ax.errorbar(group["_x"], group[col], yerr=yerr, fmt=marker, color=colour, markersize=9 if marker == "*"
                    else 7, markeredgecolor="black", markeredgewidth=0.6, alpha=0.85, capsize=3, elinewidth=1,
                    zorder=z, label=label)
        if pruner == "autogaze":
            for _, row in group.iterrows():
                ax.annotate(str(row["pruner_label"]).removeprefix("autogaze_"), (row["_x"], row[col]),
                            textcoords="offset points", xytext=(6, 6), fontsize=7, color=colour, zorder=5)
    ax.set_xlabel("mean visual tokens seen by the LLM")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"{ylabel} vs visual tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=f"error bars: {interval}", title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    note = f"error bars: {interval}"
    if spread > 0:
        note += f"; runs at the same token count are spread sideways by <= {spread:.1f} tokens to stay visible"
    fig.text(0.01, 0.01, note, fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
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
